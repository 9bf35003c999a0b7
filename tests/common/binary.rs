//! The real `chatpipe` binary, started by a test in a directory of its own.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chatpipe");

/// A running `chatpipe` binary whose log lines (stdout and stderr, one pipe, as with `2>&1 | tee`)
/// arrive on `lines`.
pub struct Running {
    pub child: std::process::Child,
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Where it listens, from its `listening on` line.
    pub addr: std::net::SocketAddr,
    /// Dropping the reader's end closes the log pipe.
    pub reader_stop: std::sync::mpsc::Sender<()>,
    /// The lines logged before `listening on`.
    pub start_up: Vec<String>,
}

/// Starts the binary in `dir` with `args` (plus an ephemeral admin port) and waits for its
/// `listening on` line.
pub fn start(dir: &std::path::Path, args: &[&str]) -> Running {
    start_with(dir, "", args)
}

/// Like [`start`], with `config` (TOML) added to the `chatpipe.toml` it writes in `dir`.
pub fn start_with(dir: &std::path::Path, config: &str, args: &[&str]) -> Running {
    write_config(dir, config);
    // One pipe for stdout and stderr, as with `2>&1 | tee`.
    let (reader, writer) = std::io::pipe().unwrap();
    let child = command(dir, args)
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let (reader_stop, stop) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() || stop.try_recv().is_ok() {
                break;
            }
        }
        // The reader (and so the pipe's only reading end) is dropped here.
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut start_up = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no `listening on` line after {start_up:#?}"));
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..].trim().parse().unwrap();
        }
        start_up.push(line);
    };
    Running {
        child,
        lines,
        addr,
        reader_stop,
        start_up,
    }
}

/// Runs the binary in `dir` with `config` and `args` until it exits: for start-up failures and
/// one-shot subcommands. Its exit code and everything it printed (stdout, then stderr).
pub fn run_to_exit_with(
    dir: &std::path::Path,
    config: &str,
    args: &[&str],
) -> (Option<i32>, String) {
    write_config(dir, config);
    let output = command(dir, args).output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

fn write_config(dir: &std::path::Path, config: &str) {
    // Ephemeral admin and web ports, so tests never collide with each other or a server
    // already on 9090 or 8081.
    std::fs::write(
        dir.join("chatpipe.toml"),
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n[web]\nlisten = \"127.0.0.1:0\"\n[irc]\nlisten = \"127.0.0.1:0\"\n{config}"),
    )
    .unwrap();
}

fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    command
}

impl Running {
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for a log line containing `needle`.
    pub fn expect_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Waits for the process to exit; its exit code.
    pub fn exit_code(mut self) -> Option<i32> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(self.child.wait());
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("server did not exit")
            .unwrap()
            .code()
    }
}
