//! [`FilterChain`]: the filters a message passes through, in order, and [`FilterSet`], the
//! handle through which the chain is replaced atomically on reload.
//!
//! Every filter judges the text as it was sent; the most severe verdict wins and masks combine
//! (see [`FilterChain::judge`]).
//!
//! Invariant: a message is judged wholly by one chain. A worker loads the current chain once per
//! message ([`FilterSet::current`]); a reload builds the complete new chain first and swaps it in
//! with one atomic store, so no message sees half of the old rules and half of the new.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::filter::{Filter, Message, Verdict};

/// What a chain decided about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deliver this text (possibly rewritten).
    Deliver(String),
    /// Do not deliver; tell the sender this.
    Blocked {
        /// The filter that blocked it.
        filter: String,
        /// What the sender is told.
        notice: String,
    },
    /// Do not deliver and do not tell the sender.
    Silenced {
        /// The filter that dropped it.
        filter: String,
    },
    /// Do not deliver; mute the sender.
    Muted {
        /// The filter that muted.
        filter: String,
        /// For how long.
        duration: std::time::Duration,
        /// What the sender is told.
        notice: String,
    },
    /// Do not deliver yet: hold it for a moderator.
    Held {
        /// The filter that held it.
        filter: String,
        /// Why, in a few words.
        reason: String,
    },
    /// Do not deliver; disconnect the sender.
    Kicked {
        /// The filter that kicked.
        filter: String,
        /// What the sender is told.
        notice: String,
    },
}

impl Outcome {
    /// The word a filter fixture test uses for this outcome, or the delivered text.
    pub fn as_expectation(&self) -> &str {
        match self {
            Outcome::Deliver(text) => text,
            Outcome::Blocked { .. } => "blocked",
            Outcome::Held { .. } => "held",
            Outcome::Silenced { .. } => "silent",
            Outcome::Muted { .. } => "muted",
            Outcome::Kicked { .. } => "kicked",
        }
    }

    /// The filter that stopped the message, if one did.
    pub fn filter(&self) -> Option<&str> {
        match self {
            Outcome::Deliver(_) => None,
            Outcome::Blocked { filter, .. }
            | Outcome::Silenced { filter }
            | Outcome::Muted { filter, .. }
            | Outcome::Held { filter, .. }
            | Outcome::Kicked { filter, .. } => Some(filter),
        }
    }
}

/// A chain's decision and the warnings raised on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// What happens to the message.
    pub outcome: Outcome,
    /// `(filter, reason)` for each filter that let the message pass with a warning.
    pub warnings: Vec<(String, String)>,
    /// The filters that rewrote the text (masked it), in order.
    pub rewritten_by: Vec<String>,
}

/// An ordered list of filters.
#[derive(Clone, Default)]
pub struct FilterChain {
    filters: Vec<Arc<dyn Filter>>,
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.filters.iter().map(|x| x.name()))
            .finish()
    }
}

impl FilterChain {
    /// A chain of these filters, applied in order.
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> Self {
        FilterChain { filters }
    }

