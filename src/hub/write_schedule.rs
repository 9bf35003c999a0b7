//! When the hub wakes each writer that has new lines.
//!
//! Every wake-up becomes a write, one system call per client, so the hub lets lines gather
//! before waking a writer, and how long depends on how busy the client is:
//!
//! - **A quiet client** (its writer was not woken on this schedule within the last
//!   `busy_flush_interval`) is woken `flush_interval` after its first new line.
//! - **A busy client** (woken within the last `busy_flush_interval`) waits for its own turn. The
//!   period is split into [`BUSY_GROUPS`] equal steps; each client has one of them (a hash of its
//!   id), and its next write comes at the first of its own steps at least `flush_interval` away.
//!   So while lines keep coming, each client gets one write per period carrying all of them, and
//!   a room's writers are woken a group at a time instead of all at once.
//!
//! Why spread them: a thousand writers woken together keep the runtime's queues (and every
//! reader waiting behind them) busy for milliseconds, so the last of them is written to well
//! after its turn. Why only a few groups: every group woken costs the runtime a round of waking
//! its threads, and the clients' side a round of wake-ups, so many small groups cost more than a
//! few large ones. `docs/performance.md` has the measurements behind [`BUSY_GROUPS`].
//!
//! `flush_interval = 0` turns gathering off: every writer is woken after the event that gave it
//! lines. `busy_flush_interval = 0` treats every client as quiet.
//!
//! Invariants:
//! - time is counted in whole milliseconds from the schedule's creation (tokio's timer has that
//!   resolution); a writer is never woken before its due millisecond, and is due at most
//!   `flush_interval + busy_flush_interval` after its first line was queued;
//! - the ring has more slots than the longest delay, so slots never alias: every queued outbox
//!   is due between `drained_to` and `drained_to + ring length`;
//! - `queued` counts the outboxes in the ring, and `next_due` is the earliest non-empty slot
//!   (`None` when nothing is queued).

use std::time::Duration;

use tokio::time::Instant;

use super::Outbox;
use crate::clock::MillisClock;
use crate::event::ClientId;

/// How many groups a busy room's writers are woken in per `busy_flush_interval`. In the busy-room
/// benchmark (1,000 clients × 1 line/s, a 10 ms period), one group (all at once) cost 0.52–0.55
/// µs of CPU per delivery at p99 13.3 ms, two 0.56–0.58 µs at p99 11.3–11.8 ms, five 0.58–0.63
/// µs at p99 10.8 ms, ten 0.63–0.65 µs at p99 10.8 ms: two keep most of the saving of one
/// without its tail.
pub(super) const BUSY_GROUPS: u64 = 2;

/// The writers the hub has yet to wake, by the millisecond they are due.
#[derive(Debug)]
pub(super) struct WriteSchedule {
    clock: MillisClock,
    /// `flush_interval`, in whole milliseconds (rounded up).
    gather_ms: u64,
    /// `busy_flush_interval`, in whole milliseconds (rounded up); 0 when off.
    period_ms: u64,
    /// Slot `ms` is `ring[ms & mask]`.
    ring: Box<[Vec<Outbox>]>,
    mask: u64,
    /// Every slot before this millisecond has been woken; this one may still be filling.
    drained_to: u64,
    queued: usize,
    next_due: Option<u64>,
}

impl WriteSchedule {
    /// A schedule with these intervals (each at most a second or so: the ring has a slot per
    /// millisecond of the longest delay).
    pub(super) fn new(flush_interval: Duration, busy_flush_interval: Duration) -> Self {
        let gather_ms = whole_ms(flush_interval);
        let period_ms = if gather_ms == 0 {
            0
        } else {
            whole_ms(busy_flush_interval)
        };
        let slots = (gather_ms + period_ms + 2).next_power_of_two();
        WriteSchedule {
            clock: MillisClock::starting_now(),
            gather_ms,
            period_ms,
            ring: (0..slots).map(|_| Vec::new()).collect(),
            mask: slots - 1,
            drained_to: 0,
            queued: 0,
            next_due: None,
        }
    }

    /// Schedules the wake-up of `outbox`, whose queue just went from empty to non-empty at
    /// `now`; `last_woken` is what the push reported ([`super::Queued::First`]).
    pub(super) fn queue(
        &mut self,
        id: ClientId,
        outbox: &Outbox,
        last_woken: Option<Instant>,
        now: Instant,
    ) {
        let now_ms = self.clock.millis(now);
        let earliest = now_ms + self.gather_ms;
        let busy = self.period_ms > 0
            && last_woken.is_some_and(|at| {
                now.saturating_duration_since(at) < Duration::from_millis(self.period_ms)
            });
        let due = if busy {
            let offset = offset_of(id, self.period_ms);
            earliest + (offset + self.period_ms - earliest % self.period_ms) % self.period_ms
        } else {
            earliest
        };
        if due > self.mask + self.drained_to {
            // The hub has not woken anything for longer than the ring covers: everything in it
            // is due already.
            self.wake_due(now);
        }
        let due = due.max(self.drained_to);
        self.ring[(due & self.mask) as usize].push(outbox.clone());
        self.queued += 1;
        self.next_due = Some(self.next_due.map_or(due, |next| next.min(due)));
    }

