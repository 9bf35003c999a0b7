//! The writing side of a connection: drains the client's [`Outbox`] onto the socket.
//!
//! Everything queued when the writer wakes goes out in vectored writes (`writev`), so a busy
//! room costs one syscall per client per batch, not one per line, and no line is copied: the
//! shared buffers the hub queued are written directly. A batch is first written without any
//! timer: most fit in the socket's buffer at once. Only a write the socket cannot take at once
//! gets a deadline; a client that does not take its bytes in time is dropped. Between batches
//! the writer keeps nothing: a written batch's queue is freed, and the outbox starts an empty
//! one, so an idle connection holds no queue at all (one allocation per batch costs far less
//! than the `writev` it feeds).
//!
//! The writer tells the outbox when its socket blocks and when it takes part of a batch, and
//! when the batch is written: that is what lets the outbox tell a stuck client from one whose
//! writer merely has not run yet (see [`crate::hub::Outbox`]).
//!
//! It ends when the outbox closes (after writing the last line) or a write fails; the
//! connection ([`super::connection`]) runs it beside the reading side and stops it at the end
//! of the shutdown grace period.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::event::ClientId;
use crate::hub::{Batch, Outbox};
use crate::metrics::Metrics;

/// Lines handed to one `writev` (Linux takes up to 1,024; a batch rarely has more than this).
const SLICES_PER_WRITE: usize = 64;

/// What a writer needs besides its socket and outbox.
pub(crate) struct WriterContext {
    pub(crate) client: ClientId,
    pub(crate) write_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    /// What this client gets of each line rendered for its whole door (IRC drops tags and echoes
    /// the client did not ask for); `None` sends every line as it is.
    pub(crate) adapt: Option<Adapt>,
}

/// A per-client last step before the socket: the line to send instead, or `None` for nothing.
pub(crate) type Adapt = Arc<dyn Fn(Bytes) -> Option<Bytes> + Send + Sync>;

/// Writes batches from `outbox` to `socket` until the outbox is closed or a write fails.
///
/// An `async` block rather than an `async fn`, so its arguments are not kept twice in every
/// connection (see `session::read_side`).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
pub(crate) fn write_loop<W: AsyncWrite + Unpin>(
    mut socket: W,
    outbox: Outbox,
    ctx: WriterContext,
) -> impl Future<Output = ()> {
    async move {
        loop {
            // Made in one statement with the wait, so the batch as handed over is not kept
            // beside what it became (a future keeps a moved-from local's room).
            let mut batch = Unwritten::new(
                std::future::poll_fn(|cx| outbox.poll_batch(cx)).await,
                ctx.adapt.as_ref(),
            );
            // No timer for a batch the socket takes at once, which is nearly every batch.
            let result =
                match std::future::poll_fn(|cx| Poll::Ready(batch.poll_write(&mut socket, cx)))
                    .await
                {
                    Poll::Ready(result) => Ok(result),
                    Poll::Pending => {
                        outbox.progressed();
                        // Boxed: only a blocked write needs this state.
                        let rest = std::future::poll_fn(|cx| {
                            let before = batch.position();
                            let poll = batch.poll_write(&mut socket, cx);
                            if poll.is_pending() && batch.position() != before {
                                outbox.progressed();
                            }
                            poll
                        });
                        Box::pin(tokio::time::timeout(ctx.write_timeout, rest)).await
                    }
                };
            match result {
                Ok(Ok(())) if batch.closing => {
                    // A graceful close: the client has its last line; tell it we are done.
                    // Boxed: a future every connection would otherwise carry for its last moment.
                    let _ =
                        Box::pin(tokio::time::timeout(ctx.write_timeout, socket.shutdown())).await;
                    return;
                }
                Ok(Ok(())) => {
                    outbox.written();
                    ctx.metrics.lines_delivered.inc_by(batch.lines.len() as u64);
                    if let Some(since) = batch.since {
                        ctx.metrics
                            .fanout_latency
                            .observe(since.elapsed().as_secs_f64());
                    }
                }
                Ok(Err(error)) => {
                    tracing::debug!(client = %ctx.client, %error, "write failed");
                    outbox.close(None, true);
                    return;
                }
                Err(_) => {
                    tracing::info!(client = %ctx.client, timeout = ?ctx.write_timeout, "write timed out");
                    outbox.close(None, true);
                    return;
                }
            }
        }
    }
}

/// A batch on its way to the socket (its lines, then its last line) and how far the socket has
/// taken it.
struct Unwritten {
    lines: VecDeque<Bytes>,
    last: Option<Bytes>,
    /// The connection closes once this batch is written.
    closing: bool,
    /// When the oldest line was queued (not known for the closing batch).
    since: Option<Instant>,
    /// The first line not fully written, and how much of it was.
    line: usize,
    offset: usize,
}

impl Unwritten {
    /// `batch` as this client gets it: through `adapt`, if given.
    fn new(batch: Batch, adapt: Option<&Adapt>) -> Self {
        let (mut lines, closing, mut last, since) = match batch {
            Batch::Lines(lines, since) => (lines, false, None, Some(since)),
            Batch::Close(last) => (VecDeque::new(), true, last, None),
        };
        if let Some(adapt) = adapt {
            // In place: no allocation per batch.
            lines.retain_mut(|line| match adapt(std::mem::take(line)) {
                Some(adapted) => {
                    *line = adapted;
                    true
                }
                None => false,
            });
            last = last.and_then(|line| adapt(line));
        }
        Unwritten {
            lines,
            last,
            closing,
            since,
            line: 0,
            offset: 0,
        }
    }

    fn piece(&self, index: usize) -> Option<&[u8]> {
        match self.lines.get(index) {
            Some(line) => Some(line),
            None if index == self.lines.len() => self.last.as_deref(),
            None => None,
        }
    }

    /// How far the socket has got.
    fn position(&self) -> (usize, usize) {
        (self.line, self.offset)
    }

    /// Writes until everything is written or the socket would block.
    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // An empty piece would make a write of nothing look like a closed socket.
            while self.piece(self.line).is_some_and(<[u8]>::is_empty) {
                self.line += 1;
                self.offset = 0;
            }
            let mut slices = [IoSlice::new(&[]); SLICES_PER_WRITE];
            let mut count = 0;
            while count < SLICES_PER_WRITE {
                let Some(piece) = self.piece(self.line + count) else {
                    break;
                };
                let skip = if count == 0 { self.offset } else { 0 };
                slices[count] = IoSlice::new(&piece[skip..]);
                count += 1;
            }
            if count == 0 {
                return Poll::Ready(Ok(()));
            }
            let written = match Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            };
            self.advance(written);
        }
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(piece) = self.piece(self.line) else {
                return;
            };
            let left = piece.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.line += 1;
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_batch_larger_than_the_socket_arrives_whole_and_in_order() {
        let lines: VecDeque<Bytes> = (0..500)
            .map(|i| Bytes::from(format!("line {i}\n")))
            .collect();
        let last = Bytes::from_static(b"bye\n");
        let expected: Vec<u8> = lines
            .iter()
            .chain(Some(&last))
            .flat_map(|l| l.to_vec())
            .collect();
        let (mut client, mut server) = tokio::io::duplex(100);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.map(|_| got)
        });
        let mut batch = Unwritten {
            lines,
            last: Some(last),
            closing: true,
            since: None,
            line: 0,
            offset: 0,
        };
        std::future::poll_fn(|cx| batch.poll_write(&mut server, cx))
            .await
            .unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap().unwrap(), expected);
    }
}
