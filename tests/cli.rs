//! The `chatpipe` binary: start-up errors, the `listening on` line, and signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chatpipe");

fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port in use is a one-line error and exit code 1.
#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_to_exit(&["--listen", &addr]);
    assert_eq!(code, Some(1));
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("chatpipe:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&addr) && errors[0].contains("in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A listen address that does not parse is a clear error.
#[test]
fn bad_address_is_a_clear_error() {
    let (code, stderr) = run_to_exit(&["--listen", "localhost:http"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("localhost:http"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An unknown key in the config file stops start-up with file, line and column.
#[test]
fn bad_config_names_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("chatpipe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nmax_line_bytes = 100\nmax_lines = 3\n").unwrap();
    let (code, stderr) = run_to_exit(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bad.toml:3:1:"), "{stderr}");
    assert!(stderr.contains("max_lines"), "{stderr}");
}

/// The server logs `listening on ADDR`, and SIGTERM makes it exit 0.
#[test]
fn logs_listening_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chatpipe.toml");
    // An ephemeral admin port, so the test never collides with a server already on 9090.
    std::fs::write(&config, "[admin]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .current_dir(std::env::temp_dir())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let listening = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no `listening on` line");
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..].trim().to_owned();
        }
    };
    let addr: std::net::SocketAddr = listening.parse().unwrap();
    assert_ne!(addr.port(), 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