    /// True when the chain has no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    /// Runs every filter on `message.text` as it was sent, so an earlier filter's mask can never
    /// hide what a later one looks for (`shitcoins` masked by a profanity filter is still a
    /// crypto-scam line). The most severe verdict wins: kick > mute > block, hold > silent; among
    /// equals, the first filter's. Warnings are all kept. When the line is delivered, the
    /// rewrites combine: rewrites that keep the text's length (masks, case changes) merge
    /// character by character, a `*` winning over any other change; a rewrite that changes the
    /// length replaces the text, with the masks of the filters after it merged in if they fit.
    pub fn judge(&self, message: &Message<'_>) -> Judgement {
        let mut warnings = Vec::new();
        let mut rewritten_by = Vec::new();
        let mut rewrite: Option<Vec<char>> = None;
        let mut stop: Option<(u8, Outcome)> = None;
        // The normalised text, computed once and shared by every filter.
        let normalized = std::cell::OnceCell::new();
        let current = Message {
            normalized: Some(&normalized),
            ..*message
        };
        for filter in &self.filters {
            let name = || filter.name().to_owned();
            let (severity, outcome) = match filter.check(&current) {
                Verdict::Pass => continue,
                Verdict::Rewrite(new) => {
                    tracing::debug!(filter = filter.name(), "filter rewrote a line");
                    merge_rewrite(&mut rewrite, message.text, &new);
                    rewritten_by.push(name());
                    continue;
                }
                Verdict::Warn(reason) => {
                    warnings.push((name(), reason));
                    continue;
                }
                Verdict::Silent => (1, Outcome::Silenced { filter: name() }),
                Verdict::Block(notice) => (
                    2,
                    Outcome::Blocked {
                        filter: name(),
                        notice,
                    },
                ),
                Verdict::Hold(reason) => (
                    2,
                    Outcome::Held {
                        filter: name(),
                        reason,
                    },
                ),
                Verdict::Mute { duration, notice } => (
                    3,
                    Outcome::Muted {
                        filter: name(),
                        duration,
                        notice,
                    },
                ),
                Verdict::Kick(notice) => (
                    4,
                    Outcome::Kicked {
                        filter: name(),
                        notice,
                    },
                ),
            };
            if stop.as_ref().is_none_or(|(worst, _)| severity > *worst) {
                stop = Some((severity, outcome));
            }
        }
        let outcome = match stop {
            Some((_, outcome)) => outcome,
            None => Outcome::Deliver(match rewrite {
                Some(chars) => chars.into_iter().collect(),
                None => message.text.to_owned(),
            }),
        };
        Judgement {
            outcome,
            warnings,
            rewritten_by,
        }
    }
}

/// Merges one filter's rewrite of `original` into the rewrites so far (see
/// [`FilterChain::judge`]).
fn merge_rewrite(merged: &mut Option<Vec<char>>, original: &str, new: &str) {
    let new: Vec<char> = new.chars().collect();
    let Some(current) = merged else {
        *merged = Some(new);
        return;
    };
    if new.len() != current.len() {
        // A length-changing rewrite cannot be merged by position: it replaces the text.
        *merged = Some(new);
        return;
    }
    let original: Vec<char> = original.chars().collect();
    for (i, (slot, c)) in current.iter_mut().zip(new).enumerate() {
        let changed = original.get(i) != Some(&c);
        if changed && *slot != '*' {
            *slot = c;
        }
    }
}

/// The live filter chain, shared by every worker, and its parts.
///
/// The chain is `first` (custom filters a program added to run before the rules), then the rule
/// filters loaded from the filters directory (replaced by [`FilterSet::replace_rules`]), then
/// `last` (custom filters added to run after them). Cheap to clone; all clones share one chain.
#[derive(Clone, Default)]
pub struct FilterSet {
    current: Arc<ArcSwap<FilterChain>>,
    /// The parts the chain is built from. Held only while rebuilding, never across an `.await`.
    parts: Arc<Mutex<Parts>>,
}

#[derive(Default)]
struct Parts {
    first: Vec<Arc<dyn Filter>>,
    rules: Vec<Arc<dyn Filter>>,
    last: Vec<Arc<dyn Filter>>,
}

impl std::fmt::Debug for FilterSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FilterSet")
            .field(&**self.current.load())
            .finish()
    }
}

impl FilterSet {
    /// An empty set: every message passes.
    pub fn new() -> Self {
        FilterSet::default()
    }

    /// The chain in force now. Load it once per message.
    pub fn current(&self) -> Arc<FilterChain> {
        self.current.load_full()
    }

    /// Adds a custom filter that runs before the rule filters.
    pub fn push_first(&self, filter: Arc<dyn Filter>) {
        self.rebuild(|parts| parts.first.push(filter));
    }

    /// Adds a custom filter that runs after the rule filters.
    pub fn push_last(&self, filter: Arc<dyn Filter>) {
        self.rebuild(|parts| parts.last.push(filter));
    }

