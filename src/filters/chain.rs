//! [`FilterChain`]: the filters a message passes through, in order, and [`FilterSet`], the
//! handle through which the chain is replaced atomically on reload.
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

    /// Runs `message.text` through every filter: a rewrite feeds the next filter, a warning is
    /// noted and the chain goes on; a block, silent drop, mute or kick ends the chain.
    pub fn judge(&self, message: &Message<'_>) -> Judgement {
        let mut text: Option<String> = None;
        let mut warnings = Vec::new();
        let mut rewritten_by = Vec::new();
        // The normalised text, shared by the filters until one rewrites the text.
        let mut normalized = std::cell::OnceCell::new();
        for filter in &self.filters {
            let current = Message {
                text: text.as_deref().unwrap_or(message.text),
                normalized: Some(&normalized),
                ..*message
            };
            let name = || filter.name().to_owned();
            let outcome = match filter.check(&current) {
                Verdict::Pass => continue,
                Verdict::Rewrite(new) => {
                    tracing::debug!(filter = filter.name(), "filter rewrote a line");
                    text = Some(new);
                    rewritten_by.push(name());
                    normalized = std::cell::OnceCell::new();
                    continue;
                }
                Verdict::Warn(reason) => {
                    warnings.push((name(), reason));
                    continue;
                }
                Verdict::Block(notice) => Outcome::Blocked {
                    filter: name(),
                    notice,
                },
                Verdict::Silent => Outcome::Silenced { filter: name() },
                Verdict::Mute { duration, notice } => Outcome::Muted {
                    filter: name(),
                    duration,
                    notice,
                },
                Verdict::Kick(notice) => Outcome::Kicked {
                    filter: name(),
                    notice,
                },
            };
            return Judgement {
                outcome,
                warnings,
                rewritten_by,
            };
        }
        let text = text.unwrap_or_else(|| message.text.to_owned());
        Judgement {
            outcome: Outcome::Deliver(text),
            warnings,
            rewritten_by,
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

    #[test]
    fn rewrites_feed_the_next_filter_and_blocks_stop_the_chain() {
        let set = FilterSet::new();
        set.push_first(filter_fn("upper", |m| {
            Verdict::Rewrite(m.text.to_uppercase())
        }));
        set.push_last(filter_fn("no-x", |m| {
            if m.text.contains('X') {
                Verdict::Block("no x".into())
            } else {
                Verdict::Pass
            }
        }));
        let chain = set.current();
        assert_eq!(judge(&chain, "abc"), Outcome::Deliver("ABC".into()));
        assert_eq!(
            judge(&chain, "xyz"),
            Outcome::Blocked {
                filter: "no-x".into(),
                notice: "no x".into()
            }
        );
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