    /// When the next writer is due, if any is queued.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.next_due.map(|ms| self.clock.instant(ms))
    }

    /// True when some writer is due at `now`.
    pub(super) fn any_due(&self, now: Instant) -> bool {
        self.next_due.is_some_and(|ms| ms <= self.clock.millis(now))
    }

    /// Wakes every writer due at or before `now`.
    pub(super) fn wake_due(&mut self, now: Instant) {
        let now_ms = self.clock.millis(now);
        if self.queued > 0 {
            // Past the ring's length every slot has been visited once.
            let last = now_ms.min(self.drained_to + self.mask);
            for ms in self.drained_to..=last {
                self.queued -= wake(&mut self.ring[(ms & self.mask) as usize], now);
            }
        }
        self.drained_to = self.drained_to.max(now_ms);
        self.next_due = self.earliest_queued();
    }

    /// Wakes every queued writer, due or not (shutdown, or writers falling behind).
    pub(super) fn wake_all(&mut self, now: Instant) {
        if self.queued > 0 {
            for slot in self.ring.iter_mut() {
                wake(slot, now);
            }
        }
        self.queued = 0;
        self.next_due = None;
    }

    fn earliest_queued(&self) -> Option<u64> {
        if self.queued == 0 {
            return None;
        }
        (self.drained_to..=self.drained_to + self.mask)
            .find(|ms| !self.ring[(ms & self.mask) as usize].is_empty())
    }
}

/// Wakes the writers in `slot`, returning how many. A slot that once held a storm's worth of
/// writers gives that room back.
fn wake(slot: &mut Vec<Outbox>, now: Instant) -> usize {
    let woken = slot.len();
    for outbox in slot.drain(..) {
        outbox.wake_scheduled(now);
    }
    if slot.capacity() > 64 {
        slot.shrink_to(64);
    }
    woken
}

