//! The web door's listener: plain HTTP, or HTTPS (and so WSS) with `[web] tls = true`.
//!
//! axum serves whatever a [`Listener`] accepts. Over TLS, accepting means a handshake, and one
//! client that never finishes its handshake must not hold up everyone behind it: a task of its
//! own accepts connections and runs their handshakes side by side (at most
//! [`MAX_HANDSHAKES`] at once, each within the handshake timeout, so a crowd of stalled
//! handshakes costs bounded memory), and hands finished streams to the listener through a small
//! queue. An address over its per-address limits is refused before its handshake; connection
//! permits and the per-address counts are taken by the `/ws` handler, as over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::net::tls::TlsCertificates;

/// TLS handshakes under way at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 128;

/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

/// A connection to the web door, plain or TLS.
pub(crate) type WebStream = Either<TcpStream, TlsStream<TcpStream>>;

/// The web door's listener.
pub(crate) enum WebListener {
    Plain(TcpListener),
    Tls {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    },
}

/// What the TLS accept task needs.
pub(crate) struct TlsAccept {
    pub(crate) certificates: TlsCertificates,
    pub(crate) handshake_timeout: Duration,
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) metrics: Arc<Metrics>,
    /// Checked before a handshake starts (counted at the WebSocket upgrade).
    pub(crate) limits: Arc<crate::net::admission::AddressLimits>,
    /// Proxies, whose own address is not the client's and is not limited here.
    pub(crate) trusted_proxies: crate::addresses::AddressList,
}

impl WebListener {
    /// A listener for `listener`: TLS when `tls` is given, with its accept task on `tls.tasks`.
    pub(crate) fn new(listener: TcpListener, tls: Option<TlsAccept>) -> std::io::Result<Self> {
        let Some(tls) = tls else {
            return Ok(WebListener::Plain(listener));
        };
        let local = listener.local_addr()?;
        let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
        let tasks = tls.tasks.clone();
        tasks.spawn(accept_tls(listener, tls, ready_tx));
        Ok(WebListener::Tls { ready, local })
    }
}

impl Listener for WebListener {
    type Io = WebStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            WebListener::Plain(listener) => {
                let (stream, addr) = Listener::accept(listener).await;
                (Either::Left(stream), addr)
            }
            WebListener::Tls { ready, .. } => match ready.recv().await {
                Some((stream, addr)) => (Either::Right(stream), addr),
                // The accept task ended (shutdown): nothing more will come.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match self {
            WebListener::Plain(listener) => listener.local_addr(),
            WebListener::Tls { local, .. } => Ok(*local),
        }
    }
}

/// Accepts connections and runs their TLS handshakes until `stop`.
async fn accept_tls(
    listener: TcpListener,
    tls: TlsAccept,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = tls.stop.cancelled() => return,
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (socket, addr) = tokio::select! {
            _ = tls.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "web accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // An address over its limits is refused before any TLS work; the connection is counted
        // at the WebSocket upgrade, once.
        if !tls.trusted_proxies.contains(addr.ip())
            && let Err(refusal) = tls.limits.check(addr.ip())
        {
            tracing::info!(peer = %addr, %refusal, "web connection refused before its TLS handshake");
            continue;
        }
        let _ = socket.set_nodelay(true);
        let acceptor = tls.certificates.acceptor();
        let (ready, stop, metrics, timeout) = (
            ready.clone(),
            tls.stop.clone(),
            tls.metrics.clone(),
            tls.handshake_timeout,
        );
        tls.tasks.spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(timeout, acceptor.accept(socket));
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                stream = handshake => stream,
            };
            match stream {
                Ok(Ok(stream)) => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = ready.send((stream, addr)) => {}
                    }
                }
                Ok(Err(error)) => {
                    metrics.handshake_failure("tls");
                    tracing::info!(peer = %addr, %error, "web TLS handshake failed (plain HTTP sent to the HTTPS port?); connection dropped");
                }
                Err(_) => {
                    metrics.handshake_failure("tls_timeout");
                    tracing::info!(peer = %addr, "web TLS handshake timed out; connection dropped");
                }
            }
        });
    }
}
