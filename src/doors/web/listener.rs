//! The web door's connections: accept, admission, TLS (with `[web] tls = true`), and HTTP/1.1
//! with deadlines.
//!
//! Each connection is accepted and counted as on the other doors, and served by hyper directly
//! (axum's `serve` would accept without limits and never set hyper's timer, so one host could
//! hold any number of half-sent requests open until the process ran out of file descriptors):
//!
//! - a connection takes its `max_connections` permit as it is accepted ([`accept_next`]), so at
//!   the limit the server stops accepting instead of failing;
//! - a peer that is not a trusted proxy is counted in the per-address limits at once, and one
//!   over them gets a `429` (plain HTTP; its permit is held until it is answered) or is closed
//!   (TLS, before any TLS work). A trusted proxy's connection carries many clients: its
//!   client's address is known only from the request, and is counted at the WebSocket upgrade
//!   (`/ws`);
//! - a task of its own runs the TLS handshake, within `handshake_timeout`, and then HTTP/1.1 with
//!   a header-read timeout of `handshake_timeout`: a request's headers must arrive within it.
//!   hyper starts that timer again whenever a keep-alive connection goes idle after a response,
//!   so an idle connection is closed after `handshake_timeout` too;
//! - the connection's permit and address count ([`Accepted`]) travel with each request, and the
//!   `/ws` handler moves them into the WebSocket session, which holds them until it ends. A
//!   connection that never upgrades frees them when it closes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tower::ServiceExt as _;

use crate::net::admission::{AddressGuard, Refusal};
use crate::net::listener::{FIRST_BACKOFF, accept_next, refuse};
use crate::net::tls::TlsCertificates;
use crate::session::{Admission, SessionShared};

/// One accepted connection as its requests see it: the peer, and the connection's place in the
/// limits until a WebSocket session takes it.
#[derive(Clone)]
pub(crate) struct Accepted {
    /// The TCP peer (a trusted proxy's address when there is one in front).
    pub(crate) peer: SocketAddr,
    /// The permit and the peer's address count (`None` for an exempt address or a trusted
    /// proxy). A std mutex, locked only to take them, never across an `.await`.
    held: Arc<Mutex<Option<Held>>>,
}

/// What an accepted connection holds of the limits: its `max_connections` permit and its
/// address count.
type Held = (OwnedSemaphorePermit, Option<AddressGuard>);

impl Accepted {
    /// The connection's admission for its WebSocket session, with `address` as its address count
    /// when given (the forwarded client's, behind a trusted proxy). `None` when a session has
    /// taken it already.
    pub(crate) fn take_admission(&self, address: Option<AddressGuard>) -> Option<Admission> {
        let (permit, own) = self.held.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(Admission {
            permit,
            address: address.or(own),
        })
    }
}

/// Accepts and serves web connections with `app` until shutdown begins.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    shared: Arc<SessionShared>,
    certificates: Option<TlsCertificates>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut backoff = FIRST_BACKOFF;
    while let Some((socket, peer, permit)) = accept_next(&listener, &shared, &mut backoff).await {
        let address = if shared.trusted_proxies.contains(peer.ip()) {
            None
        } else {
            // Open connections only: the WebSocket session it may become is counted against the
            // new-connection limit when it upgrades (a page load opens several connections).
            match shared.address_limits.admit_open(peer.ip()) {
                Ok(guard) => guard,
                Err(refusal) => {
                    tracing::info!(%peer, %refusal, "web connection refused");
                    if certificates.is_none() {
                        shared.tasks.spawn(refuse_http(socket, permit, refusal));
                    }
                    continue;
                }
            }
        };
        let accepted = Accepted {
            peer,
            held: Arc::new(Mutex::new(Some((permit, address)))),
        };
        let (app, shared_for_task, http) = (app.clone(), shared.clone(), http.clone());
        match &certificates {
            None => {
                shared
                    .tasks
                    .spawn(serve_http(socket, accepted, app, shared_for_task, http));
            }
            Some(certificates) => {
                let acceptor = certificates.acceptor();
                shared.tasks.spawn(async move {
                    let handshake = tokio::time::timeout(
                        shared_for_task.config.handshake_timeout,
                        acceptor.accept(socket),
                    );
                    let stream = tokio::select! {
                        _ = shared_for_task.stop_reading.cancelled() => return,
                        stream = handshake => stream,
                    };
                    match stream {
                        Ok(Ok(stream)) => {
                            serve_http(stream, accepted, app, shared_for_task, http).await;
                        }
                        Ok(Err(error)) => {
                            shared_for_task.metrics.handshake_failure("tls");
                            tracing::info!(%peer, %error, "web TLS handshake failed (plain HTTP sent to the HTTPS port?); connection dropped");
                        }
                        Err(_) => {
                            shared_for_task.metrics.handshake_failure("tls_timeout");
                            tracing::info!(%peer, "web TLS handshake timed out; connection dropped");
                        }
                    }
                });
            }
        }
    }
    tracing::info!("web listener closed");
}

/// Serves HTTP/1.1 on one connection until it closes, upgrades to a WebSocket, or shutdown:
/// then requests under way are answered and the connection is closed (at once when the grace
/// period is over).
async fn serve_http<S>(
    io: S,
    accepted: Accepted,
    app: Router,
    shared: Arc<SessionShared>,
    http: Arc<hyper::server::conn::http1::Builder>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = accepted.peer;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(accepted.clone());
        app.clone().oneshot(request)
    });
    let connection = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shared.stop_reading.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                served = connection.as_mut() => served,
                _ = shared.cut.cancelled() => Ok(()),
            }
        }
    };
    if let Err(error) = served {
        // A header-read timeout, a malformed request, a peer that went away.
        tracing::debug!(%peer, %error, "web connection closed");
    }
}

/// How long a refused plain-HTTP connection is given to send its request's head before the
/// answer.
const REFUSAL_READ_WAIT: Duration = Duration::from_secs(1);

/// The most of a refused request's head that is read (and thrown away).
const REFUSAL_READ_BYTES: usize = 8 * 1024;

/// Tells a plain-HTTP client over its address's limits why (`429`), and closes. The request's
/// head is read first (briefly, and bounded): closing a socket with unread bytes resets it, and
/// the client would lose the answer. The connection keeps its `max_connections` permit until
/// then, so refused connections too are bounded by it.
async fn refuse_http(mut socket: TcpStream, permit: OwnedSemaphorePermit, refusal: Refusal) {
    let _permit = permit;
    let mut head = Vec::with_capacity(1024);
    let _ = tokio::time::timeout(REFUSAL_READ_WAIT, async {
        let mut chunk = [0u8; 1024];
        while head.len() < REFUSAL_READ_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let body = format!("{refusal}\n");
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    refuse(socket, bytes::Bytes::from(response)).await;
}
