//! The load generator in a short smoke run against a real server: its JSON is well formed and
//! its counts agree with each other. No timing thresholds.

mod common;

#[path = "../examples/loadgen.rs"]
#[allow(dead_code, unreachable_pub)]
mod loadgen;

/// Half the clients on the web door and half on IRC, in two runs: every client, whatever its
/// door, counts every line in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_drives_the_web_and_irc_doors() {
    let (server, web, irc) =
        common::TestServer::start_with_doors(chatpipe::Server::new(common::test_config())).await;
    for (prefix, ws, irc) in [("w", Some(web), None), ("i", None, Some(irc))] {
        let options = loadgen::Options {
            addr: server.addr,
            clients: 6,
            senders: 4,
            rate: 20.0,
            seconds: 1.0,
            progress: false,
            prefix: prefix.to_owned(),
            ws,
            irc,
            ..loadgen::Options::default()
        };
        let report = loadgen::run(&options).await.unwrap();
        assert!(report.sent > 0);
        assert_eq!(report.delivered, report.sent * 6, "{}", report.json());
        assert_eq!((report.lost, report.reordered), (0, 0));
    }
    server.shutdown().await;
}

/// A few clients for a second against the real binary: nothing lost or reordered, the server's
/// CPU and memory are read from its own process, and the JSON carries every field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_smoke_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::binary::start(dir.path(), &["--listen", "127.0.0.1:0"]);
    let options = loadgen::Options {
        addr: server.addr,
        clients: 5,
        senders: 3,
        rate: 15.0,
        seconds: 1.0,
        pid: Some(server.child.id()),
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
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.exit_code(), Some(0));
}

/// `--help` describes every option with its default; unknown flags and bad values are errors
/// with exit code 2 (clap's usage error), not a silent default run or a panic.
#[test]
fn loadgen_options_are_checked() {
    use clap::Parser;
    let help = loadgen::Cli::try_parse_from(["loadgen", "--help"])
        .unwrap_err()
        .to_string();
    for option in [
        "--addr",
        "--clients",
        "--rate",
        "--seconds",
        "--idle",
        "--step",
        "--no-username-prompt",
        "--p99-ms",
    ] {
        assert!(help.contains(option), "{option} missing from {help}");
    }
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    for bad in [
        vec!["loadgen", "--rate=1000x"],
        vec!["loadgen", "--rat", "1000"],
        vec!["loadgen", "--clients", "-5"],
        vec!["loadgen", "--sources", "0"],
        vec!["loadgen", "--p99-ms", "10"],
    ] {
        let error = loadgen::Cli::try_parse_from(&bad).expect_err(&bad.join(" "));
        assert_eq!(error.exit_code(), 2, "{}: {error}", bad.join(" "));
    }
}

/// A server that is not there is an error naming the address.
#[tokio::test]
async fn loadgen_names_the_address_it_cannot_reach() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let options = loadgen::Options {
        addr,
        clients: 1,
        senders: 1,
        seconds: 0.1,
        progress: false,
        ..loadgen::Options::default()
    };
    let error = loadgen::run(&options).await.unwrap_err().to_string();
    assert!(error.contains(&addr.to_string()), "{error}");
}

/// A server of the seed's Go design's protocol, in miniature: no prompt, the first line is the
/// name, then `NAME has joined the chat` and every `NAME: text` go to everyone. Its tasks are
/// owned by the returned set and end when it is dropped.
async fn seed_protocol_server() -> (std::net::SocketAddr, tokio::task::JoinSet<()>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (room, _) = tokio::sync::broadcast::channel::<String>(4096);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let room = room.clone();
            connections.spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let Ok(Some(name)) = lines.next_line().await else {
                    return;
                };
                let mut heard = room.subscribe();
                let _ = room.send(format!("{name} has joined the chat\n"));
                loop {
                    tokio::select! {
                        line = lines.next_line() => {
                            let Ok(Some(line)) = line else { return };
                            let _ = room.send(format!("{name}: {line}\n"));
                        }
                        said = heard.recv() => {
                            let Ok(said) = said else { return };
                            if write.write_all(said.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, tasks)
}

/// Against a server of the same text protocol that prompts for nothing (the Go seed design that
/// `examples/versus.rs` compares with), `username_prompt: false` sends the name at once and
/// every line is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_drives_a_server_without_a_username_prompt() {
    let (addr, _server) = seed_protocol_server().await;
    let options = loadgen::Options {
        addr,
        clients: 4,
        senders: 2,
        rate: 10.0,
        seconds: 1.0,
        progress: false,
        username_prompt: false,
        ..loadgen::Options::default()
    };
    let report = tokio::time::timeout(std::time::Duration::from_secs(20), loadgen::run(&options))
        .await
        .expect("loadgen waited for a prompt that never comes")
        .unwrap();
    assert!(report.sent > 0);
    assert_eq!(report.delivered, report.sent * 4, "{}", report.json());
    assert_eq!((report.lost, report.reordered), (0, 0));
}
