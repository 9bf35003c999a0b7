//! Behind a proxy: PROXY protocol v1 and v2 headers from a trusted and an untrusted address on
//! the text and IRC doors, `X-Forwarded-For` or `Forwarded` (one, as configured) on the web door,
//! and per-address limits and an address ban applied to the forwarded address.

mod common;

use std::net::SocketAddr;

use chatpipe::{Config, Server};
use common::irc::IrcClient;
use common::{TestClient, TestServer, config_with_moderator};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Trusts 127.0.0.1 as a proxy and lets one connection in per (forwarded) address.
fn behind_proxy(mut config: Config) -> Config {
    config.admission.trusted_proxies = vec!["127.0.0.1".into()];
    config.admission.per_address_connections = 1;
    config
}

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 8080\r\n").into_bytes()
}

fn v2(client: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&client);
    header.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x1a, 0x0b]);
    header
}

/// Connects to the text door, sends `header`, and expects the greeting.
async fn text_via_proxy(addr: SocketAddr, header: &[u8]) -> TestClient {
    let mut client = TestClient::connect(addr).await;
    client.send_raw(header).await;
    client
}

/// PROXY v1 on the text door: the per-address limit and an address ban apply to the forwarded
/// address, not to the proxy's.
#[tokio::test]
async fn v1_headers_give_the_text_door_the_clients_address() {
    let server = TestServer::with_config(behind_proxy(config_with_moderator())).await;
    // The moderator connects directly: a trusted address without a header is itself.
    let mut moderator = common::login_with_password_at(server.addr, "mod", "modpass12").await;

    let mut alice = text_via_proxy(server.addr, &v1("203.0.113.7")).await;
    alice.expect_contains("Please enter your username").await;
    alice.send("alice").await;
    alice.expect_joined("alice").await;
    // A second connection from the same client address is over its limit of one…
    let mut again = text_via_proxy(server.addr, &v1("203.0.113.7")).await;
    let refused = again.expect_contains("SERVER:").await;
    assert!(
        refused.contains("Too many connections from your address"),
        "{refused}"
    );
    again.expect_eof().await;
    // …while another client behind the same proxy gets in.
    let mut other = text_via_proxy(server.addr, &v1("203.0.113.8")).await;
    other.expect_contains("Please enter your username").await;

    // A ban by the moderator covers the forwarded address.
    moderator.send("/ban alice").await;
    alice.expect_contains("You were banned").await;
    alice.expect_eof().await;
    let mut evading = text_via_proxy(server.addr, &v1("203.0.113.7")).await;
    evading.expect_contains("Please enter your username").await;
    evading.send("not-alice").await;
    evading.expect_contains("banned").await;
    server.shutdown().await;
}

/// PROXY v2 (binary) on the IRC door, the same way.
#[tokio::test]
async fn v2_headers_give_the_irc_door_the_clients_address() {
    let (server, irc) =
        TestServer::start_with_irc(Server::new(behind_proxy(common::test_config()))).await;
    let mut alice = IrcClient::connect(irc).await;
    alice.send_raw(&v2([198, 51, 100, 4])).await;
    alice.send("NICK alice").await;
    alice.send("USER alice 0 * :a").await;
    alice.expect_welcome("alice").await;
    let mut again = IrcClient::connect(irc).await;
    again.send_raw(&v2([198, 51, 100, 4])).await;
    let refused = again.expect_contains("ERROR :Closing link:").await;
    assert!(
        refused.contains("Too many connections from your address"),
        "{refused}"
    );
    let mut other = IrcClient::connect(irc).await;
    other.send_raw(&v2([198, 51, 100, 5])).await;
    other.send("NICK bob").await;
    other.send("USER bob 0 * :b").await;
    other.expect_welcome("bob").await;
    server.shutdown().await;
}

/// A PROXY header from an address that is not a trusted proxy closes the connection (a client
/// cannot claim to be someone else); so does a malformed header from a trusted one, and a
/// trusted proxy's connection without a header when one is required.
#[tokio::test]
async fn untrusted_malformed_and_missing_headers_close_the_connection() {
    let mut config = common::test_config();
    config.admission.trusted_proxies = vec!["10.1.2.3".into()];
    let (server, irc) = TestServer::start_with_irc(Server::new(config)).await;
    let mut forged = text_via_proxy(server.addr, &v1("203.0.113.7")).await;
    forged.send("mallory").await;
    let mut lines = Vec::new();
    while let Some(line) = forged.next_line().await {
        lines.push(line);
    }
    assert!(!lines.iter().any(|l| l.contains("joined")), "{lines:?}");
    let mut forged = IrcClient::connect(irc).await;
    forged.send_raw(&v2([198, 51, 100, 4])).await;
    forged.send("NICK mallory").await;
    forged.send("USER m 0 * :m").await;
    while let Some(line) = forged.next_line().await {
        assert!(!line.contains(" 001 "), "{line}");
    }
    server.shutdown().await;

    let mut config = behind_proxy(common::test_config());
    config.admission.require_proxy_header = true;
    let (server, irc) = TestServer::start_with_irc(Server::new(config)).await;
    let mut malformed = TestClient::connect(server.addr).await;
    malformed.send_raw(b"PROXY TCP4 not-an-address\r\n").await;
    malformed.expect_eof().await;
    let mut missing = IrcClient::connect(irc).await;
    missing.send("NICK direct").await;
    missing.send("USER d 0 * :d").await;
    assert_eq!(missing.next_line().await, None);
    // With a header, the same door serves.
    let mut proxied = IrcClient::connect(irc).await;
    proxied.send_raw(&v1("203.0.113.9")).await;
    proxied.send("NICK proxied").await;
    proxied.send("USER p 0 * :p").await;
    proxied.expect_welcome("proxied").await;
    server.shutdown().await;
}

