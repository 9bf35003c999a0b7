//! The web front door: the chat page at `/` and a WebSocket at `/ws` that speaks JSON.
//!
//! A browser opens the page (HTML, CSS and JavaScript compiled into the binary: no build step, no
//! CDN), which opens `/ws`. The WebSocket session (`session`) runs the same login as the text
//! protocol (names, accounts, passwords, the throttle), feeds the same pipeline, and the hub
//! renders what it says with [`JsonRender`]. Admission is shared with the other doors: one
//! connection limit, one set of per-address limits.
//!
//! Cross-site WebSocket hijacking is refused: an upgrade whose `Origin` is not the page's own,
//! localhost, or one of `[web] origins` gets 403.

mod listener;
mod page;
mod render;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub use render::{JsonRender, to_json};

use crate::addresses::AddressList;
use crate::config::ClientAddressHeader;
use crate::hub::DoorId;
use crate::session::SessionShared;

/// The WebSocket's read buffer: a few chat lines.
const WS_READ_BUFFER: usize = 4 * 1024;

/// Bytes gathered before the WebSocket writes to its socket (a batch is flushed anyway).
const WS_WRITE_BUFFER: usize = 16 * 1024;

/// What the web door's handlers share.
#[derive(Clone)]
pub(crate) struct WebState {
    pub(crate) shared: Arc<SessionShared>,
    /// The hub's id for this door's renderer.
    pub(crate) door: DoorId,
    /// Origins allowed besides the page's own and localhost.
    pub(crate) origins: Arc<Vec<String>>,
    /// The header a trusted proxy names the client in (`[web] client_address_header`).
    pub(crate) client_address_header: ClientAddressHeader,
}

/// Serves the page and the WebSocket on `listener` (over TLS with `certificates`) until
/// shutdown begins.
pub(crate) async fn serve(
    listener: TcpListener,
    state: WebState,
    certificates: Option<crate::net::tls::TlsCertificates>,
) {
    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("web page on {scheme}://{addr}/");
    }
    let shared = state.shared.clone();
    let app = Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/favicon.ico", get(page::icon))
        .route("/ws", get(upgrade))
        .with_state(state);
    listener::accept_loop(listener, app, shared, certificates).await;
}

/// `GET /ws`: the origin check and the client's address, then the WebSocket session, which takes
/// the connection's place in the limits with it.
async fn upgrade(
    State(state): State<WebState>,
    Extension(accepted): Extension<listener::Accepted>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = accepted.peer;
    if !origin_allowed(&headers, &state.origins) {
        tracing::info!(%peer, origin = ?headers.get(header::ORIGIN), "cross-origin WebSocket refused");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    let shared = &state.shared;
    let from_proxy = shared.trusted_proxies.contains(peer.ip());
    let addr = if from_proxy {
        let header = state.client_address_header;
        match forwarded_client(&headers, header, &shared.trusted_proxies) {
            Some(client) => SocketAddr::new(client, 0),
            // Present but unusable (an entry that is no address where the walk reaches it, or
            // not text): refused whatever `require_proxy_header` says, or a client could put
            // garbage in the header and be taken for the (exempt) proxy itself.
            None if headers.contains_key(header.name()) => {
                tracing::info!(proxy = %peer, header = header.name(), "request from a trusted proxy with an unusable client address header refused");
                return (
                    StatusCode::BAD_REQUEST,
                    format!("unusable {} header\n", header.name()),
                )
                    .into_response();
            }
            None if shared.require_proxy_header => {
                tracing::info!(proxy = %peer, header = header.name(), "request from a trusted proxy without a usable client address header refused");
                return (
                    StatusCode::BAD_REQUEST,
                    format!("missing {} header\n", header.name()),
                )
                    .into_response();
            }
            None => peer,
        }
    } else {
        peer
    };
    // A direct peer was counted when its connection was accepted; a proxy's client is counted
    // now, under its own address.
    let forwarded_count = if from_proxy {
        match shared.address_limits.admit(addr.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                tracing::info!(peer = %addr, %refusal, "connection refused");
                return (StatusCode::TOO_MANY_REQUESTS, format!("{refusal}\n")).into_response();
            }
        }
    } else {
        // A direct peer's connection holds its open place since accept; the session it becomes
        // is a new connection for the per-address window.
        if let Err(refusal) = shared.address_limits.count_new(addr.ip()) {
            tracing::info!(peer = %addr, %refusal, "connection refused");
            return (StatusCode::TOO_MANY_REQUESTS, format!("{refusal}\n")).into_response();
        }
        None
    };
    let Some(admission) = accepted.take_admission(forwarded_count) else {
        // A second upgrade on one connection: hyper hands a connection over at the first.
        return (
            StatusCode::CONFLICT,
            "this connection was upgraded already\n",
        )
            .into_response();
    };
    let max_frame = shared.config.max_line_bytes * 4 + 1024;
    // Small buffers: tungstenite's defaults (128 KiB each way) would make every idle browser tab
    // cost a quarter of a megabyte. Frames are short; a batch is flushed at once.
    ws.max_message_size(max_frame)
        .max_frame_size(max_frame)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let tasks = state.shared.tasks.clone();
            let id = state.shared.next_client_id();
            tasks.spawn(session::run(state, id, socket, addr, admission));
            std::future::ready(())
        })
}

