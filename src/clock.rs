//! Whole milliseconds since a fixed instant, for state that keeps its times as integers.
//!
//! The idle watch keeps one word per connection (when its client was last heard, packed with a
//! state), and the hub's write schedule keeps a slot per millisecond; both count milliseconds
//! from their own start with a [`MillisClock`]. The clock is tokio's, so a paused clock in a
//! test moves them too.
//!
//! Invariants: a count never goes back as time goes on; an instant before the start counts as
//! 0, and one too far after it to count in 64 bits as `u64::MAX`.

use std::time::Duration;

use tokio::time::Instant;

/// Counts whole milliseconds from the moment it was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MillisClock {
    began: Instant,
}

impl MillisClock {
    /// A clock whose count starts now.
    pub(crate) fn starting_now() -> Self {
        MillisClock {
            began: Instant::now(),
        }
    }

    /// Whole milliseconds from the start to `at`.
    pub(crate) fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.began).as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant `millis` milliseconds after the start.
    pub(crate) fn instant(&self, millis: u64) -> Instant {
        self.began + Duration::from_millis(millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_whole_milliseconds_from_its_start() {
        let clock = MillisClock::starting_now();
        let start = Instant::now();
        assert_eq!(clock.millis(start), 0);
        tokio::time::advance(Duration::from_micros(2_999)).await;
        assert_eq!(
            clock.millis(Instant::now()),
            2,
            "whole milliseconds, rounded down"
        );
        assert_eq!(clock.instant(7), start + Duration::from_millis(7));
        assert_eq!(clock.millis(clock.instant(7)), 7);
    }
}
