//! The `chatpipe` binary: start-up errors, the `listening on` line, and signals.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

mod common;

use common::binary::start;

const BIN: &str = env!("CARGO_BIN_EXE_chatpipe");

/// Runs `chatpipe ARGS` to its end in a temporary directory of its own (with a `chatpipe.toml`
/// that puts every door on port 0); its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (code, _stdout, stderr) = common::binary::output(common::binary::command(dir.path(), args));
    (code, stderr)
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
        errors[0].contains(&format!("for the text door on {addr}")) && errors[0].contains("in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The web door's port in use: the error says it was the web door's.
#[test]
fn a_web_port_in_use_names_the_web_door() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("test.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[web]\nlisten = \"{addr}\"\n[irc]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"\"\n"
        ),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "chatpipe: cannot listen for the web door on {addr}: "
        )) && stderr.contains("in use"),
        "{stderr}"
    );
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

/// A line-oriented client of the real binary, with a timeout on every read.
struct Client(BufReader<std::net::TcpStream>);

impl Client {
    fn login(addr: std::net::SocketAddr, name: &str) -> Client {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Client(BufReader::new(stream));
        client.send(name);
        client.expect_contains(&format!("{name} has joined the chat"));
        client
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.0.get_mut(), "{line}").unwrap();
    }

    fn expect_contains(&mut self, needle: &str) {
        loop {
            let mut line = String::new();
            let n = self.0.read_line(&mut line).expect("a line in time");
            assert!(n > 0, "end of stream while waiting for {needle:?}");
            if line.contains(needle) {
                return;
            }
        }
    }
}

/// The server logs `listening on ADDR`, and SIGTERM makes it exit 0.
#[test]
fn logs_listening_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_ne!(server.addr.port(), 0);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.exit_code(), Some(0));
}

/// SIGHUP with no filters directory is logged and changes nothing: the server keeps serving.
#[test]
fn sighup_without_filters_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0"]);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.expect_log("SIGHUP: no filters directory, so nothing to reload");
    let mut alice = Client::login(server.addr, "alice");
    alice.send("still here");
    alice.expect_contains("alice: still here");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    alice.expect_contains("SERVER: Chat server is shutting down");
    assert_eq!(server.exit_code(), Some(0));
}

/// A closed log pipe (`2>&1 | tee`, and tee dies first) does not stop the server or its
/// shutdown: clients are told, and the process exits 0.
#[test]
fn a_closed_log_pipe_does_not_stop_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0"]);
    let mut alice = Client::login(server.addr, "alice");
    let _ = server.reader_stop.send(());
    // One more log line wakes the reader thread, which then stops and closes the pipe.
    let _bob = Client::login(server.addr, "bob");
    alice.expect_contains("bob has joined the chat");
    let _more = Client::login(server.addr, "carol");
    server.signal(nix::sys::signal::Signal::SIGINT);
    alice.expect_contains("SERVER: Chat server is shutting down");
    assert_eq!(server.exit_code(), Some(0));
}

/// `--listen` works before `serve` as after it; elsewhere it is refused; a bad value names
/// `--listen`.
#[test]
fn serve_options_before_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0", "serve"]);
    assert_ne!(
        server.addr.port(),
        8080,
        "--listen before serve was ignored"
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.exit_code(), Some(0));

    let (code, stderr) = run_to_exit(&["--listen", "127.0.0.1:0", "test-filters"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("options of `serve`"), "{stderr}");

    let (code, stderr) = run_to_exit(&["serve", "--listen", "nowhere"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--listen: `nowhere`"), "{stderr}");
}

/// The log names the filters loaded at start-up, and every filter decision — masks included,
/// at `info` — with the client's name and room.
#[test]
fn filter_decisions_are_logged_with_name_and_room() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("filters")).unwrap();
    std::fs::write(
        dir.path().join("filters/20-mask.toml"),
        "action = \"mask\"\nwords = [\"darn\"]\n",
    )
    .unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert!(
        server
            .start_up
            .iter()
            .any(|l| l.contains("filters loaded") && l.contains("20-mask")),
        "{:#?}",
        server.start_up
    );
    let mut alice = Client::login(server.addr, "alice");
    alice.send("darn it");
    alice.expect_contains("alice: **** it");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = server
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("a filter decision log line");
        if line.contains("filter decision") {
            assert!(line.contains("INFO"), "{line}");
            assert!(
                line.contains("name=alice") && line.contains("room=lobby"),
                "{line}"
            );
            assert!(
                line.contains("filter=\"20-mask\"") || line.contains("filter=20-mask"),
                "{line}"
            );
            assert!(line.contains("rewrite"), "{line}");
            break;
        }
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.exit_code(), Some(0));
}

