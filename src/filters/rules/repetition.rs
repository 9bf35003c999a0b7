//! Repetition: one sender repeating the same, or nearly the same, line within a window.
//!
//! "Nearly the same" means equal once normalised (case, accents, look-alikes, substitutions) with
//! spaces, symbols and repeated letters removed: `buy now!!!`, `BUY NOW` and `buuuy now` are one
//! line. The rule remembers a few recent lines per sender (a hash and a time each), bounded per
//! sender, and forgets senders whose lines have all left the window.
//!
//! This is the one stateful rule; its state lives behind a `std` mutex held for a lookup, never
//! across an `.await`. Senders are partitioned over workers, so contention stays low. A reload
//! starts with empty memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::event::ClientId;
use crate::filters::normalize;

/// Lines remembered per sender; also the largest allowed `max_repeats` plus one.
const REMEMBERED_LINES: usize = 16;

/// Checks between sweeps of senders who have gone quiet.
const SWEEP_EVERY: u64 = 4096;

/// `[repetition]` in a filter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepetitionConfig {
    /// How far back a line counts.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Copies of a line allowed within the window; one more is a repetition.
    pub max_repeats: usize,
}

impl Default for RepetitionConfig {
    fn default() -> Self {
        RepetitionConfig {
            window: Duration::from_secs(30),
            max_repeats: 2,
        }
    }
}

impl RepetitionConfig {
    /// Problems with the values, if any.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_repeats == 0 || self.max_repeats >= REMEMBERED_LINES {
            problems.push(format!(
                "max_repeats must be between 1 and {}",
                REMEMBERED_LINES - 1
            ));
        }
        if self.window.is_zero() {
            problems.push("window must be longer than 0s".to_owned());
        }
        problems
    }
}

/// The rule with its memory.
#[derive(Debug)]
pub struct RepetitionRule {
    config: RepetitionConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    recent: HashMap<ClientId, VecDeque<(u64, Instant)>>,
    checks: u64,
}

impl RepetitionRule {
    /// A rule with empty memory.
    pub fn new(config: RepetitionConfig) -> Self {
        RepetitionRule {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// Records the line (given in normalised form) and says whether it is one repetition too
    /// many.
    pub fn check(&self, client: ClientId, normalized: &str, at: Instant) -> bool {
        let key = skeleton_hash(normalized);
        let window = self.config.window;
        // Poisoning: every critical section below leaves the maps consistent.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state.recent.retain(|_, lines| {
                lines
                    .back()
                    .is_some_and(|(_, t)| at.saturating_duration_since(*t) < window)
            });
        }
        let lines = state.recent.entry(client).or_default();
        while lines
            .front()
            .is_some_and(|(_, t)| at.saturating_duration_since(*t) >= window)
        {
            lines.pop_front();
        }
        let copies = lines.iter().filter(|(k, _)| *k == key).count();
        if lines.len() == REMEMBERED_LINES {
            lines.pop_front();
        }
        lines.push_back((key, at));
        copies >= self.config.max_repeats
    }
}

/// FNV-1a over the normalised text's bytes without spaces, edge marks (`buy now!!!` is `buy
/// now`) and repeated bytes. Not
/// DoS-resistant, and need not be: a collision only makes two lines of one sender count as the
/// same.
fn skeleton_hash(normalized: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut previous = 0u8;
    for b in normalized
        .bytes()
        .filter(|&b| b != b' ' && !normalize::is_edge_mark(b))
    {
        if b != previous {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        previous = b;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::normalize::normalize;

    #[tokio::test(start_paused = true)]
    async fn third_copy_within_the_window_is_a_repeat() {
        let rule = RepetitionRule::new(RepetitionConfig::default());
        let check = |client, text, at| rule.check(client, &normalize(text).text, at);
        let me = ClientId(1);
        let t0 = Instant::now();
        assert!(!check(me, "buy now!!!", t0));
        assert!(!check(me, "BUY NOW", t0 + Duration::from_secs(1)));
        assert!(check(me, "buuuy  now", t0 + Duration::from_secs(2)));
        assert!(
            !check(ClientId(2), "buy now", t0),
            "other senders are apart"
        );
        assert!(
            !check(me, "buy now", t0 + Duration::from_secs(40)),
            "window passed"
        );
    }
}
