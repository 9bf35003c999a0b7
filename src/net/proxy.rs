//! The PROXY protocol (HAProxy's, versions 1 and 2): a client's real address, from the proxy in
//! front of the text and IRC doors.
//!
//! Behind a load balancer every connection comes from the proxy. For connections from
//! `[admission] trusted_proxies`, the proxy's header — sent first, before any protocol bytes and
//! before TLS — names the client, and limits, bans, logs and metrics use that address. The
//! header is read without consuming a byte more than it has (a peek, then exactly its length), so
//! what follows is the client's own stream. A header from an untrusted address, or a malformed
//! one, closes the connection ([`UntrustedHeaderGuard`] catches the former in the stream).
//!
//! Bounded: a header is at most 107 bytes (v1) or 16 + 1,024 bytes (v2; longer is refused), and
//! it must arrive within the handshake timeout.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

/// The twelve bytes that open a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header, `\r\n` included.
const V1_MAX: usize = 107;

/// The most address and TLV bytes a version 2 header may carry here.
const V2_MAX_BODY: usize = 1024;

/// How long a trusted proxy's connection is watched for a header when one is not required: a
/// proxy sends it at once, and a direct client of the text door (which waits for the server to
/// speak first) is greeted after this.
pub(crate) const OPTIONAL_HEADER_WAIT: Duration = Duration::from_millis(100);

/// Why a connection from a trusted proxy was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No header, and `require_proxy_header` is on.
    #[error("no PROXY header, and [admission] require_proxy_header is on")]
    Missing,
    /// Not a header this server can read.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    /// The connection failed while reading it.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// The client's address.
    Client(SocketAddr),
    /// The proxy's own connection (a health check: v1 `UNKNOWN`, v2 `LOCAL`): keep the peer's.
    Local,
}

/// Reads the PROXY header a trusted proxy sent first on `socket`. `Ok(None)` when there is none
/// (allowed only when not `required`). Waits at most `wait` for the first bytes.
pub(crate) async fn read_header(
    socket: &mut TcpStream,
    wait: Duration,
    required: bool,
) -> Result<Option<Header>, ProxyError> {
    let mut first = [0u8; 16];
    let seen = match tokio::time::timeout(wait, peek_enough(socket, &mut first)).await {
        Ok(seen) => seen?,
        Err(_) if required => return Err(ProxyError::Missing),
        Err(_) => return Ok(None),
    };
    let first = &first[..seen];
    if first.starts_with(&V2_SIGNATURE) {
        return read_v2(socket).await.map(Some);
    }
    if first.starts_with(b"PROXY ") {
        return read_v1(socket).await.map(Some);
    }
    if required {
        return Err(ProxyError::Missing);
    }
    Ok(None)
}

/// Peeks until the bytes seen either hold a whole signature or cannot start one.
async fn peek_enough(socket: &TcpStream, buf: &mut [u8; 16]) -> io::Result<usize> {
    loop {
        let seen = socket.peek(buf).await?;
        if seen == 0 {
            return Ok(0);
        }
        let bytes = &buf[..seen];
        let could_be_v2 = V2_SIGNATURE.starts_with(&bytes[..seen.min(12)]);
        let could_be_v1 = b"PROXY ".starts_with(&bytes[..seen.min(6)]);
        if seen >= 12 || !(could_be_v1 || could_be_v2) {
            return Ok(seen);
        }
        // A partial signature (the header split over segments, rare): look again shortly. The
        // caller's timeout bounds this.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn read_v1(socket: &mut TcpStream) -> Result<Header, ProxyError> {
    let mut line = Vec::with_capacity(V1_MAX);
    while !line.ends_with(b"\r\n") {
        if line.len() == V1_MAX {
            return Err(ProxyError::Malformed("a v1 header longer than 107 bytes"));
        }
        line.push(socket.read_u8().await?);
    }
    parse_v1(&line[..line.len() - 2])
}

fn parse_v1(line: &[u8]) -> Result<Header, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("not ASCII"))?;
    let mut words = text.split(' ');
    let (_proxy, family) = (words.next(), words.next());
    let bad = ProxyError::Malformed("not PROXY TCP4|TCP6 SRC DST SPORT DPORT");
    match family {
        Some("UNKNOWN") => Ok(Header::Local),
        Some("TCP4" | "TCP6") => {
            let (Some(src), Some(_dst), Some(port), Some(_dport), None) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) else {
                return Err(bad);
            };
            let ip: IpAddr = src.parse().map_err(|_| bad)?;
            let port: u16 = port
                .parse()
                .map_err(|_| ProxyError::Malformed("a bad port"))?;
            if ip.is_ipv4() != (family == Some("TCP4")) {
                return Err(ProxyError::Malformed("an address of the wrong family"));
            }
            Ok(Header::Client(SocketAddr::new(ip, port)))
        }
        _ => Err(bad),
    }
}

