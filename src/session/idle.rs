//! Idle clients, watched by one task for every connection.
//!
//! A client silent for `[server] idle_timeout` is warned, then disconnected; each door says so
//! in its own words (a `SERVER:` line, an IRC `PING` and `ERROR`). A timer in every connection
//! would make that exact, but a timer entry is over a hundred bytes that every idle connection
//! carries for its whole life, and idle connections are what a server has most of. So each
//! connection keeps one word, its [`Liveness`]: when its client was last heard and what it has
//! been told. One task, the [`IdleWatch`], reads every word a few times per warning period and
//! wakes the reading side of each connection whose time has come.
//!
//! Invariants:
//! - the watch changes a word only by compare-and-swap from the value it read, so a line heard
//!   meanwhile always wins over a warning or an expiry decided on the older time;
//! - a warning or an expiry comes at most one sweep period late (a quarter of the warning
//!   period, between 10 ms and 1 s), never early;
//! - a connection is watched only between its first [`IdleWatch::heard`] (after its handshake,
//!   which has its own timeout) and its end; the watch holds it weakly and forgets it at the
//!   first sweep after it ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Sent;
use crate::clock::MillisClock;

/// What the idle watch says to a connection's reading side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleAlarm {
    /// Time to warn; this much is left.
    Warn(Duration),
    /// Time is up.
    Expired,
}

/// Where a connection stands, in the low bits of its word.
mod state {
    /// Still in its handshake: not watched yet.
    pub(super) const UNARMED: u64 = 0;
    /// Heard from; nothing said.
    pub(super) const ARMED: u64 = 1;
    /// The watch asks the reading side to warn the client.
    pub(super) const WARN: u64 = 2;
    /// The reading side has warned the client.
    pub(super) const WARNED: u64 = 3;
    /// The watch asks the reading side to disconnect the client.
    pub(super) const EXPIRED: u64 = 4;
    /// Bits taken by the state; the rest of the word is the time last heard.
    pub(super) const BITS: u32 = 3;
    pub(super) const MASK: u64 = (1 << BITS) - 1;
}

/// One connection's word (milliseconds since the watch began when its client was last heard,
/// and its state), and the waker of its reading side.
#[derive(Debug)]
pub(crate) struct Liveness {
    word: AtomicU64,
    reader: AtomicWaker,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            word: AtomicU64::new(state::UNARMED),
            reader: AtomicWaker::new(),
        }
    }
}

/// Watches every connection's [`Liveness`]; see the module documentation.
#[derive(Debug)]
pub(crate) struct IdleWatch {
    /// Zero: idle clients are never disconnected.
    timeout: Duration,
    /// How long before the end the client is warned.
    warn_before: Duration,
    /// Time zero of every word.
    clock: MillisClock,
    /// Every connection that may need watching; the dead are dropped at each sweep.
    watched: Mutex<Vec<Weak<Sent>>>,
}

impl IdleWatch {
    /// Longest time between two sweeps.
    const MAX_PERIOD: Duration = Duration::from_secs(1);
    /// Shortest time between two sweeps, however short the timeout.
    const MIN_PERIOD: Duration = Duration::from_millis(10);

    /// A watch disconnecting clients silent for `timeout` (never, if zero); the warning comes
    /// `min(30s, timeout / 2)` before the end.
    pub(crate) fn new(timeout: Duration) -> Self {
        IdleWatch {
            timeout,
            warn_before: (timeout / 2).min(Duration::from_secs(30)),
            clock: MillisClock::starting_now(),
            watched: Mutex::new(Vec::new()),
        }
    }

    /// The idle timeout this watch enforces (zero: none).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often the watch looks at every connection.
    fn period(&self) -> Duration {
        (self.warn_before / 4).clamp(Self::MIN_PERIOD, Self::MAX_PERIOD)
    }

    /// Starts watching `sent`'s connection (from its first [`IdleWatch::heard`] on).
    pub(crate) fn watch(&self, sent: &Arc<Sent>) {
        if self.timeout.is_zero() {
            return;
        }
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.push(Arc::downgrade(sent));
    }

