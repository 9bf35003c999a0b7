//! One task per connection: the reading side and the writing side polled as one future.
//!
//! A connection has two sides that wait on different things: the reading side on the client's
//! bytes and the idle watch ([`super::idle`]); the writing side on its [`crate::hub::Outbox`]
//! and the socket. Running them as two tasks cost each connection two task headers, two futures
//! and a token for each side to learn that the other had ended. [`BothSides`] runs both in one
//! task and polls only the side that was woken, so a writer woken a thousand times a second in
//! a busy room does not poll the reading side each time.
//!
//! [`Connection`] is a connection's life:
//! - while both sides run, the first to end decides what follows;
//! - the reading side ends when the client goes (it has told the pipeline), when its handshake
//!   fails, or when shutdown begins: the writing side then flushes what is queued until the
//!   outbox closes or the shutdown grace period is over;
//! - the writing side ends when the socket fails or the hub closed the outbox: the reading side
//!   is dropped, and the pipeline is told the client left (with [`Sent`], which keeps what the
//!   reading side had sent) unless shutdown has begun.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker, ready};

use futures::task::{ArcWake, AtomicWaker, waker_ref};
use pin_project_lite::pin_project;
use tokio_util::sync::WaitForCancellationFutureOwned;

use tokio::io::AsyncWrite;

use super::writer::{Adapt, WriterContext, write_loop};
use super::{Admission, Sent, SessionShared, send};
use crate::event::{Body, ClientId};
use crate::hub::Outbox;

/// Which side of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Reading,
    Writing,
}

pin_project! {
    /// Two futures polled in one task, each only when its own waker fired. Completes with the
    /// side that ended first; polled again, it goes on with the other side and completes when
    /// that one ends. Not to be polled after both have ended.
    pub(crate) struct BothSides<R, W> {
        #[pin]
        reading: R,
        #[pin]
        writing: W,
        read: SideWaker,
        write: SideWaker,
        reading_done: bool,
        writing_done: bool,
    }
}

/// One side's waker: it marks the side as woken and wakes the task.
struct SideWaker {
    wake: Arc<SideWake>,
}

struct SideWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for SideWake {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.store(true, Ordering::Release);
        arc_self.task.wake();
    }
}

