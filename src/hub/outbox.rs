//! A client's outbox: the bounded queue between the hub and the client's writer task.
//!
//! The hub pushes shared buffers ([`Bytes`], one allocation per message however many members
//! receive it) and never waits. The writer takes everything queued at once
//! ([`Outbox::next_batch`]) and writes it with one syscall, so a busy room costs one write per
//! client per batch rather than one per line.
//!
//! # When a client is too slow
//! `max_lines` and `max_bytes` bound the backlog a client may have *while its socket is stuck*.
//! A backlog over them is no fault of the client when its socket keeps taking bytes: the hub may
//! simply have run ahead of a writer that has not been scheduled yet (a paste of 20,000 lines, a
//! pipeline that stalled for a moment and then released thousands of lines). So a push over the
//! bounds fails with [`OutboxFull`] (and the hub disconnects the client) only when
//! - the writer is blocked on a socket that has accepted no bytes for `stall_timeout`, or
//! - the backlog reaches [`HARD_LIMIT_FACTOR`] times the bounds, whatever the socket does: a
//!   client that reads a trickle cannot make the server hold an unbounded backlog.
//!
//! Invariants:
//! - the queue never holds more than `HARD_LIMIT_FACTOR × max_lines` lines or
//!   `HARD_LIMIT_FACTOR × max_bytes` bytes;
//! - the writer is woken when the queue goes from empty to non-empty (or the outbox closes), so a
//!   burst of pushes costs one wake-up; the push that takes the queue past half its bound says
//!   so ([`Queued::Urgent`]) so the hub wakes the writer at once instead of letting lines gather;
//! - a push that starts a batch tells the hub when it last woke the writer after letting lines
//!   gather ([`Outbox::wake_scheduled`]), which is how the hub tells a busy client from a quiet
//!   one (see `hub::write_schedule`);
//! - after [`Outbox::close`] nothing more is queued; the writer flushes what is queued (unless the
//!   close discards it), writes the final line, and stops.
//!
//! The mutex is a `std` one, held for a push or the taking of the queue, never across an `.await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// How far past its bounds a backlog may grow while the client's socket is still taking bytes.
pub const HARD_LIMIT_FACTOR: usize = 8;

/// Lines a new batch has room for before it grows.
const FIRST_CAPACITY: usize = 16;

/// The push did not fit: the client is not keeping up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox full")]
pub struct OutboxFull;

/// The sending side (hub, session) of a client's outbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    // The bounds are kept in 32 bits (saturating: a bound of 4 Gi is no bound): with `usize`s
    // and a `Duration` this record, one per client and idle ones included, took 16 bytes more
    // of the allocator.
    max_lines: u32,
    max_bytes: u32,
    /// How long a blocked writer's socket may take no bytes before a backlog over the bounds
    /// counts as "too slow", in milliseconds.
    stall_timeout_ms: u32,
}

impl Shared {
    fn max_lines(&self) -> usize {
        self.max_lines as usize
    }

    fn max_bytes(&self) -> usize {
        self.max_bytes as usize
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// While the writer is blocked on its socket: when the socket last accepted bytes (or the
    /// write blocked). `None` while the writer waits for lines or writes without blocking.
    writing_since_progress: Option<Instant>,
    /// The writer waiting for lines; see the module invariants for when it is woken.
    waker: Option<Waker>,
    /// When the oldest queued line was queued (for the fan-out latency metric).
    since: Option<Instant>,
    /// When the hub last woke the writer on its write schedule.
    woken_at: Option<Instant>,
    /// Set once by `close`: the line to write last (if any).
    closed: Option<Option<Bytes>>,
}

/// How a push went, for the hub's waking of writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The queue was empty: the writer needs waking (now or after a short gathering delay).
    /// `last_woken` is when the hub last woke it on its schedule ([`Outbox::wake_scheduled`]).
    First {
        /// When the writer was last woken on the hub's write schedule, if ever.
        last_woken: Option<Instant>,
    },
    /// Queued behind other lines; the writer has been or will be woken already.
    Behind,
    /// The queue is past half its bounds: wake the writer now, and let it run.
    Urgent,
    /// The outbox is closed; the line was dropped (the client is leaving and was told why).
    Closed,
}

/// What the writer should do next.
#[derive(Debug)]
pub enum Batch {
    /// Write these lines, in order; the oldest was queued at the given time.
    Lines(VecDeque<Bytes>, Instant),
    /// Write this final line (if any), then close the connection.
    Close(Option<Bytes>),
}

