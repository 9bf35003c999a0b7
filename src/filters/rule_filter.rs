//! [`RuleFilter`]: a [`Filter`] built from one filter file's rules and action.
//!
//! A message matches when any rule finds something: a listed word, a pattern, a link to a domain
//! not allowed, shouting, or a repetition. Matches inside an allowed phrase never count. The
//! filter's action then decides the verdict; `mask` replaces every character of each match with
//! `*` (for whole-line rules, where there is nothing to mask, shouting is lower-cased and a
//! repetition is blocked).

use std::ops::Range;
use std::time::Duration;

use regex::Regex;

use super::filter::{Filter, Message, Verdict};
use super::rules::{LinkRule, RepetitionRule, ShoutingConfig};
use super::words::WordMatcher;
use crate::event::Role;

/// What a filter does with a matching message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace each match with `*`.
    Mask,
    /// Drop it and tell the sender.
    Block(String),
    /// Drop it without telling anyone.
    Silent,
    /// Deliver it and alert the moderators.
    Warn,
    /// Drop it and mute the sender.
    Mute(Duration, String),
    /// Drop it and disconnect the sender.
    Kick(String),
    /// Hold it for a moderator.
    Hold,
}

/// The rules of one filter file. Built by [`crate::filters::file::FilterFile::build`].
#[derive(Debug)]
pub struct RuleFilter {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) exempt_roles: Vec<Role>,
    pub(crate) exempt_rooms: Vec<String>,
    pub(crate) words: Option<WordMatcher>,
    pub(crate) allow: Option<WordMatcher>,
    pub(crate) patterns: Option<Regex>,
    pub(crate) links: Option<LinkRule>,
    pub(crate) shouting: Option<ShoutingConfig>,
    pub(crate) repetition: Option<RepetitionRule>,
}

/// What the rules found in one message.
#[derive(Debug, Default)]
struct Findings {
    /// Byte ranges of the original text, possibly overlapping.
    ranges: Vec<Range<usize>>,
    shouting: bool,
    repeated: bool,
    reasons: Vec<&'static str>,
}

impl Findings {
    /// Adds the ranges that do not touch an allowed phrase, and `reason` if there was one.
    fn add(
        &mut self,
        reason: &'static str,
        ranges: impl IntoIterator<Item = Range<usize>>,
        allowed: &[Range<usize>],
    ) {
        let before = self.ranges.len();
        self.ranges
            .extend(ranges.into_iter().filter(|r| !overlaps_any(r, allowed)));
        if self.ranges.len() > before && !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }
}

impl RuleFilter {
    /// Whether the sender's role or the line's room is exempt. The room is the one the line goes
    /// to, never the one the sender joined last (else joining an exempt room would exempt lines
    /// sent to every other); a private message is in no room, so no room exempts it.
    fn exempt(&self, message: &Message<'_>) -> bool {
        self.exempt_roles.contains(&message.sender.role)
            || message
                .room
                .is_some_and(|to| self.exempt_rooms.iter().any(|room| room == to))
    }

    fn find(&self, message: &Message<'_>) -> Findings {
        let text = message.text;
        let mut found = Findings::default();
        let mut allowed = Vec::new();
        if self.words.is_some() || self.allow.is_some() {
            let normalized = message.normalized();
            // The line's readings: usually one, two when a one-letter word may start a run of
            // spaced letters (see `normalize`).
            let forms = || std::iter::once(&*normalized).chain(normalized.alternative.as_deref());
            if let Some(allow) = &self.allow {
                for form in forms() {
                    allowed.extend(allow.find_iter(&form.text).map(|r| form.original_range(r)));
                }
            }
            if let Some(words) = &self.words {
                for form in forms() {
                    let ranges = words.find_iter(&form.text).map(|r| form.original_range(r));
                    found.add("listed word", ranges, &allowed);
                }
            }
        }
        if let Some(patterns) = &self.patterns {
            let ranges = patterns.find_iter(text).map(|m| m.range());
            found.add("pattern", ranges.filter(|r| !r.is_empty()), &allowed);
        }
        if let Some(links) = &self.links {
            found.add("link", links.find(text), &allowed);
        }
        if let Some(shouting) = &self.shouting
            && shouting.is_shouting(text)
        {
            found.shouting = true;
            found.reasons.push("shouting");
        }
        if let Some(repetition) = &self.repetition
            && repetition.check(
                message.client,
                &message.normalized().text,
                message.received_at,
            )
        {
            found.repeated = true;
            found.reasons.push("repetition");
        }
        found
    }
}

impl Filter for RuleFilter {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, message: &Message<'_>) -> Verdict {
        if self.exempt(message) {
            return Verdict::Pass;
        }
        let found = self.find(message);
        if found.reasons.is_empty() {
            return Verdict::Pass;
        }
        match &self.action {
            Action::Mask if !found.ranges.is_empty() => {
                Verdict::Rewrite(mask(message.text, found.ranges))
            }
            Action::Mask if found.repeated => {
                Verdict::Block("Please don't repeat yourself.".to_owned())
            }
            Action::Mask => Verdict::Rewrite(message.text.to_lowercase()),
            Action::Block(notice) => Verdict::Block(notice.clone()),
            Action::Silent => Verdict::Silent,
            Action::Warn => Verdict::Warn(found.reasons.join(", ")),
            Action::Mute(duration, notice) => Verdict::Mute {
                duration: *duration,
                notice: notice.clone(),
            },
            Action::Kick(notice) => Verdict::Kick(notice.clone()),
            Action::Hold => Verdict::Hold(found.reasons.join(", ")),
        }
    }
}

fn overlaps_any(range: &Range<usize>, others: &[Range<usize>]) -> bool {
    others
        .iter()
        .any(|o| range.start < o.end && o.start < range.end)
}

/// Replaces every character inside `ranges` with `*`.
fn mask(text: &str, ranges: Vec<Range<usize>>) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if ranges.iter().any(|r| r.contains(&i)) {
            out.push('*');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // a list holding one range is what is meant
    fn mask_replaces_each_character() {
        assert_eq!(mask("what the heck", vec![9..13]), "what the ****");
        assert_eq!(mask("héck x", vec![0..5]), "**** x");
        assert_eq!(mask("aa bb", vec![0..2, 1..5]), "*****");
    }
}
