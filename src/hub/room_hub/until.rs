//! When a mute or a ban ends, and how a duration is written to clients.
//!
//! Any duration a client, a filter file or the store names is capped at [`MAX_SANCTION`]
//! (beyond it a sanction lasts until lifted), so `Instant` arithmetic never overflows.

use std::time::Duration;

use tokio::time::Instant;

/// The longest mute or ban with an end: anything longer lasts until a moderator lifts it. Also
/// keeps `Instant` arithmetic far from overflowing, whatever duration a client or a filter file
/// names.
pub(crate) const MAX_SANCTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// When a mute or a ban ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// When a moderator lifts it.
    Lifted,
    /// At this instant.
    At(Instant),
}

impl Until {
    /// `duration` from now; no duration, or one over [`MAX_SANCTION`], lasts until lifted.
    pub(super) fn after(duration: Option<Duration>) -> Until {
        duration
            .filter(|d| *d <= MAX_SANCTION)
            .and_then(|d| Instant::now().checked_add(d))
            .map_or(Until::Lifted, Until::At)
    }

    /// `None` once over; `Some(None)` until lifted; else the time left.
    pub(super) fn remaining(self, now: Instant) -> Option<Option<Duration>> {
        match self {
            Until::Lifted => Some(None),
            Until::At(until) if until > now => Some(Some(until - now)),
            Until::At(_) => None,
        }
    }

    /// `for 5m`, or `until lifted` in the words of `lift` (`until unbanned`).
    pub(super) fn describe(self, lift: &str) -> String {
        match self.remaining(Instant::now()) {
            Some(Some(left)) => format!("for {}", describe_duration(left)),
            _ => format!("until {lift}"),
        }
    }
}

/// `1d 2h 5m 3s`-style text for a time, rounded up to whole seconds, the way every duration is
/// written to clients (and the way `/mute` and `/ban` read them).
pub(crate) fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_compactly() {
        assert_eq!(describe_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(describe_duration(Duration::from_secs(60)), "1m");
        assert_eq!(describe_duration(Duration::from_millis(90_500)), "1m 31s");
        assert_eq!(
            describe_duration(Duration::from_secs(90_061)),
            "1d 1h 1m 1s"
        );
        assert_eq!(describe_duration(Duration::ZERO), "0s");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_sanctions_last_until_lifted() {
        assert_eq!(Until::after(Some(Duration::MAX)), Until::Lifted);
        assert_eq!(Until::after(Some(MAX_SANCTION * 2)), Until::Lifted);
        assert_eq!(Until::after(None), Until::Lifted);
        let hour = Until::after(Some(Duration::from_secs(3600)));
        assert_eq!(hour.describe("unbanned"), "for 1h");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(hour.remaining(Instant::now()), None);
    }
}