    /// Replaces the rule filters in one atomic swap.
    pub fn replace_rules(&self, rules: Vec<Arc<dyn Filter>>) {
        self.rebuild(|parts| parts.rules = rules);
    }

    fn rebuild(&self, change: impl FnOnce(&mut Parts)) {
        // Poisoning: `change` only pushes or assigns, so Parts is consistent even after a panic.
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut parts);
        let filters = parts
            .first
            .iter()
            .chain(&parts.rules)
            .chain(&parts.last)
            .cloned()
            .collect();
        // Stored while the lock is held, so two concurrent rebuilds cannot store out of order.
        self.current.store(Arc::new(FilterChain::new(filters)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClientId, ClientInfo, Role};
    use crate::filters::filter_fn;

    fn judge(chain: &FilterChain, text: &str) -> Outcome {
        let sender = ClientInfo {
            name: "alice".into(),
            room: "lobby".into(),
            role: Role::User,
        };
        let message = Message::new(text, &sender, ClientId(1), tokio::time::Instant::now());
        chain.judge(&message).outcome
    }

    fn word_mask(name: &'static str, word: &'static str) -> Arc<dyn Filter> {
        filter_fn(name, move |m| {
            if m.text.contains(word) {
                Verdict::Rewrite(m.text.replace(word, &"*".repeat(word.len())))
            } else {
                Verdict::Pass
            }
        })
    }

    fn block_if(name: &'static str, word: &'static str, notice: &'static str) -> Arc<dyn Filter> {
        filter_fn(name, move |m| {
            if m.text.contains(word) {
                Verdict::Block(notice.into())
            } else {
                Verdict::Pass
            }
        })
    }

    #[test]
    fn every_filter_judges_the_text_as_sent_and_masks_combine() {
        let chain = FilterChain::new(vec![
            word_mask("20-profanity", "shit"),
            block_if("25-crypto", "shitcoin", "No coin spam."),
            word_mask("30-more", "darn"),
        ]);
        // An earlier mask does not hide a later block.
        assert_eq!(
            judge(&chain, "shitcoins everywhere"),
            Outcome::Blocked {
                filter: "25-crypto".into(),
                notice: "No coin spam.".into()
            }
        );
        // Two masks on one line both apply.
        assert_eq!(
            judge(&chain, "shit, darn"),
            Outcome::Deliver("****, ****".into())
        );
    }

    #[test]
    fn the_most_severe_verdict_wins() {
        let kick = filter_fn("kick", |_| Verdict::Kick("out".into()));
        let silent = filter_fn("silent", |_| Verdict::Silent);
        let mute = filter_fn("mute", |_| Verdict::Mute {
            duration: std::time::Duration::from_secs(60),
            notice: "hush".into(),
        });
        let chain = FilterChain::new(vec![
            silent.clone(),
            block_if("block", "x", "no"),
            mute.clone(),
            kick,
        ]);
        assert_eq!(judge(&chain, "x").as_expectation(), "kicked");
        let chain = FilterChain::new(vec![silent.clone(), block_if("block", "x", "no"), mute]);
        assert_eq!(judge(&chain, "x").as_expectation(), "muted");
        let chain = FilterChain::new(vec![silent.clone(), block_if("block", "x", "no")]);
        assert_eq!(judge(&chain, "x").as_expectation(), "blocked");
        let chain = FilterChain::new(vec![word_mask("mask", "x"), silent]);
        assert_eq!(judge(&chain, "x").as_expectation(), "silent");
    }

    #[test]
    fn rules_sit_between_first_and_last_and_swap_atomically() {
        let set = FilterSet::new();
        set.push_first(filter_fn("a", |_| Verdict::Pass));
        set.push_last(filter_fn("z", |_| Verdict::Pass));
        let before = set.current();
        set.replace_rules(vec![filter_fn("m", |_| Verdict::Silent)]);
        assert_eq!(before.names(), ["a", "z"], "a loaded chain never changes");
        assert_eq!(set.current().names(), ["a", "m", "z"]);
    }
}
