//! The accept loop: admission, then one session per connection.
//!
//! A connection permit is taken *before* `accept`, so at `max_connections` the server stops
//! accepting (clients wait in the kernel's backlog) instead of accepting and failing, and never
//! spins on `EMFILE`. Accept errors are retried with a growing pause, never fatal.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use tokio::io::AsyncWriteExt;

use futures::future::Either;

use super::admission::Refusal;
use super::session::{Admission, SessionShared, run_session};
use super::tls::TlsCertificates;
use crate::protocol::server_line;

/// How long a refused client gets to take its one line.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// First pause after a failed accept; doubled on each further failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Keepalive probes find peers that vanished without a FIN (a pulled cable, a dead NAT entry).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts connections until shutdown begins.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<SessionShared>,
    tls: Option<TlsCertificates>,
) {
    let permits = shared.permits.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let permit = tokio::select! {
            _ = shared.stop_reading.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; here for completeness
            },
        };
        let accepted = tokio::select! {
            _ = shared.stop_reading.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, addr) = match accepted {
            Ok(accepted) => {
                backoff = FIRST_BACKOFF;
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, pause = ?backoff, "accept failed; retrying");
                tokio::select! {
                    _ = shared.stop_reading.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        configure(&socket);
        let address = match shared.address_limits.admit(addr.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                tracing::info!(peer = %addr, %refusal, "connection refused");
                shared.tasks.spawn(refuse(socket, refusal));
                continue;
            }
        };
        let id = shared.next_client_id();
        tracing::debug!(client = %id, peer = %addr, "connection accepted");
        let admission = Admission { permit, address };
        shared.tasks.spawn(match &tls {
            None => Either::Left(run_session(shared.clone(), id, socket, addr, admission)),
            Some(tls) => Either::Right(tls_session(
                shared.clone(),
                id,
                socket,
                addr,
                admission,
                tls.acceptor(),
            )),
        });
    }
    tracing::info!("listener closed");
}

/// Runs the TLS handshake — within the handshake timeout, so a client that never finishes it
/// costs a bounded amount of memory for a bounded time — then serves the connection.
async fn tls_session(
    shared: Arc<SessionShared>,
    id: crate::event::ClientId,
    socket: TcpStream,
    addr: std::net::SocketAddr,
    admission: super::session::Admission,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let handshake = tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(socket));
    let stream = tokio::select! {
        _ = shared.stop_reading.cancelled() => return,
        stream = handshake => stream,
    };
    match stream {
        Ok(Ok(stream)) => {
            let (read_half, write_half) = tokio::io::split(stream);
            super::session::serve(shared, id, read_half, write_half, addr, admission).await;
        }
        Ok(Err(error)) => {
            shared.metrics.handshake_failure("tls");
            tracing::info!(peer = %addr, %error, "TLS handshake failed (plain text sent to the TLS port?); connection dropped");
        }
        Err(_) => {
            shared.metrics.handshake_failure("tls_timeout");
            tracing::info!(peer = %addr, "TLS handshake timed out; connection dropped");
        }
    }
}

/// Tells a refused client why, briefly, and closes.
async fn refuse(mut socket: TcpStream, refusal: Refusal) {
    let line = server_line(&refusal.to_string());
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        socket.write_all(&line).await?;
        socket.shutdown().await
    })
    .await;
}

/// `TCP_NODELAY` (the writer batches; Nagle would only add latency) and keepalive.
fn configure(socket: &TcpStream) {
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(error) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "cannot set TCP keepalive");
    }
}