async fn read_v2(socket: &mut TcpStream) -> Result<Header, ProxyError> {
    let mut head = [0u8; 16];
    socket.read_exact(&mut head).await?;
    let length = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if length > V2_MAX_BODY {
        return Err(ProxyError::Malformed("a v2 header longer than 1,040 bytes"));
    }
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await?;
    parse_v2(head[12], head[13], &body)
}

fn parse_v2(version_command: u8, family: u8, body: &[u8]) -> Result<Header, ProxyError> {
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("not version 2"));
    }
    match version_command & 0x0f {
        0 => return Ok(Header::Local),
        1 => {}
        _ => return Err(ProxyError::Malformed("an unknown command")),
    }
    let short = ProxyError::Malformed("addresses shorter than their family");
    match family >> 4 {
        // IPv4: source, destination, source port, destination port.
        1 => {
            let a = body.get(..12).ok_or(short)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Ok(Header::Client(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            let a = body.get(..36).ok_or(short)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(Header::Client(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        // Unspecified or a Unix socket: nothing to use; keep the peer's address.
        _ => Ok(Header::Local),
    }
}

/// Watches the first bytes of a connection from an address that is *not* a trusted proxy: a
/// PROXY header there is someone claiming to be a proxy, and ends the connection (a read error,
/// logged) instead of reaching the session as lines. Costs one comparison per read after that,
/// and nothing to keep: what it watches with is freed once the first bytes rule a header out.
pub(crate) struct UntrustedHeaderGuard<R> {
    inner: R,
    /// `None` once decided (or never watched).
    watch: Option<Box<HeaderWatch>>,
}

/// What the guard needs until the first bytes rule a header in or out.
struct HeaderWatch {
    peer: SocketAddr,
    /// The first bytes seen.
    start: [u8; 12],
    seen: usize,
}

impl<R> UntrustedHeaderGuard<R> {
    /// Watches `inner`, the stream of `peer`, unless `watch` is false (a trusted proxy's
    /// connection, whose header was already read).
    pub(crate) fn new(inner: R, peer: SocketAddr, watch: bool) -> Self {
        UntrustedHeaderGuard {
            inner,
            watch: watch.then(|| {
                Box::new(HeaderWatch {
                    peer,
                    start: [0; 12],
                    seen: 0,
                })
            }),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for UntrustedHeaderGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(watch) = this.watch.as_mut() else {
            return polled;
        };
        if !matches!(polled, Poll::Ready(Ok(()))) {
            return polled;
        }
        let new = &buf.filled()[before..];
        let take = new.len().min(12 - watch.seen);
        watch.start[watch.seen..watch.seen + take].copy_from_slice(&new[..take]);
        watch.seen += take;
        let start = &watch.start[..watch.seen];
        let v1 = b"PROXY ".starts_with(&start[..start.len().min(6)]);
        let v2 = V2_SIGNATURE.starts_with(start);
        let header = (v1 && start.len() >= 6) || (v2 && start.len() == 12);
        if header {
            tracing::info!(peer = %watch.peer, "PROXY header from an address not in [admission] trusted_proxies; connection closed");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "PROXY header from an untrusted address",
            )));
        }
        if !(v1 || v2) || watch.seen == 12 || new.is_empty() {
            this.watch = None;
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 6667").unwrap(),
            Header::Client("203.0.113.7:56324".parse().unwrap())
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 ::1 4000 443").unwrap(),
            Header::Client("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN").unwrap(), Header::Local);
        for bad in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 56324"[..],
            b"PROXY TCP4 2001:db8::1 ::1 1 2",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 1",
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 extra",
        ] {
            assert!(parse_v1(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn version_2() {
        let v4 = [203, 0, 113, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x1a, 0x0b];
        assert_eq!(
            parse_v2(0x21, 0x11, &v4).unwrap(),
            Header::Client("203.0.113.7:56324".parse().unwrap())
        );
        assert_eq!(parse_v2(0x20, 0x00, &[]).unwrap(), Header::Local);
        assert!(parse_v2(0x21, 0x11, &v4[..8]).is_err());
        assert!(parse_v2(0x11, 0x11, &v4).is_err());
        assert!(parse_v2(0x22, 0x11, &v4).is_err());
    }
}