/// `hash-password` at a terminal asks twice without echoing and prints a hash; two different
/// answers hash nothing. The terminal is a pseudo-terminal from `script` (util-linux); the test
/// is listed as `ignored` where there is none.
#[test]
#[cfg_attr(not(has_script), ignore = "needs script: apt-get install bsdutils")]
fn hash_password_at_a_terminal_does_not_echo() {
    let dir = tempfile::tempdir().unwrap();
    let run = |input: &str| {
        // Killed when dropped: `script` closes the terminal, which hangs up its command.
        let mut child = common::process::Killed::new(
            Command::new("/usr/bin/script")
                .args(["-qec", &format!("{BIN} hash-password"), "/dev/null"])
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Each answer goes in once its prompt is on the terminal: typed before the prompt, the
        // terminal would still echo it.
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u8>();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).is_ok_and(|n| n == 1) {
                if tx.send(byte[0]).is_err() {
                    break;
                }
            }
        });
        let mut out = Vec::new();
        let wait_for = |needle: &str, out: &mut Vec<u8>| {
            while !String::from_utf8_lossy(out).contains(needle) {
                match rx.recv_timeout(Duration::from_secs(20)) {
                    Ok(b) => out.push(b),
                    Err(_) => panic!("no {needle:?} in {}", String::from_utf8_lossy(out)),
                }
            }
        };
        let mut stdin = child.stdin.take().unwrap();
        let script = child.id();
        for (prompt, answer) in ["Password:", "Again, to confirm:"]
            .into_iter()
            .zip(input.lines())
        {
            use std::io::Write;
            wait_for(prompt, &mut out);
            // The prompt is printed a moment before echo goes off (that is how rpassword does
            // it): wait for the terminal to stop echoing, as a person's typing always does.
            wait_for_echo_off(script);
            writeln!(stdin, "{answer}").unwrap();
        }
        drop(stdin);
        let status = child.wait().unwrap();
        out.extend(rx.iter());
        (status.code(), String::from_utf8_lossy(&out).into_owned())
    };
    let (code, out) = run("s3cret-pass\ns3cret-pass\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Password:") && out.contains("Again, to confirm:"),
        "{out}"
    );
    assert!(out.contains("$argon2id$"), "{out}");
    assert!(
        !out.contains("s3cret-pass"),
        "the password was echoed: {out}"
    );
    let (code, out) = run("one-password\nanother-one\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("the two passwords differ"), "{out}");
}

/// Waits until the terminal of `script`'s child (the command it runs) has echo turned off.
fn wait_for_echo_off(script: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tty = std::fs::read_to_string(format!("/proc/{script}/task/{script}/children"))
            .ok()
            .and_then(|children| children.split_whitespace().next().map(str::to_owned))
            .and_then(|child| std::fs::read_link(format!("/proc/{child}/fd/0")).ok());
        if let Some(tty) = tty {
            let settings = Command::new("stty").arg("-F").arg(&tty).arg("-a").output();
            if settings.is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|flag| flag == "-echo")
            }) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never stopped echoing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
