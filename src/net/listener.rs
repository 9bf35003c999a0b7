//! The accept loop: admission, then one session per connection.
//!
//! Every door (text, IRC, each over TLS, and the web door) accepts with [`accept_next`]: a
//! connection waits for its `max_connections` permit right after `accept`, and its loop accepts
//! no other meanwhile, so at the limit the server stops accepting (clients wait in the kernel's
//! backlog) instead of accepting and failing, and never spins on `EMFILE`. Accept errors are
//! retried with a growing pause, never fatal.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use tokio::io::AsyncWriteExt;

use super::admission::Refusal;
use super::tls::TlsCertificates;
use crate::session::{Admission, SessionShared};
use std::net::SocketAddr;

/// How long a refused client gets to take its one line.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// First pause after a failed accept; doubled on each further failure up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Keepalive probes find peers that vanished without a FIN (a pulled cable, a dead NAT entry).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// What a listener hands its admitted connections to: a door (see [`crate::doors`]).
pub(crate) trait Door: Clone + Send + Sync + 'static {
    /// Serves one connection, given its two halves (plain TCP or TLS), until it closes.
    fn serve<R, W>(
        self,
        shared: Arc<SessionShared>,
        id: crate::event::ClientId,
        halves: (R, W),
        addr: std::net::SocketAddr,
        admission: Admission,
    ) -> impl Future<Output = ()> + Send
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static;

    /// Spawns the task serving a plain TCP connection (whose read half watches for a PROXY
    /// header from an untrusted peer when `watch_for_header`).
    fn spawn_plain(
        &self,
        shared: &Arc<SessionShared>,
        id: crate::event::ClientId,
        socket: TcpStream,
        addr_and_watch: (SocketAddr, bool),
        admission: Admission,
    );

    /// The one line a refused connection gets.
    fn refusal(&self, refusal: &Refusal) -> bytes::Bytes;
}

/// Accepts connections until shutdown begins.
pub(crate) async fn accept_loop<D: Door>(
    listener: TcpListener,
    shared: Arc<SessionShared>,
    protocol: D,
    tls: Option<TlsCertificates>,
) {
    let mut backoff = FIRST_BACKOFF;
    while let Some((socket, addr, permit)) = accept_next(&listener, &shared, &mut backoff).await {
        if shared.trusted_proxies.contains(addr.ip()) {
            // The client's address is in the proxy's header: admission waits for it.
            let from_proxy = from_proxy(
                shared.clone(),
                protocol.clone(),
                tls.clone(),
                socket,
                addr,
                permit,
            );
            shared.tasks.spawn(from_proxy);
        } else {
            admit(&shared, &protocol, tls.as_ref(), socket, addr, permit, true);
        }
    }
    tracing::info!("listener closed");
}

/// The next connection on `listener`, configured, with its `max_connections` permit; `None`
/// once shutdown begins. Every door accepts through this, so every connection holds a permit
/// from the moment it is accepted.
///
/// The permit is taken right *after* `accept`: a loop whose connection waits for one accepts no
/// other, so at the limit the server stops accepting (clients wait in the kernel's backlog, one
/// per door waits accepted) instead of accepting and failing. Taking it before `accept` would
/// have each door's idle loop hold a place, and with a small `max_connections` one door could
/// hold the last place while another door's clients waited. Accept errors (`EMFILE`, say) are
/// logged and retried after `backoff`, which grows up to [`MAX_BACKOFF`].
pub(crate) async fn accept_next(
    listener: &TcpListener,
    shared: &SessionShared,
    backoff: &mut Duration,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let (socket, addr) = loop {
        let accepted = tokio::select! {
            _ = shared.stop_reading.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                *backoff = FIRST_BACKOFF;
                break accepted;
            }
            Err(error) => {
                tracing::warn!(%error, pause = ?*backoff, "accept failed; retrying");
                tokio::select! {
                    _ = shared.stop_reading.cancelled() => return None,
                    _ = tokio::time::sleep(*backoff) => {}
                }
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let permit = tokio::select! {
        _ = shared.stop_reading.cancelled() => return None,
        permit = shared.permits.clone().acquire_owned() => permit.ok()?, // never closed
    };
    configure(&socket);
    Some((socket, addr, permit))
}

/// Reads a trusted proxy's PROXY header (within the handshake timeout when one is required, a
/// moment otherwise), then admits the connection under the client's address.
async fn from_proxy<D: Door>(
    shared: Arc<SessionShared>,
    protocol: D,
    tls: Option<TlsCertificates>,
    mut socket: TcpStream,
    proxy: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let required = shared.require_proxy_header;
    let wait = if required {
        shared.config.handshake_timeout
    } else {
        super::proxy::OPTIONAL_HEADER_WAIT
    };
    let header = tokio::select! {
        _ = shared.stop_reading.cancelled() => return,
        header = super::proxy::read_header(&mut socket, wait, required) => header,
    };
    let client = match header {
        Ok(Some(super::proxy::Header::Client(client))) => client,
        Ok(Some(super::proxy::Header::Local) | None) => proxy,
        Err(error) => {
            shared.metrics.handshake_failure("proxy_header");
            tracing::info!(%proxy, %error, "connection from a trusted proxy closed");
            return;
        }
    };
    tracing::debug!(%proxy, peer = %client, "client address from the PROXY header");
    admit(
        &shared,
        &protocol,
        tls.as_ref(),
        socket,
        client,
        permit,
        false,
    );
}

/// Applies the per-address limits to `addr` (the client's address) and starts serving the
/// connection, or tells it why not. `watch_for_header`: the peer is not a trusted proxy, so a
/// PROXY header from it closes the connection.
fn admit<D: Door>(
    shared: &Arc<SessionShared>,
    protocol: &D,
    tls: Option<&TlsCertificates>,
    socket: TcpStream,
    addr: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    watch_for_header: bool,
) {
    let address = match shared.address_limits.admit(addr.ip()) {
        Ok(guard) => guard,
        Err(refusal) => {
            tracing::info!(peer = %addr, %refusal, "connection refused");
            shared
                .tasks
                .spawn(refuse(socket, protocol.refusal(&refusal)));
            return;
        }
    };
    let id = shared.next_client_id();
    tracing::debug!(client = %id, peer = %addr, "connection accepted");
    let admission = Admission { permit, address };
    match tls {
        None => protocol.spawn_plain(shared, id, socket, (addr, watch_for_header), admission),
        Some(tls) => {
            shared.tasks.spawn(tls_session(
                protocol.clone(),
                shared.clone(),
                id,
                socket,
                addr,
                admission,
                tls.acceptor(),
            ));
        }
    }
}

/// Runs the TLS handshake — within the handshake timeout, so a client that never finishes it
/// costs a bounded amount of memory for a bounded time — then serves the connection.
async fn tls_session<D: Door>(
    protocol: D,
    shared: Arc<SessionShared>,
    id: crate::event::ClientId,
    socket: TcpStream,
    addr: std::net::SocketAddr,
    admission: Admission,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let handshake = tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(socket));
    let stream = tokio::select! {
        _ = shared.stop_reading.cancelled() => return,
        stream = handshake => stream,
    };
    match stream {
        Ok(Ok(stream)) => {
            let halves = tokio::io::split(stream);
            protocol.serve(shared, id, halves, addr, admission).await;
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
pub(crate) async fn refuse(mut socket: TcpStream, line: bytes::Bytes) {
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