impl Outbox {
    /// An empty outbox whose client counts as too slow once more than `max_lines` lines or
    /// `max_bytes` bytes wait while its socket has taken nothing for `stall_timeout` (see the
    /// module documentation).
    pub fn new(max_lines: usize, max_bytes: usize, stall_timeout: Duration) -> Self {
        Outbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                max_lines: u32::try_from(max_lines).unwrap_or(u32::MAX),
                max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
                stall_timeout_ms: u32::try_from(stall_timeout.as_millis()).unwrap_or(u32::MAX),
            }),
        }
    }

    /// Queues a line without waiting. A closed outbox silently ignores the push: its client is
    /// already leaving and has been told why.
    ///
    /// # Errors
    /// [`OutboxFull`] when the line would break a bound; nothing is queued then.
    pub fn push(&self, line: Bytes) -> Result<(), OutboxFull> {
        match self.push_quietly(line)? {
            Queued::First { .. } | Queued::Urgent => self.wake(),
            Queued::Behind | Queued::Closed => {}
        }
        Ok(())
    }

    /// Queues a line like [`Outbox::push`] but leaves waking the writer to the caller, who calls
    /// [`Outbox::wake`] when the answer says so. The hub uses this to let lines gather for a
    /// moment, so a writer takes several per write.
    ///
    /// # Errors
    /// [`OutboxFull`] when the client is too slow (see the module documentation); nothing is
    /// queued then.
    pub fn push_quietly(&self, line: Bytes) -> Result<Queued, OutboxFull> {
        let shared = &*self.shared;
        let mut state = self.lock();
        if state.closed.is_some() {
            return Ok(Queued::Closed);
        }
        let (lines, bytes) = (state.queue.len() + 1, state.bytes + line.len());
        if lines > shared.max_lines() || bytes > shared.max_bytes() {
            let stalled = state.writing_since_progress.is_some_and(|t| {
                t.elapsed() >= Duration::from_millis(shared.stall_timeout_ms.into())
            });
            let over_hard_limit = lines > shared.max_lines().saturating_mul(HARD_LIMIT_FACTOR)
                || bytes > shared.max_bytes().saturating_mul(HARD_LIMIT_FACTOR);
            if stalled || over_hard_limit {
                return Err(OutboxFull);
            }
        }
        let was_empty = state.queue.is_empty();
        if was_empty {
            state.since = Some(Instant::now());
            // A batch in a busy room holds a few lines: one allocation for them, not a `Vec`'s
            // growth from four to eight.
            state.queue.reserve(FIRST_CAPACITY);
        }
        state.bytes = bytes;
        state.queue.push_back(line);
        Ok(if was_empty {
            Queued::First {
                last_woken: state.woken_at,
            }
        } else if lines * 2 > shared.max_lines() || bytes * 2 > shared.max_bytes() {
            Queued::Urgent
        } else {
            Queued::Behind
        })
    }

    /// The writer's socket accepted bytes, or the writer found it full and now waits on it: the
    /// client counts as stalled if this is not called again within the stall timeout.
    pub fn progressed(&self) {
        self.lock().writing_since_progress = Some(Instant::now());
    }

    /// The writer finished writing its batch and waits for more.
    pub fn written(&self) {
        self.lock().writing_since_progress = None;
    }

    /// Wakes the writer (after [`Outbox::push_quietly`]).
    pub fn wake(&self) {
        let waker = self.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Wakes the writer for a batch the hub let gather, noting `now`: the next
    /// [`Queued::First`] reports it, so the hub can keep this client's writes apart.
    pub fn wake_scheduled(&self, now: Instant) {
        let waker = {
            let mut state = self.lock();
            state.woken_at = Some(now);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes the outbox: nothing more is accepted; the writer writes `last` after the queued
    /// lines, or instead of them when `discard_queued` (a client too slow to read its backlog
    /// still gets the reason). Closing twice keeps the first close. Returns how many queued
    /// lines were discarded.
    pub fn close(&self, last: Option<Bytes>, discard_queued: bool) -> usize {
        let mut state = self.lock();
        if state.closed.is_some() {
            return 0;
        }
        let discarded = if discard_queued {
            state.bytes = 0;
            state.since = None;
            std::mem::take(&mut state.queue).len()
        } else {
            0
        };
        state.closed = Some(last);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        discarded
    }

    /// True once [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Waits for the next batch.
    pub async fn next_batch(&self) -> Batch {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    /// The next batch if there is one (the whole queue: the outbox starts a new, unallocated
    /// one, so an idle client holds no queue); otherwise registers the writer's waker and returns
    /// `Pending`. The waker is stored under the same lock pushes take, so no wake-up is lost
    /// between the check and the wait.
    pub fn poll_batch(&self, cx: &mut Context<'_>) -> Poll<Batch> {
        let mut state = self.lock();
        if !state.queue.is_empty() {
            state.bytes = 0;
            let since = state.since.take().unwrap_or_else(Instant::now);
            return Poll::Ready(Batch::Lines(std::mem::take(&mut state.queue), since));
        }
        if let Some(last) = &state.closed {
            return Poll::Ready(Batch::Close(last.clone()));
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The bytes this outbox may hold while its socket is stuck (`[server] outbox_bytes`): a
    /// long answer (a page of `/reports`) is kept well inside it, so it never reads as a client
    /// too slow to keep up.
    pub fn byte_bound(&self) -> usize {
        self.shared.max_bytes()
    }

    /// Lines queued now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves State consistent before it can panic (there is nothing in
        // them that panics short of allocation failure), so poisoning carries no meaning here.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn batches_everything_queued() {
        let outbox = Outbox::new(10, 1000, STALL);
        outbox.push(line("a\n")).unwrap();
        outbox.push(line("b\n")).unwrap();
        match outbox.next_batch().await {
            Batch::Lines(q, _) => assert_eq!(q, vec![line("a\n"), line("b\n")]),
            other => panic!("{other:?}"),
        }
        assert!(outbox.is_empty());
    }

    const STALL: Duration = Duration::from_secs(2);

    /// Fills `outbox` past its bounds, as the hub may before the writer has run.
    fn fill(outbox: &Outbox, n: usize) {
        for _ in 0..n {
            outbox.push(line("x\n")).unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_over_the_bounds_is_fine_while_the_socket_takes_bytes() {
        let outbox = Outbox::new(4, 1000, STALL);
        // The writer has not run yet: over the bound, but nothing is stalled.
        fill(&outbox, 10);
        // The writer takes the batch and its socket blocks: pushes still fit within the grace.
        assert!(matches!(outbox.next_batch().await, Batch::Lines(q, _) if q.len() == 10));
        outbox.progressed(); // the write blocks
        fill(&outbox, 10);
        tokio::time::advance(STALL / 2).await;
        outbox.progressed();
        tokio::time::advance(STALL / 2).await;
        fill(&outbox, 5);
        // No progress for the whole stall timeout: now a backlog over the bound is too slow.
        tokio::time::advance(STALL / 2).await;
        assert_eq!(outbox.push(line("x\n")), Err(OutboxFull));
        assert_eq!(outbox.len(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_socket_may_still_fill_up_to_the_bounds() {
        let outbox = Outbox::new(4, 1000, STALL);
        fill(&outbox, 1);
        let _ = outbox.next_batch().await;
        outbox.progressed(); // the write blocks
        tokio::time::advance(STALL * 10).await;
        fill(&outbox, 4);
        assert_eq!(outbox.push(line("x\n")), Err(OutboxFull), "5 lines > 4");
        outbox.written();
        fill(&outbox, 1);
    }

    #[tokio::test]
    async fn the_hard_limit_holds_whatever_the_socket_does() {
        let outbox = Outbox::new(2, 1000, STALL);
        fill(&outbox, 2 * HARD_LIMIT_FACTOR);
        assert_eq!(outbox.push(line("x\n")), Err(OutboxFull));
        let outbox = Outbox::new(100, 10, STALL);
        fill(&outbox, 5 * HARD_LIMIT_FACTOR);
        assert_eq!(outbox.push(line("x\n")), Err(OutboxFull), "bytes bound too");
    }

    #[tokio::test]
    async fn half_full_asks_for_an_early_wake() {
        let outbox = Outbox::new(4, 1000, STALL);
        assert_eq!(
            outbox.push_quietly(line("a\n")),
            Ok(Queued::First { last_woken: None })
        );
        assert_eq!(outbox.push_quietly(line("b\n")), Ok(Queued::Behind));
        assert_eq!(outbox.push_quietly(line("c\n")), Ok(Queued::Urgent));
        outbox.close(None, false);
        assert_eq!(outbox.push_quietly(line("d\n")), Ok(Queued::Closed));
    }

    #[tokio::test]
    async fn close_flushes_then_gives_the_last_line() {
        let outbox = Outbox::new(10, 1000, STALL);
        outbox.push(line("a\n")).unwrap();
        outbox.close(Some(line("bye\n")), false);
        outbox.push(line("ignored\n")).unwrap();
        assert!(matches!(outbox.next_batch().await, Batch::Lines(q, _) if q.len() == 1));
        assert!(matches!(outbox.next_batch().await, Batch::Close(Some(l)) if l == line("bye\n")));
    }

    #[tokio::test]
    async fn discarding_close_drops_the_backlog() {
        let outbox = Outbox::new(10, 1000, STALL);
        outbox.push(line("a\n")).unwrap();
        outbox.close(Some(line("slow\n")), true);
        assert!(matches!(outbox.next_batch().await, Batch::Close(Some(_))));
    }

    #[tokio::test]
    async fn writer_waiting_is_woken_by_a_push() {
        let outbox = Outbox::new(10, 1000, STALL);
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.next_batch().await }
        });
        tokio::task::yield_now().await;
        outbox.push(line("x\n")).unwrap();
        assert!(matches!(writer.await.unwrap(), Batch::Lines(q, _) if q.len() == 1));
    }
}
