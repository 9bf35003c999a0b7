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
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

pub use render::{JsonRender, to_json};

use crate::hub::DoorId;
use crate::session::{Admission, SessionShared};

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
    let shared = &state.shared;
    let tls = certificates.map(|certificates| listener::TlsAccept {
        certificates,
        handshake_timeout: shared.config.handshake_timeout,
        stop: shared.stop_reading.clone(),
        tasks: shared.tasks.clone(),
        metrics: shared.metrics.clone(),
        limits: shared.address_limits.clone(),
        trusted_proxies: shared.trusted_proxies.clone(),
    });
    let listener = match listener::WebListener::new(listener, tls) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "web listener failed");
            return;
        }
    };
    let stop = state.shared.stop_reading.clone();
    let app = Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/favicon.ico", get(page::icon))
        .route("/ws", get(upgrade))
        .with_state(state);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    // `tap_io` gives the listener axum's peer-address plumbing (`ConnectInfo<SocketAddr>`).
    let listener = listener.tap_io(|_| ());
    if let Err(error) = axum::serve(listener, service)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(%error, "web listener failed");
    }
}

/// `GET /ws`: admission and the origin check, then the WebSocket session.
async fn upgrade(
    State(state): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.origins) {
        tracing::info!(peer = %addr, origin = ?headers.get(header::ORIGIN), "cross-origin WebSocket refused");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    let shared = &state.shared;
    let addr = if shared.trusted_proxies.contains(addr.ip()) {
        match forwarded_client(&headers) {
            Some(client) => SocketAddr::new(client, 0),
            None if shared.require_proxy_header => {
                tracing::info!(proxy = %addr, "request from a trusted proxy without X-Forwarded-For or Forwarded refused");
                return (StatusCode::BAD_REQUEST, "missing X-Forwarded-For\n").into_response();
            }
            None => addr,
        }
    } else {
        addr
    };
    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the server is full\n").into_response();
    };
    let address = match shared.address_limits.admit(addr.ip()) {
        Ok(guard) => guard,
        Err(refusal) => {
            tracing::info!(peer = %addr, %refusal, "connection refused");
            return (StatusCode::TOO_MANY_REQUESTS, format!("{refusal}\n")).into_response();
        }
    };
    let admission = Admission { permit, address };
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

/// The client's address as the trusted proxy in front of us saw it: the last entry of the last
/// `Forwarded` (`for=`) or `X-Forwarded-For` header. Only the last entry is the proxy's own; the
/// ones before it came from the client and could say anything.
fn forwarded_client(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let last_entry = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .map(str::trim)
    };
    if let Some(forwarded) = last_entry("forwarded") {
        let node = forwarded
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| key.eq_ignore_ascii_case("for"))
            .map(|(_, value)| value.trim_matches('"'))?;
        return parse_node(node);
    }
    parse_node(last_entry("x-forwarded-for")?)
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

    #[test]
    fn forwarded_addresses_take_the_proxys_entry() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("203.0.113.7".parse().unwrap()));
        h.append("x-forwarded-for", "198.51.100.2".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("198.51.100.2".parse().unwrap()));
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https"
                .parse()
                .unwrap(),
        );
        assert_eq!(forwarded_client(&h), Some("2001:db8::1".parse().unwrap()));
        h.insert("forwarded", "for=unknown".parse().unwrap());
        assert_eq!(forwarded_client(&h), None);
        assert_eq!(forwarded_client(&HeaderMap::new()), None);
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