/// Opens `/ws` with `headers` (name, value) added: the HTTP status of the upgrade.
async fn ws_status(web: SocketAddr, headers: &[(&'static str, &str)]) -> u16 {
    let mut request = format!("ws://{web}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            // Keep the session open for the rest of the test.
            std::mem::forget(socket);
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("{error}"),
    }
}

/// `X-Forwarded-For` from a trusted proxy: the per-address limit applies to the proxy's entry
/// (the last), not to what the client wrote before it, nor to a `Forwarded` header the client
/// wrote itself (the README's nginx passes it through untouched); without the header, when one
/// is required, the upgrade is refused.
#[tokio::test]
async fn x_forwarded_for_on_the_web_door() {
    let mut config = behind_proxy(common::test_config());
    config.admission.require_proxy_header = true;
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let xff = |value| [("x-forwarded-for", value)];
    assert_eq!(ws_status(web, &xff("203.0.113.20")).await, 101);
    assert_eq!(ws_status(web, &xff("203.0.113.20")).await, 429);
    // A client cannot get round the limit by writing its own entry first…
    assert_eq!(ws_status(web, &xff("1.2.3.4, 203.0.113.20")).await, 429);
    // …nor by writing a `Forwarded` header, which is not the configured one.
    for forged in ["for=198.51.100.1", "for=198.51.100.2", "for=127.0.0.1"] {
        let headers = [("forwarded", forged), ("x-forwarded-for", "203.0.113.20")];
        assert_eq!(ws_status(web, &headers).await, 429, "{forged}");
    }
    assert_eq!(
        ws_status(web, &xff("203.0.113.20, 203.0.113.21")).await,
        101
    );
    // `Forwarded` alone is no client address here.
    assert_eq!(
        ws_status(web, &[("forwarded", "for=203.0.113.22")]).await,
        400
    );
    assert_eq!(ws_status(web, &[]).await, 400);
    server.shutdown().await;
}

/// With `[web] client_address_header = "forwarded"`, the other way round: `Forwarded` names the
/// client and a client-written `X-Forwarded-For` is ignored, whatever it says.
#[tokio::test]
async fn forwarded_when_configured_and_x_forwarded_for_ignored() {
    let mut config = behind_proxy(common::test_config());
    config.admission.require_proxy_header = true;
    config.web.client_address_header = chatpipe::config::ClientAddressHeader::Forwarded;
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let both = |xff| [("x-forwarded-for", xff), ("forwarded", "for=203.0.113.30")];
    assert_eq!(ws_status(web, &both("198.51.100.1")).await, 101);
    assert_eq!(ws_status(web, &both("198.51.100.2")).await, 429);
    assert_eq!(ws_status(web, &both("203.0.113.31")).await, 429);
    assert_eq!(
        ws_status(
            web,
            &[("forwarded", "for=6.6.6.6, for=\"203.0.113.31:4711\"")]
        )
        .await,
        101
    );
    assert_eq!(
        ws_status(web, &[("x-forwarded-for", "203.0.113.32")]).await,
        400
    );
    server.shutdown().await;
}

/// Behind two trusted proxies, the first one's entry (the client) is counted: the nearer
/// proxy's entry is skipped, and what the client wrote further left is not read.
#[tokio::test]
async fn a_chain_of_trusted_proxies_on_the_web_door() {
    let mut config = behind_proxy(common::test_config());
    config.admission.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let xff = |value| [("x-forwarded-for", value)];
    assert_eq!(ws_status(web, &xff("203.0.113.40, 10.0.0.7")).await, 101);
    assert_eq!(
        ws_status(web, &xff("6.6.6.6, 203.0.113.40, 10.0.0.8")).await,
        429
    );
    assert_eq!(ws_status(web, &xff("203.0.113.41, 10.0.0.7")).await, 101);
    server.shutdown().await;
}

/// A header from a trusted proxy that is there but unusable where the walk from the right reaches
/// it (no address, or not comma-separated) is refused even when the header is not required: it
/// used to be read as "no header", making the client the proxy itself (exempt by default, so past
/// address bans and limits). An entry that is not even text, left of the proxy's own, is never
/// reached and does not spoil it.
#[tokio::test]
async fn an_unusable_forwarded_header_is_refused_not_taken_for_the_proxy() {
    let mut config = behind_proxy(common::test_config());
    config.admission.require_proxy_header = false;
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    for unusable in ["9.9.9.9 1.2.3.4", "unknown", "203.0.113.5, _hidden"] {
        assert_eq!(
            ws_status(web, &[("x-forwarded-for", unusable)]).await,
            400,
            "{unusable}"
        );
    }
    // Without the header at all, the proxy's own address is used (not required here).
    assert_eq!(ws_status(web, &[]).await, 101);
    server.shutdown().await;
}