/// A client's own offset within the period: the start of one of its [`BUSY_GROUPS`] steps,
/// spread evenly over them for consecutive ids (Fibonacci hashing).
fn offset_of(id: ClientId, period_ms: u64) -> u64 {
    let groups = BUSY_GROUPS.min(period_ms);
    ((id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % groups) * (period_ms / groups)
}

fn whole_ms(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Batch, Queued};
    use bytes::Bytes;
    use futures::task::ArcWake;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};

    const MS: Duration = Duration::from_millis(1);

    /// A client's writer, reduced to noticing when it is woken.
    struct Writer {
        id: ClientId,
        outbox: Outbox,
        woke: Arc<Flag>,
    }

    struct Flag(AtomicBool);

    impl ArcWake for Flag {
        fn wake_by_ref(flag: &Arc<Self>) {
            flag.0.store(true, Ordering::SeqCst);
        }
    }

    impl Writer {
        fn new(id: u64) -> Self {
            let writer = Writer {
                id: ClientId(id),
                outbox: Outbox::new(100, 10_000, Duration::from_secs(2)),
                woke: Arc::new(Flag(AtomicBool::new(false))),
            };
            writer.poll();
            writer
        }

        /// Polls for a batch as the writer task does (registering its waker when there is
        /// none); true when it got one.
        fn poll(&self) -> bool {
            let waker = futures::task::waker(self.woke.clone());
            let mut cx = Context::from_waker(&waker);
            matches!(
                self.outbox.poll_batch(&mut cx),
                Poll::Ready(Batch::Lines(..))
            )
        }

        /// Queues a line as the hub does: a line that starts a batch is scheduled.
        fn push(&self, schedule: &mut WriteSchedule) {
            let line = Bytes::from_static(b"x\n");
            if let Ok(Queued::First { last_woken }) = self.outbox.push_quietly(line) {
                schedule.queue(self.id, &self.outbox, last_woken, Instant::now());
            }
        }

        /// True when the writer was woken since last asked; it then takes its batch and waits
        /// again.
        fn woken(&self) -> bool {
            if !self.woke.0.swap(false, Ordering::SeqCst) {
                return false;
            }
            assert!(self.poll(), "woken with nothing to write");
            assert!(!self.poll());
            true
        }
    }

    /// Steps the clock a millisecond at a time, as the hub's timer would, until `writer` has
    /// been woken; returns how many milliseconds that took.
    async fn ms_until_woken(schedule: &mut WriteSchedule, writer: &Writer) -> u64 {
        for ms in 0..1000 {
            if schedule.any_due(Instant::now()) {
                schedule.wake_due(Instant::now());
            }
            if writer.woken() {
                return ms;
            }
            tokio::time::advance(MS).await;
        }
        panic!("never woken");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_client_is_written_to_after_the_flush_interval() {
        let mut schedule = WriteSchedule::new(2 * MS, 10 * MS);
        let a = Writer::new(1);
        a.push(&mut schedule);
        a.push(&mut schedule);
        assert_eq!(
            schedule.next_wake(),
            Some(Instant::now() + 2 * MS),
            "one wake-up for both lines"
        );
        assert_eq!(ms_until_woken(&mut schedule, &a).await, 2);
        assert_eq!(schedule.next_wake(), None, "nothing else is queued");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_client_waits_for_its_own_slot_within_the_period() {
        let mut schedule = WriteSchedule::new(2 * MS, 10 * MS);
        let a = Writer::new(7);
        a.push(&mut schedule);
        assert_eq!(ms_until_woken(&mut schedule, &a).await, 2, "quiet at first");
        // Just woken: its next batch goes out in its own slot, 2 to 11 ms away; from then on
        // its writes are exactly a period apart, however soon its next line comes.
        let mut waits = Vec::new();
        for _ in 0..5 {
            a.push(&mut schedule);
            waits.push(ms_until_woken(&mut schedule, &a).await);
        }
        assert!((2..12).contains(&waits[0]), "{waits:?}");
        assert!(waits[1..].iter().all(|w| *w == 10), "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_clients_are_spread_across_the_period() {
        let mut schedule = WriteSchedule::new(2 * MS, 10 * MS);
        let writers: Vec<Writer> = (0..1000).map(Writer::new).collect();
        for w in &writers {
            w.push(&mut schedule);
        }
        tokio::time::advance(2 * MS).await;
        schedule.wake_due(Instant::now());
        assert!(
            writers.iter().all(Writer::woken),
            "all quiet: woken together"
        );
        for w in &writers {
            w.push(&mut schedule);
        }
        // Now busy: they come due in BUSY_GROUPS groups of about the same size, a step apart.
        let mut per_ms = Vec::new();
        for _ in 0..12 {
            tokio::time::advance(MS).await;
            schedule.wake_due(Instant::now());
            per_ms.push(writers.iter().filter(|w| w.woken()).count());
        }
        assert_eq!(per_ms.iter().sum::<usize>(), 1000, "{per_ms:?}");
        let groups: Vec<usize> = (0..per_ms.len()).filter(|ms| per_ms[*ms] > 0).collect();
        assert_eq!(groups.len() as u64, BUSY_GROUPS, "{per_ms:?}");
        let step = 10 / BUSY_GROUPS as usize;
        assert!(groups.windows(2).all(|w| w[1] - w[0] == step), "{per_ms:?}");
        let fair = 1000 / BUSY_GROUPS as usize;
        assert!(
            groups
                .iter()
                .all(|ms| per_ms[*ms].abs_diff(fair) < fair / 5),
            "{per_ms:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_quiet_for_a_period_is_quiet_again() {
        let mut schedule = WriteSchedule::new(2 * MS, 10 * MS);
        let a = Writer::new(3);
        a.push(&mut schedule);
        ms_until_woken(&mut schedule, &a).await;
        tokio::time::advance(10 * MS).await;
        a.push(&mut schedule);
        assert_eq!(ms_until_woken(&mut schedule, &a).await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_flush_interval_wakes_at_once_and_no_busy_interval_never_waits_longer() {
        let mut schedule = WriteSchedule::new(Duration::ZERO, 10 * MS);
        let a = Writer::new(1);
        for _ in 0..3 {
            a.push(&mut schedule);
            assert!(schedule.any_due(Instant::now()));
            assert_eq!(ms_until_woken(&mut schedule, &a).await, 0);
        }
        let mut schedule = WriteSchedule::new(2 * MS, Duration::ZERO);
        for _ in 0..3 {
            a.push(&mut schedule);
            assert_eq!(ms_until_woken(&mut schedule, &a).await, 2);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wake_all_wakes_what_is_not_due_yet() {
        let mut schedule = WriteSchedule::new(2 * MS, 10 * MS);
        let (a, b) = (Writer::new(1), Writer::new(2));
        a.push(&mut schedule);
        b.push(&mut schedule);
        schedule.wake_all(Instant::now());
        assert!(a.woken() && b.woken());
        assert_eq!(schedule.next_wake(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hub_that_stalled_longer_than_the_ring_loses_no_writer() {
        let mut schedule = WriteSchedule::new(2 * MS, 10 * MS);
        let (a, b) = (Writer::new(1), Writer::new(2));
        a.push(&mut schedule);
        // Nothing woke the schedule for a second (the hub was busy, or its timer late).
        tokio::time::advance(Duration::from_secs(1)).await;
        b.push(&mut schedule);
        assert!(a.woken(), "overdue: woken before the new one was queued");
        assert_eq!(ms_until_woken(&mut schedule, &b).await, 2);
    }
}
