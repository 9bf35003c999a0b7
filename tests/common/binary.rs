//! The real `chatpipe` binary, started by a test in a temporary directory of its own.
//!
//! Every run goes through [`command`], which enforces what a test server may touch: its working
//! directory is a temporary directory (never the repository, so never the user's `chatpipe.toml`
//! or `chatpipe.db`), and its configuration puts every door (text, TLS, web, IRC, admin) on
//! port 0 unless the test turned the door off, whatever the test's configuration omits. A server
//! is killed and waited for when its [`Running`] is dropped, pass or fail.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::Killed;

const BIN: &str = env!("CARGO_BIN_EXE_chatpipe");

/// A running `chatpipe` binary whose log lines (stdout and stderr, one pipe, as with `2>&1 | tee`)
/// arrive on `lines`.
pub struct Running {
    /// The process; killed and waited for when dropped.
    pub child: Killed,
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Where it listens, from its `listening on` line.
    pub addr: std::net::SocketAddr,
    /// Dropping the reader's end closes the log pipe.
    pub reader_stop: std::sync::mpsc::Sender<()>,
    /// The lines logged before `listening on`.
    pub start_up: Vec<String>,
}

/// Starts the binary in `dir` with `args` and waits for its `listening on` line.
pub fn start(dir: &Path, args: &[&str]) -> Running {
    start_with(dir, "", args)
}

/// Like [`start`], with `config` (TOML) in the `chatpipe.toml` it writes in `dir`, completed with
/// port 0 for every door it does not set.
pub fn start_with(dir: &Path, config: &str, args: &[&str]) -> Running {
    write_config(dir, config);
    // One pipe for stdout and stderr, as with `2>&1 | tee`.
    let (reader, writer) = std::io::pipe().unwrap();
    let child = Killed::new(
        command(dir, args)
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .spawn()
            .unwrap(),
    );
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
    // A panic here drops `child`, which kills the process.
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
/// one-shot subcommands. Its exit code and everything it printed (stdout, then stderr). A run
/// that does not end within 20 s is killed and fails the test.
pub fn run_to_exit_with(dir: &Path, config: &str, args: &[&str]) -> (Option<i32>, String) {
    write_config(dir, config);
    let (code, stdout, stderr) = output(command(dir, args));
    (code, stdout + &stderr)
}

/// Runs `command` (from [`command`]) to its end with no input; its exit code, stdout and
/// stderr. Killed, failing the test, if it runs longer than 20 s: a server that should have
/// stopped at start-up must not be left behind.
pub fn output(mut command: Command) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = Killed::new(
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read both pipes on threads, so a full pipe never blocks the child.
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let code = wait_for_exit(&mut child, Duration::from_secs(20));
    (code, stdout.join().unwrap(), stderr.join().unwrap())
}

/// Waits up to `limit` for `child` to exit; its exit code. Panics (and the caller's guard kills
/// it) when it does not.
fn wait_for_exit(child: &mut Killed, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "chatpipe (pid {}) did not exit within {limit:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The doors a test server must never open on a real port: TOML table, key.
const DOORS: &[(&str, &str)] = &[
    ("server", "listen"),
    ("server", "listen_tls"),
    ("web", "listen"),
    ("irc", "listen"),
    ("irc", "listen_tls"),
    ("admin", "listen"),
];

/// The doors that are on by default, so port 0 is filled in when the configuration omits them
/// (the TLS doors are off unless set).
const ON_BY_DEFAULT: &[(&str, &str)] = &[
    ("server", "listen"),
    ("web", "listen"),
    ("irc", "listen"),
    ("admin", "listen"),
];

/// `config` with `127.0.0.1:0` for each door it leaves at its default, after checking the doors
/// it sets are off (`""`) or on port 0. Text that is not TOML is kept as it is (a test of a bad
/// configuration: the server stops before it opens a door).
pub fn with_ephemeral_doors(config: &str) -> String {
    let Ok(mut table) = config.parse::<toml::Table>() else {
        return config.to_owned();
    };
    for (section, key) in DOORS {
        let set = table
            .get(*section)
            .and_then(|s| s.get(*key))
            .and_then(|v| v.as_str());
        if let Some(addr) = set {
            assert!(
                addr.is_empty() || addr.ends_with(":0"),
                "a test server's [{section}] {key} must be \"\" or port 0, not {addr:?}"
            );
        } else if ON_BY_DEFAULT.contains(&(*section, *key)) {
            let toml::Value::Table(section) = table
                .entry((*section).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            else {
                return config.to_owned();
            };
            section.insert((*key).to_owned(), "127.0.0.1:0".into());
        }
    }
    if let Some(path) = table
        .get("storage")
        .and_then(|s| s.get("path"))
        .and_then(|v| v.as_str())
    {
        // Relative paths are inside the server's temporary directory.
        if Path::new(path).is_absolute() {
            assert_temporary(Path::new(path).parent().unwrap_or(Path::new("/")));
        }
    }
    table.to_string()
}

fn write_config(dir: &Path, config: &str) {
    assert_temporary(dir);
    std::fs::write(dir.join("chatpipe.toml"), with_ephemeral_doors(config)).unwrap();
}

/// Fails unless `dir` is inside the system's temporary directory, where `tempfile` makes them.
fn assert_temporary(dir: &Path) {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
    assert!(
        canonical(dir).starts_with(canonical(&std::env::temp_dir())),
        "a test runs chatpipe in a temporary directory, not {}",
        dir.display()
    );
}

/// The binary with `args`, in `dir` (which must be a temporary directory), with plain logs at
/// `info`. Without a configuration file it gets one with every door on port 0; a configuration
/// the server would accept (`--config FILE`, or a `chatpipe.toml` the test wrote) must put every
/// door it opens on port 0, or the test fails here.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    assert_temporary(dir);
    let config_file = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|at| args.get(at + 1))
        .map(|file| dir.join(file));
    let config_file = config_file.unwrap_or_else(|| dir.join("chatpipe.toml"));
    if !config_file.exists() {
        write_config(dir, "");
    }
    assert_temporary(config_file.parent().unwrap_or(dir));
    // A configuration it refuses opens no door; one it accepts must open none on a real port.
    if let Ok(config) = chatpipe::Config::from_file(&config_file) {
        let listen_given = args.contains(&"--listen");
        let doors = [
            ("[server] listen", &config.server.listen, listen_given),
            ("[server] listen_tls", &config.server.listen_tls, false),
            ("[web] listen", &config.web.listen, false),
            ("[irc] listen", &config.irc.listen, false),
            ("[irc] listen_tls", &config.irc.listen_tls, false),
            ("[admin] listen", &config.admin.listen, false),
        ];
        for (key, addr, overridden) in doors {
            assert!(
                overridden || addr.is_empty() || addr.ends_with(":0"),
                "{}: a test server's {key} must be \"\" or port 0, not {addr:?}",
                config_file.display()
            );
        }
    }
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

    /// Waits (up to 20 s) for the process to exit; its exit code. If it does not exit the test
    /// fails, and the process is killed.
    pub fn exit_code(mut self) -> Option<i32> {
        wait_for_exit(&mut self.child, Duration::from_secs(20))
    }
}
