//! The load generator in a short smoke run against a real server: its JSON is well formed and
//! its counts agree with each other. No timing thresholds.

mod common;

#[path = "../examples/loadgen.rs"]
#[allow(dead_code, unreachable_pub)]
mod loadgen;

use common::{TestServer, test_config};

/// A few clients for a second: nothing lost or reordered, and the JSON carries every field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_smoke_run() {
    let server = TestServer::with_config(test_config()).await;
    let options = loadgen::Options {
        addr: server.addr,
        clients: 5,
        senders: 3,
        rate: 15.0,
        seconds: 1.0,
        pid: Some(std::process::id()),
        progress: false,
        ..loadgen::Options::default()
    };
    let report = loadgen::run(&options).await.unwrap();
    assert!(report.sent > 0);
    assert_eq!(report.expected, report.sent * 5);
    assert_eq!(report.delivered, report.expected);
    assert_eq!((report.lost, report.reordered), (0, 0));
    assert!(report.server_cpu_seconds.is_some());
    let json = report.json();
    for field in [
        "\"sent\":",
        "\"expected\":",
        "\"delivered\":",
        "\"lost\":0",
        "\"reordered\":0",
        "\"deliveries_per_second\":",
        "\"p50\":",
        "\"p99\":",
        "\"p999\":",
        "\"max\":",
        "\"server_cpu_seconds\":",
        "\"server_peak_rss_kib\":",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
    assert!(json.starts_with('{') && json.ends_with('}'));

    let idle = loadgen::Options {
        prefix: "idle".into(),
        seconds: 0.1,
        ..options
    };
    let json = loadgen::idle(&idle).await.unwrap();
    assert!(json.contains("\"idle_clients\":5"), "{json}");
    assert!(json.contains("\"server_kib_per_client\":"), "{json}");
    server.shutdown().await;
}
