//! A client's outbox: the bounded queue between the hub and the client's writer task.
//!
//! The hub pushes shared buffers ([`Bytes`], one allocation per message however many members
//! receive it) and never waits: a push either fits within the line and byte bounds or fails with
//! [`OutboxFull`], and the hub disconnects that client. The writer takes everything queued at once
//! ([`Outbox::next_batch`]) and writes it with one syscall, so a busy room costs one write per
//! client per batch rather than one per line.
//!
//! Invariants:
//! - the queue never holds more than `max_lines` lines or `max_bytes` bytes;
//! - the writer is woken only when the queue goes from empty to non-empty (or the outbox closes),
//!   so a burst of pushes costs one wake-up;
//! - after [`Outbox::close`] nothing more is queued; the writer flushes what is queued (unless the
//!   close discards it), writes the final line, and stops.
//!
//! The mutex is a `std` one, held for a push or a swap of the queue, never across an `.await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

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
    /// Wakes the writer; see the module invariants for when it is notified.
    wake: Notify,
    max_lines: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// When the oldest queued line was queued (for the fan-out latency metric).
    since: Option<Instant>,
    /// Set once by `close`: the line to write last (if any).
    closed: Option<Option<Bytes>>,
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
    /// An empty outbox holding at most `max_lines` lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Outbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                max_lines,
                max_bytes,
            }),
        }
    }

    /// Queues a line without waiting. A closed outbox silently ignores the push: its client is
    /// already leaving and has been told why.
    ///
    /// # Errors
    /// [`OutboxFull`] when the line would break a bound; nothing is queued then.
    pub fn push(&self, line: Bytes) -> Result<(), OutboxFull> {
        if self.push_quietly(line)? {
            self.wake();
        }
        Ok(())
    }

    /// Queues a line like [`Outbox::push`] but leaves waking the writer to the caller, who calls
    /// [`Outbox::wake`] when the returned flag says the queue was empty. The hub uses this to
    /// let lines gather for a moment, so a writer takes several per write.
    ///
    /// # Errors
    /// [`OutboxFull`] when the line would break a bound; nothing is queued then.
    pub fn push_quietly(&self, line: Bytes) -> Result<bool, OutboxFull> {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Ok(false);
        }
        if state.queue.len() >= self.shared.max_lines
            || state.bytes + line.len() > self.shared.max_bytes
        {
            return Err(OutboxFull);
        }
        let was_empty = state.queue.is_empty();
        if was_empty {
            state.since = Some(Instant::now());
        }
        state.bytes += line.len();
        state.queue.push_back(line);
        Ok(was_empty)
    }

    /// Wakes the writer (after [`Outbox::push_quietly`]).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
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
        drop(state);
        self.shared.wake.notify_one();
        discarded
    }

    /// True once [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Waits for the next batch. `spare` is an empty queue to swap in, so the writer and the
    /// outbox recycle two allocations instead of making one per batch.
    pub async fn next_batch(&self, spare: VecDeque<Bytes>) -> Batch {
        let mut spare = Some(spare);
        loop {
            {
                let mut state = self.lock();
                if !state.queue.is_empty() {
                    state.bytes = 0;
                    let since = state.since.take().unwrap_or_else(Instant::now);
                    let mut queue = spare.take().unwrap_or_default();
                    std::mem::swap(&mut queue, &mut state.queue);
                    return Batch::Lines(queue, since);
                }
                if let Some(last) = &state.closed {
                    return Batch::Close(last.clone());
                }
            }
            // A push between the unlock and this await stores a permit, so no wake-up is lost.
            self.shared.wake.notified().await;
        }
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
        let outbox = Outbox::new(10, 1000);
        outbox.push(line("a\n")).unwrap();
        outbox.push(line("b\n")).unwrap();
        match outbox.next_batch(VecDeque::new()).await {
            Batch::Lines(q, _) => assert_eq!(q, vec![line("a\n"), line("b\n")]),
            other => panic!("{other:?}"),
        }
        assert!(outbox.is_empty());
    }

    #[tokio::test]
    async fn bounds_lines_and_bytes() {
        let outbox = Outbox::new(2, 5);
        outbox.push(line("ab\n")).unwrap();
        assert_eq!(outbox.push(line("cd\n")), Err(OutboxFull), "6 bytes > 5");
        outbox.push(line("c\n")).unwrap();
        assert_eq!(outbox.push(line("\n")), Err(OutboxFull), "3 lines > 2");
    }

    #[tokio::test]
    async fn close_flushes_then_gives_the_last_line() {
        let outbox = Outbox::new(10, 1000);
        outbox.push(line("a\n")).unwrap();
        outbox.close(Some(line("bye\n")), false);
        outbox.push(line("ignored\n")).unwrap();
        assert!(
            matches!(outbox.next_batch(VecDeque::new()).await, Batch::Lines(q, _) if q.len() == 1)
        );
        assert!(
            matches!(outbox.next_batch(VecDeque::new()).await, Batch::Close(Some(l)) if l == line("bye\n"))
        );
    }

    #[tokio::test]
    async fn discarding_close_drops_the_backlog() {
        let outbox = Outbox::new(10, 1000);
        outbox.push(line("a\n")).unwrap();
        outbox.close(Some(line("slow\n")), true);
        assert!(matches!(
            outbox.next_batch(VecDeque::new()).await,
            Batch::Close(Some(_))
        ));
    }

    #[tokio::test]
    async fn writer_waiting_is_woken_by_a_push() {
        let outbox = Outbox::new(10, 1000);
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.next_batch(VecDeque::new()).await }
        });
        tokio::task::yield_now().await;
        outbox.push(line("x\n")).unwrap();
        assert!(matches!(writer.await.unwrap(), Batch::Lines(q, _) if q.len() == 1));
    }
}