/// The client's address as the trusted proxies in front of us saw it, from `header` alone.
///
/// Each proxy appends the address it took the request from, so the entries are read from the
/// right: the last is what the nearest proxy saw; while that is itself a trusted proxy (a chain
/// of them), the one before it is taken, and so on. The first entry that is not a trusted proxy
/// is the client. Entries further left came from the client and could say anything, so they are
/// never reached. An entry that is not an address (`unknown`, an obfuscated `_name`) ends the
/// walk with nothing; when every entry is a trusted proxy, the leftmost is the client.
fn forwarded_client(
    headers: &HeaderMap,
    header: ClientAddressHeader,
    trusted: &AddressList,
) -> Option<std::net::IpAddr> {
    // Several header lines are one list, in order. Split as bytes: an entry that is not text
    // (a client's, far left) must not make the proxies' entries on its right unreadable; one
    // the walk reaches ends it with nothing.
    let entries: Vec<&[u8]> = headers
        .get_all(header.name())
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .collect();
    let mut client = None;
    for entry in entries.into_iter().rev() {
        let entry = std::str::from_utf8(entry).ok()?;
        let node = match header {
            ClientAddressHeader::XForwardedFor => Some(entry.trim()),
            ClientAddressHeader::Forwarded => entry
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                .map(|(_, value)| value.trim().trim_matches('"')),
        };
        let ip = parse_node(node?)?;
        client = Some(ip);
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// An address as proxies write it: `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`.
fn parse_node(node: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// Whether the `Origin` of an upgrade may open a session: none (not a browser), the page's own
/// (same host), localhost, or one configured.
fn origin_allowed(headers: &HeaderMap, extra: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") {
        return false;
    }
    if rest == host || extra.iter().any(|o| o.trim_end_matches('/') == origin) {
        return true;
    }
    let origin_host = rest.rsplit_once(':').map_or(rest, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            rest
        }
    });
    matches!(origin_host, "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, origin.parse().unwrap());
        }
        h
    }

    fn forwarded(header: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for value in values {
            h.append(
                axum::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_entry_that_is_not_text_left_of_the_proxys_does_not_spoil_it() {
        let proxy = AddressList::new(&["127.0.0.1".into()]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff, 9.9.9.9").unwrap(),
        );
        assert_eq!(
            forwarded_client(&h, ClientAddressHeader::XForwardedFor, &proxy),
            Some("9.9.9.9".parse().unwrap())
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"9.9.9.9, \xff").unwrap(),
        );
        assert_eq!(
            forwarded_client(&h, ClientAddressHeader::XForwardedFor, &proxy),
            None
        );
    }

    #[test]
    fn forwarded_addresses_take_the_proxys_entry() {
        use ClientAddressHeader::{Forwarded, XForwardedFor};
        let proxy = AddressList::new(&["127.0.0.1".into()]);
        let client = |h: &HeaderMap, which| forwarded_client(h, which, &proxy);
        let ip = |text: &str| Some(text.parse::<std::net::IpAddr>().unwrap());
        let h = forwarded("x-forwarded-for", &["6.6.6.6, 203.0.113.7"]);
        assert_eq!(client(&h, XForwardedFor), ip("203.0.113.7"));
        // Several lines are one list: the last entry of the last line is the proxy's.
        let h = forwarded("x-forwarded-for", &["6.6.6.6, 203.0.113.7", "198.51.100.2"]);
        assert_eq!(client(&h, XForwardedFor), ip("198.51.100.2"));
        let h = forwarded(
            "forwarded",
            &["for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https"],
        );
        assert_eq!(client(&h, Forwarded), ip("2001:db8::1"));
        assert_eq!(
            client(&forwarded("forwarded", &["for=unknown"]), Forwarded),
            None
        );
        assert_eq!(client(&HeaderMap::new(), XForwardedFor), None);
        assert_eq!(client(&HeaderMap::new(), Forwarded), None);
    }

    /// Only the configured header counts: the other one is the client's own writing.
    #[test]
    fn only_the_configured_header_names_the_client() {
        use ClientAddressHeader::{Forwarded, XForwardedFor};
        let proxy = AddressList::new(&["127.0.0.1".into()]);
        let mut h = forwarded("x-forwarded-for", &["203.0.113.7"]);
        h.append("forwarded", "for=127.0.0.1".parse().unwrap());
        assert_eq!(
            forwarded_client(&h, XForwardedFor, &proxy),
            Some("203.0.113.7".parse().unwrap())
        );
        let mut h = forwarded("forwarded", &["for=203.0.113.7"]);
        h.append("x-forwarded-for", "127.0.0.2".parse().unwrap());
        assert_eq!(
            forwarded_client(&h, Forwarded, &proxy),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            forwarded_client(
                &forwarded("forwarded", &["for=1.2.3.4"]),
                XForwardedFor,
                &proxy
            ),
            None
        );
    }

    /// Behind a chain of trusted proxies, each one's entry is skipped from the right; the first
    /// untrusted entry is the client, and nothing left of it is read.
    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        use ClientAddressHeader::{Forwarded, XForwardedFor};
        let proxies = AddressList::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]);
        let h = forwarded(
            "x-forwarded-for",
            &["6.6.6.6, 203.0.113.7, 10.1.2.3", "10.9.9.9"],
        );
        assert_eq!(
            forwarded_client(&h, XForwardedFor, &proxies),
            Some("203.0.113.7".parse().unwrap())
        );
        let h = forwarded("forwarded", &["for=6.6.6.6, for=203.0.113.7, for=10.1.2.3"]);
        assert_eq!(
            forwarded_client(&h, Forwarded, &proxies),
            Some("203.0.113.7".parse().unwrap())
        );
        // Only proxies: the leftmost (the first proxy's own client) is all there is.
        let h = forwarded("x-forwarded-for", &["10.0.0.5, 10.1.2.3"]);
        assert_eq!(
            forwarded_client(&h, XForwardedFor, &proxies),
            Some("10.0.0.5".parse().unwrap())
        );
        // A client-written entry that is not an address, behind a trusted hop: nothing.
        let h = forwarded("x-forwarded-for", &["bogus, 10.1.2.3"]);
        assert_eq!(forwarded_client(&h, XForwardedFor, &proxies), None);
    }

    #[test]
    fn origins() {
        let extra = vec!["https://chat.example.org".to_owned()];
        assert!(origin_allowed(&headers(None, "x:1"), &extra));
        assert!(origin_allowed(&headers(Some("http://x:1"), "x:1"), &extra));
        assert!(origin_allowed(
            &headers(Some("http://localhost:3000"), "x:1"),
            &extra
        ));
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:9"), "x:1"),
            &extra
        ));
        assert!(origin_allowed(
            &headers(Some("https://chat.example.org"), "x:1"),
            &extra
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "x:1"),
            &extra
        ));
        assert!(!origin_allowed(
            &headers(Some("http://localhost.evil.example"), "x:1"),
            &extra
        ));
        assert!(!origin_allowed(&headers(Some("null"), "x:1"), &extra));
    }
}
