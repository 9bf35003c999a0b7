//! The admin endpoints over real HTTP, with metric values checked against what the test did.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chatpipe::{EventStream, Server, Stage, StageContext};
use common::{TestServer, test_config};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A plain HTTP/1.1 GET; returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(common::WAIT, stream.read_to_string(&mut response))
        .await
        .expect("an HTTP response in time")
        .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the series `name` (with its labels, as exposed) in a metrics text.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Starts `server` with an admin listener on an ephemeral port.
async fn start_with_admin(server: Server) -> (TestServer, SocketAddr) {
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    (
        TestServer::start(server.admin_listener(admin)).await,
        admin_addr,
    )
}

/// /healthz answers JSON with the live counts.
#[tokio::test]
async fn healthz_reports_connections_and_rooms() {
    let (server, admin) = start_with_admin(Server::new(test_config())).await;
    let _a = server.login("a").await;
    let _b = server.login("b").await;
    let mut c = server.login("c").await;
    c.send("/join side").await;
    c.expect_contains("You are now in side").await;
    let (status, body) = get(admin, "/healthz").await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with(r#"{"status":"ok","uptime_seconds":"#),
        "{body}"
    );
    assert!(body.ends_with(r#""connections":3,"rooms":2}"#), "{body}");
    server.shutdown().await;
}

/// Metric values follow what clients did.
#[tokio::test]
async fn metrics_count_what_happened() {
    let dir = common::dir_with(&[("mask.toml", "action = \"mask\"\nwords = [\"darn\"]\n")]);
    let mut config = test_config();
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 2;
    let server = Server::new(config).filters_dir(dir.path()).unwrap();
    let (server, admin) = start_with_admin(server).await;
    let mut a = server.login("a").await;
    let _b = server.login("b").await;
    let mut c = server.login("c").await;
    a.expect("b has joined the chat").await;
    a.expect("c has joined the chat").await;

    let (_, text) = get(admin, "/metrics").await;
    assert_eq!(
        value(&text, "chatpipe_connected_clients"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(value(&text, "chatpipe_rooms"), Some(1.0), "{text}");

    a.send("darn").await;
    a.expect("a: ****").await;
    a.send("two").await;
    a.expect("a: two").await;
    a.send("three is over the limit").await;
    a.expect("SERVER: Rate limit exceeded. Please slow down.")
        .await;
    c.send("/quit").await;
    a.expect("c has left the chat").await;

    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        value(&text, "chatpipe_connected_clients"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "chatpipe_lines_received_total"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"chatpipe_lines_dropped_total{reason="rate_limit"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "chatpipe_rate_limit_hits_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"chatpipe_filter_decisions_total{filter="mask",action="rewrite"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"chatpipe_disconnects_total{reason="quit"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&text, "chatpipe_lines_delivered_total").unwrap_or(0.0) >= 4.0,
        "{text}"
    );
    assert!(
        value(&text, "chatpipe_pipeline_latency_seconds_count").unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE chatpipe_fanout_latency_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("chatpipe_pipeline_queue_depth"), "{text}");
    server.shutdown().await;
}

/// A stage that holds the pipeline open after its input ends until released, so a test can
/// look at the server in the middle of a graceful shutdown.
struct HoldOpen(oneshot::Receiver<()>);

impl Stage for HoldOpen {
    fn name(&self) -> &str {
        "hold_open"
    }
    fn apply(self: Box<Self>, input: EventStream, _: &StageContext) -> EventStream {
        let release = self.0;
        let tail = futures::stream::once(async move {
            let _ = release.await;
        })
        .filter_map(|()| std::future::ready(None));
        Box::pin(input.chain(tail))
    }
}

/// /readyz is 200 while serving and 503 once shutdown has begun, while the drain is still going.
#[tokio::test]
async fn readyz_turns_503_during_shutdown() {
    let (release, held) = oneshot::channel();
    let server = Server::new(test_config()).pipeline(|p| p.stage(HoldOpen(held)));
    let (mut server, admin) = start_with_admin(server).await;
    let _client = server.login("a").await;
    assert_eq!(get(admin, "/readyz").await.0, 200);

    server.trigger_shutdown();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (status, _) = get(admin, "/readyz").await;
        if status == 503 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still healthy while draining.
    assert_eq!(get(admin, "/healthz").await.0, 200);
    release.send(()).unwrap();
    server.shutdown().await;
}
