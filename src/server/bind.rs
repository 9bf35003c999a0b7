//! Binding the doors' listeners: each configured address is resolved and bound with a backlog
//! large enough for a reconnect storm.
//!
//! Invariants: an address of `""` means the listener is off (no socket, no error); a failure
//! names the door and the address, so the operator knows which line of the configuration to
//! fix; every candidate the name resolves to is tried before giving up.

use tokio::net::TcpListener;

use super::ServerError;

/// Connections the kernel may hold for a listener before it is ready to take them: the default
/// `net.core.somaxconn` since Linux 5.4, which caps it. A server that restarts is met by every
/// client reconnecting at once: with the 128 that tokio's `bind` gave, a storm of ten thousand
/// overflowed the queue, and the kernel made the overflow retry its handshake after 1, 3, 7,
/// 15… seconds.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`].
pub(super) fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As the standard library does for listeners: a restarted server can bind again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds `addr` for `door` (named in the error), unless it is `""` (the listener is off).
pub(super) async fn bind_unless_off(
    addr: &str,
    door: &'static str,
) -> Result<Option<TcpListener>, ServerError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let bind_error = |source| ServerError::Bind {
        door,
        addr: addr.to_owned(),
        source,
    };
    let resolved = tokio::net::lookup_host(addr).await.map_err(bind_error)?;
    let mut last_error = None;
    for candidate in resolved {
        match listen(candidate) {
            Ok(listener) => return Ok(Some(listener)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(bind_error(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    })))
}