    /// The client was heard from just now: its silence starts again, and anything it was told
    /// is forgotten.
    pub(crate) fn heard(&self, liveness: &Liveness) {
        let word = self.clock.millis(Instant::now()) << state::BITS | state::ARMED;
        liveness.word.store(word, Ordering::Release);
    }

    /// Ready with the alarm the watch has raised for this connection, once per alarm; otherwise
    /// pending, and the task is woken when one is raised.
    pub(crate) fn poll_alarm(&self, liveness: &Liveness, cx: &mut Context<'_>) -> Poll<IdleAlarm> {
        // Registered before the word is read: an alarm raised in between wakes the task again.
        liveness.reader.register(cx.waker());
        let word = liveness.word.load(Ordering::Acquire);
        match word & state::MASK {
            state::EXPIRED => Poll::Ready(IdleAlarm::Expired),
            state::WARN => {
                let told = word & !state::MASK | state::WARNED;
                match liveness.word.compare_exchange(
                    word,
                    told,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => Poll::Ready(IdleAlarm::Warn(self.warn_before)),
                    // Heard or expired meanwhile: the next poll sees which.
                    Err(_) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            _ => Poll::Pending,
        }
    }

    /// The next item of `input` (a connection's frames), or the alarm raised for its connection
    /// before one came: a reading side's wait, with no timer of its own.
    pub(crate) fn next_or_alarm<'a, S: Stream + Unpin>(
        &'a self,
        liveness: &'a Liveness,
        input: &'a mut S,
    ) -> impl Future<Output = Result<Option<S::Item>, IdleAlarm>> + 'a {
        std::future::poll_fn(move |cx| match self.poll_alarm(liveness, cx) {
            Poll::Ready(alarm) => Poll::Ready(Err(alarm)),
            Poll::Pending => input.poll_next_unpin(cx).map(Ok),
        })
    }