impl SideWaker {
    fn new() -> Self {
        // Woken to begin with, so each side is polled once.
        SideWaker {
            wake: Arc::new(SideWake {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }

    /// Polls `side` if it was woken since its last poll.
    fn poll<F: Future<Output = ()>>(&self, side: Pin<&mut F>, task: &Waker) -> Poll<()> {
        // Registered before the flag is read: a wake-up in between sets the flag and wakes the
        // task again, so none is lost.
        self.wake.task.register(task);
        if !self.wake.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        // Borrowed, not stored: a `Waker` kept in the connection would cost every connection
        // sixteen bytes, and borrowing one costs no reference count.
        let waker = waker_ref(&self.wake);
        side.poll(&mut Context::from_waker(&waker))
    }
}

impl<R, W> BothSides<R, W>
where
    R: Future<Output = ()>,
    W: Future<Output = ()>,
{
    pub(crate) fn new(reading: R, writing: W) -> Self {
        BothSides {
            reading,
            writing,
            read: SideWaker::new(),
            write: SideWaker::new(),
            reading_done: false,
            writing_done: false,
        }
    }
}

impl<R, W> Future for BothSides<R, W>
where
    R: Future<Output = ()>,
    W: Future<Output = ()>,
{
    type Output = Side;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Side> {
        let this = self.project();
        if !*this.reading_done && this.read.poll(this.reading, cx.waker()).is_ready() {
            *this.reading_done = true;
            return Poll::Ready(Side::Reading);
        }
        if !*this.writing_done && this.write.poll(this.writing, cx.waker()).is_ready() {
            *this.writing_done = true;
            return Poll::Ready(Side::Writing);
        }
        Poll::Pending
    }
}

pin_project! {
    /// A connection's whole life as one future (see the module documentation): both sides, then
    /// whatever the first to end calls for. A named future rather than an `async fn`, so the two
    /// sides are stored exactly once: an `async fn` keeps its arguments beside whatever it moves
    /// them into, and the sides are most of what an idle connection costs.
    pub(crate) struct Connection<R, W> {
        #[pin]
        sides: BothSides<R, W>,
        shared: Arc<SessionShared>,
        sent: Arc<Sent>,
        ending: Ending,
        // Held for what its `Drop` releases when the connection is over.
        _admission: Admission,
    }
}

/// What a connection is doing once a side has ended.
enum Ending {
    /// Both sides run.
    Running,
    /// The reading side is done: the writing side flushes until it ends or the shutdown grace
    /// period is over.
    Draining(Pin<Box<WaitForCancellationFutureOwned>>),
    /// The writing side ended first: the pipeline is being told the client left.
    Farewell(Pin<Box<dyn Future<Output = bool> + Send>>),
}

/// Client `id`'s connection: a new outbox, drained onto `write_half` (through `adapt`, if
/// given) by the writing side, and the reading side `read` makes from that outbox and the record
/// of what it sends.
pub(crate) fn open<W, R>(
    shared: Arc<SessionShared>,
    id: ClientId,
    (write_half, adapt): (W, Option<Adapt>),
    admission: Admission,
    read: impl FnOnce(Outbox, Arc<Sent>) -> R,
) -> Connection<R, impl Future<Output = ()>>
where
    W: AsyncWrite + Unpin,
    R: Future<Output = ()>,
{
    let outbox = shared.new_outbox();
    let sent = Arc::new(Sent::default());
    shared.idle.watch(&sent);
    let context = WriterContext {
        client: id,
        write_timeout: shared.config.write_timeout,
        metrics: shared.metrics.clone(),
        adapt,
    };
    let writing = write_loop(write_half, outbox.clone(), context);
    let reading = read(outbox, sent.clone());
    Connection {
        sides: BothSides::new(reading, writing),
        shared,
        sent,
        ending: Ending::Running,
        _admission: admission,
    }
}

impl<R, W> Future for Connection<R, W>
where
    R: Future<Output = ()>,
    W: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            match this.ending {
                Ending::Running => match ready!(this.sides.as_mut().poll(cx)) {
                    Side::Reading => {
                        let cut = this.shared.cut.clone().cancelled_owned();
                        *this.ending = Ending::Draining(Box::pin(cut));
                    }
                    Side::Writing => {
                        let left = Body::Left("connection closed".to_owned());
                        let event = match this.sent.event(left) {
                            Some(event) if !this.shared.stop_reading.is_cancelled() => event,
                            _ => return Poll::Ready(()),
                        };
                        let shared = this.shared.clone();
                        let farewell = async move { send(&shared, event).await };
                        *this.ending = Ending::Farewell(Box::pin(farewell));
                    }
                },
                Ending::Draining(cut) => {
                    if this.sides.as_mut().poll(cx).is_ready() || cut.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
                Ending::Farewell(farewell) => {
                    ready!(farewell.as_mut().poll(cx));
                    return Poll::Ready(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;

    /// A side that counts its polls and waits for `notify`, forever.
    async fn side(polls: &AtomicUsize, notify: &tokio::sync::Notify) {
        loop {
            polls.fetch_add(1, Ordering::Relaxed);
            notify.notified().await;
        }
    }

    #[tokio::test]
    async fn only_the_woken_side_is_polled() {
        let (read_polls, write_polls) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (read_wake, write_wake) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
        let stop = tokio::sync::Notify::new();
        let reading = async {
            tokio::select! {
                () = side(&read_polls, &read_wake) => {}
                () = stop.notified() => {}
            }
        };
        let writing = side(&write_polls, &write_wake);
        let mut sides = pin!(BothSides::new(reading, writing));
        let mut step = || {
            futures::FutureExt::now_or_never(sides.as_mut());
        };
        step();
        assert_eq!(
            (
                read_polls.load(Ordering::Relaxed),
                write_polls.load(Ordering::Relaxed)
            ),
            (1, 1)
        );
        for _ in 0..5 {
            write_wake.notify_one();
            step();
        }
        assert_eq!(
            read_polls.load(Ordering::Relaxed),
            1,
            "the reader was not polled"
        );
        assert_eq!(write_polls.load(Ordering::Relaxed), 6);
        read_wake.notify_one();
        step();
        assert_eq!(read_polls.load(Ordering::Relaxed), 2);
        assert_eq!(
            write_polls.load(Ordering::Relaxed),
            6,
            "the writer was not polled"
        );
        stop.notify_one();
        assert_eq!(sides.as_mut().await, Side::Reading);
    }
}
