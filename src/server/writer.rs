//! The writer half of a session: drains the client's [`Outbox`] onto the socket.
//!
//! Everything queued when the writer wakes goes out in one vectored write (`writev`), so a busy
//! room costs one syscall per client per batch, not one per line, and no line is copied: the
//! shared buffers the hub queued are written directly. Every write has a deadline; a client that
//! does not take its bytes in time is dropped. Between batches the writer keeps only a small
//! spare queue (at most `MAX_KEPT_QUEUE` entries) to swap with the outbox, which keeps an idle
//! connection cheap.
//!
//! The writer tells the outbox when a batch is taken, when the socket takes part of it and when
//! it is written: that is what lets the outbox tell a stuck client from one whose writer merely
//! has not run yet (see [`crate::hub::Outbox`]).
//!
//! The writer owns the connection's admission permit and cancels the session's `closed` token
//! when it ends, however it ends, so the reader stops too.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::session::Admission;
use crate::event::ClientId;
use crate::hub::{Batch, Outbox};
use crate::metrics::Metrics;

/// Largest line queue (in lines) a writer keeps for reuse between batches.
const MAX_KEPT_QUEUE: usize = 8;

/// What a writer needs besides its socket and outbox.
pub(crate) struct WriterContext {
    pub(crate) client: ClientId,
    pub(crate) write_timeout: Duration,
    /// Cancelled when the shutdown grace period is over: stop writing at once.
    pub(crate) cut: CancellationToken,
    /// Cancelled by the writer when it ends.
    pub(crate) closed: CancellationToken,
    /// The connection's place in the limits, released when it is fully closed.
    pub(crate) admission: Admission,
    pub(crate) metrics: Arc<Metrics>,
    /// What this client gets of each line rendered for its whole door (IRC drops tags and echoes
    /// the client did not ask for); `None` sends every line as it is.
    pub(crate) adapt: Option<Adapt>,
}

/// A per-client last step before the socket: the line to send instead, or `None` for nothing.
pub(crate) type Adapt = Arc<dyn Fn(Bytes) -> Option<Bytes> + Send + Sync>;

/// Writes batches from `outbox` to `socket` until the outbox is closed or a write fails.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut socket: W,
    outbox: Outbox,
    ctx: WriterContext,
) {
    let _closed = ctx.closed.clone().drop_guard();
    let _admission = ctx.admission;
    let mut spare = VecDeque::new();
    loop {
        let batch = tokio::select! {
            _ = ctx.cut.cancelled() => return,
            batch = outbox.next_batch(std::mem::take(&mut spare)) => batch,
        };
        let (mut lines, closing, mut last, since) = match batch {
            Batch::Lines(lines, since) => (lines, false, None, Some(since)),
            Batch::Close(last) => (VecDeque::new(), true, last, None),
        };
        if let Some(adapt) = &ctx.adapt {
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
        let result = tokio::select! {
            _ = ctx.cut.cancelled() => return,
            // Boxed: the write's state is only needed while writing; unboxed it would sit in every
            // idle connection's writer future.
            result = Box::pin(tokio::time::timeout(ctx.write_timeout, write_all(&mut socket, &outbox, &lines, last))) => result,
        };
        match result {
            Ok(Ok(())) if closing => {
                // A graceful close: the client has its last line; tell it we are done.
                let _ = tokio::time::timeout(ctx.write_timeout, socket.shutdown()).await;
                return;
            }
            Ok(Ok(())) => {
                outbox.written();
                ctx.metrics.lines_delivered.inc_by(lines.len() as u64);
                if let Some(since) = since {
                    ctx.metrics
                        .fanout_latency
                        .observe(since.elapsed().as_secs_f64());
                }
                // Recycle the queue, unless a burst made it large: an idle connection should
                // not keep a burst's worth of capacity.
                if lines.capacity() <= MAX_KEPT_QUEUE {
                    spare = lines;
                    spare.clear();
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

/// Writes every line, then `last`, with as few `writev` calls as the socket allows, telling the
/// outbox each time the socket takes bytes (so a client reading a long backlog is not mistaken
/// for a stalled one).
async fn write_all(
    socket: &mut (impl AsyncWrite + Unpin),
    outbox: &Outbox,
    lines: &VecDeque<Bytes>,
    last: Option<Bytes>,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = lines
        .iter()
        .chain(last.as_ref())
        .map(|line| IoSlice::new(line))
        .collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = socket.write_vectored(remaining).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, written);
        if !remaining.is_empty() {
            outbox.progressed();
        }
    }
    Ok(())
}