    /// One look at every watched connection: raises the alarms that are due and forgets the
    /// connections that have ended.
    fn sweep(&self) {
        if self.timeout.is_zero() {
            return;
        }
        let now = self.clock.millis(Instant::now());
        let end = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let warn_at = end.saturating_sub(u64::try_from(self.warn_before.as_millis()).unwrap_or(0));
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|entry| {
            let Some(sent) = entry.upgrade() else {
                return false;
            };
            let liveness = sent.liveness();
            let word = liveness.word.load(Ordering::Acquire);
            let silent = now.saturating_sub(word >> state::BITS);
            let next = match word & state::MASK {
                state::ARMED | state::WARN | state::WARNED if silent >= end => state::EXPIRED,
                state::ARMED if silent >= warn_at => state::WARN,
                _ => return true,
            };
            let raised = word & !state::MASK | next;
            if liveness
                .word
                .compare_exchange(word, raised, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                liveness.reader.wake();
            }
            true
        });
        // Nothing keeps the capacity of a past crowd.
        if watched.capacity() > 64 && watched.len() < watched.capacity() / 4 {
            let keep = watched.len() * 2;
            watched.shrink_to(keep);
        }
    }

    /// Sweeps every period until `stop` is cancelled; not needed (and returns at once) when
    /// idle clients are never disconnected.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.timeout.is_zero() {
            return;
        }
        let mut ticks = tokio::time::interval(self.period());
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => self.sweep(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    fn alarm(watch: &IdleWatch, sent: &Sent) -> Poll<IdleAlarm> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        watch.poll_alarm(sent.liveness(), &mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_warned_once_then_expires() {
        let watch = IdleWatch::new(Duration::from_secs(10));
        let sent = Arc::new(Sent::default());
        watch.watch(&sent);
        // Not armed until first heard: the handshake has its own timeout.
        tokio::time::advance(Duration::from_secs(60)).await;
        watch.sweep();
        assert_eq!(alarm(&watch, &sent), Poll::Pending);

        watch.heard(sent.liveness());
        tokio::time::advance(Duration::from_millis(4_999)).await;
        watch.sweep();
        assert_eq!(alarm(&watch, &sent), Poll::Pending, "not early");
        tokio::time::advance(Duration::from_millis(1)).await;
        watch.sweep();
        let warned = alarm(&watch, &sent);
        assert_eq!(warned, Poll::Ready(IdleAlarm::Warn(Duration::from_secs(5))));
        assert_eq!(alarm(&watch, &sent), Poll::Pending, "warned once");
        tokio::time::advance(Duration::from_secs(5)).await;
        watch.sweep();
        assert_eq!(alarm(&watch, &sent), Poll::Ready(IdleAlarm::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_heard_starts_the_silence_again() {
        let watch = IdleWatch::new(Duration::from_secs(10));
        let sent = Arc::new(Sent::default());
        watch.watch(&sent);
        watch.heard(sent.liveness());
        tokio::time::advance(Duration::from_secs(6)).await;
        watch.sweep();
        assert!(alarm(&watch, &sent).is_ready());
        watch.heard(sent.liveness());
        tokio::time::advance(Duration::from_secs(9)).await;
        watch.sweep();
        assert_eq!(
            alarm(&watch, &sent),
            Poll::Ready(IdleAlarm::Warn(Duration::from_secs(5)))
        );
        watch.heard(sent.liveness());
        tokio::time::advance(Duration::from_secs(9)).await;
        watch.sweep();
        assert_eq!(
            alarm(&watch, &sent),
            Poll::Ready(IdleAlarm::Warn(Duration::from_secs(5))),
            "warned again after a new silence"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_wakes_the_reader_and_forgets_ended_connections() {
        let watch = Arc::new(IdleWatch::new(Duration::from_secs(2)));
        let stop = CancellationToken::new();
        let sweeping = tokio::spawn(watch.clone().run(stop.clone()));
        let sent = Arc::new(Sent::default());
        watch.watch(&sent);
        watch.heard(sent.liveness());
        let mut waiting = pin!(std::future::poll_fn(
            |cx| watch.poll_alarm(sent.liveness(), cx)
        ));
        assert_eq!(
            waiting.as_mut().await,
            IdleAlarm::Warn(Duration::from_secs(1))
        );
        let expired = std::future::poll_fn(|cx| watch.poll_alarm(sent.liveness(), cx)).await;
        assert_eq!(expired, IdleAlarm::Expired);

        let gone = Arc::new(Sent::default());
        watch.watch(&gone);
        assert_eq!(watch.watched.lock().unwrap().len(), 2);
        drop(gone);
        tokio::time::advance(watch.period()).await;
        tokio::task::yield_now().await;
        assert_eq!(
            watch.watched.lock().unwrap().len(),
            1,
            "the ended connection is forgotten"
        );
        stop.cancel();
        sweeping.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_timeout_watches_nothing() {
        let watch = Arc::new(IdleWatch::new(Duration::ZERO));
        let sent = Arc::new(Sent::default());
        watch.watch(&sent);
        watch.heard(sent.liveness());
        assert!(watch.watched.lock().unwrap().is_empty());
        // The sweeping task is not needed and ends at once.
        watch.clone().run(CancellationToken::new()).await;
        tokio::time::advance(Duration::from_secs(7 * 24 * 3600)).await;
        watch.sweep();
        assert_eq!(alarm(&watch, &sent), Poll::Pending);
    }

    #[test]
    fn the_period_follows_the_warning_within_bounds() {
        assert_eq!(
            IdleWatch::new(Duration::from_secs(300)).period(),
            Duration::from_secs(1)
        );
        assert_eq!(
            IdleWatch::new(Duration::from_secs(2)).period(),
            Duration::from_millis(250)
        );
        assert_eq!(
            IdleWatch::new(Duration::from_millis(4)).period(),
            Duration::from_millis(10)
        );
    }
}
