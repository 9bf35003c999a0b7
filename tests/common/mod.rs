//! Helpers for integration tests: a real server on 127.0.0.1:0 and line-oriented TCP clients.
//! Every wait has a timeout; nothing sleeps to synchronise.

#![allow(dead_code, unreachable_pub)]

pub mod binary;
pub mod irc;
pub mod process;
pub mod web;

use std::net::SocketAddr;
use std::time::Duration;

use chatpipe::{Config, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for an expected line before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A config for tests: ephemeral ports, no rate limit unless a test sets one.
pub fn test_config() -> Config {
    let mut config = Config::default();
    // Port 0 for every door, so a server that binds from its configuration never takes (or
    // collides with) a running chatpipe's default ports.
    config.server.listen = "127.0.0.1:0".into();
    config.web.listen = "127.0.0.1:0".into();
    config.irc.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    config.rate_limit.per_second = 0;
    // In memory: tests that check what survives a restart give a file of their own.
    config.storage.path = std::path::PathBuf::new();
    config
}

/// [`test_config`] with a moderator account `mod`, password `modpass12`.
pub fn config_with_moderator() -> Config {
    config_with_accounts(&[("mod", "modpass12", chatpipe::Role::Moderator)])
}

/// [`test_config`] with these accounts: name, password, role.
pub fn config_with_accounts(accounts: &[(&str, &str, chatpipe::Role)]) -> Config {
    let mut config = test_config();
    for &(name, password, role) in accounts {
        config.accounts.push(chatpipe::config::AccountConfig {
            name: name.into(),
            password_hash: chatpipe::passwords::hash_password(password).unwrap(),
            role,
        });
    }
    config
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The server's metrics.
    pub metrics: Option<std::sync::Arc<chatpipe::metrics::Metrics>>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), chatpipe::ServerError>>,
}

impl TestServer {
    /// Starts `server` on an ephemeral port.
    pub async fn start(server: Server) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Some(server.metrics());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            metrics,
            shutdown: Some(tx),
            handle,
        }
    }

    /// Starts `server` with its web door on an ephemeral port; the server and the web address.
    pub async fn start_with_web(server: Server) -> (TestServer, SocketAddr) {
        let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_addr = web.local_addr().unwrap();
        (TestServer::start(server.web_listener(web)).await, web_addr)
    }

    /// Starts `server` with its IRC door on an ephemeral port; the server and the IRC address.
    pub async fn start_with_irc(server: Server) -> (TestServer, SocketAddr) {
        let irc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let irc_addr = irc.local_addr().unwrap();
        (TestServer::start(server.irc_listener(irc)).await, irc_addr)
    }

    /// Starts `server` with its web and IRC doors on ephemeral ports: the server, the web
    /// address and the IRC address.
    pub async fn start_with_doors(server: Server) -> (TestServer, SocketAddr, SocketAddr) {
        let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_addr = web.local_addr().unwrap();
        let (server, irc_addr) = TestServer::start_with_irc(server.web_listener(web)).await;
        (server, web_addr, irc_addr)
    }

    /// Starts a server with `config` and the standard pipeline.
    pub async fn with_config(config: Config) -> TestServer {
        TestServer::start(Server::new(config)).await
    }

    /// Connects a client that has not logged in.
    pub async fn connect(&self) -> TestClient {
        TestClient::connect(self.addr).await
    }

    /// Connects and logs in as `name`, consuming the greeting, the own join notice and the
    /// `/help` hint.
    pub async fn login(&self, name: &str) -> TestClient {
        let mut client = self.connect().await;
        client.expect_contains("Please enter your username").await;
        client.send(name).await;
        client.expect_joined(name).await;
        client
    }

    /// Triggers shutdown and waits (with a timeout) for `run` to return.
    pub async fn shutdown(mut self) {
        self.trigger_shutdown();
        let result = tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("run did not return after shutdown");
        result.unwrap().unwrap();
    }

    /// Triggers shutdown without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Connects to `addr` and logs in as `name` (a guest), consuming the greeting, the own join
/// notice and the `/help` hint.
pub async fn login_at(addr: SocketAddr, name: &str) -> TestClient {
    let mut client = TestClient::connect(addr).await;
    client.expect_contains("Please enter your username").await;
    client.send(name).await;
    client.expect_joined(name).await;
    client
}

/// Connects to `addr` and logs in to the registered account `name`.
pub async fn login_with_password_at(addr: SocketAddr, name: &str, password: &str) -> TestClient {
    let mut client = TestClient::connect(addr).await;
    client.expect_contains("Please enter your username").await;
    client.send(name).await;
    client
        .expect(&format!("SERVER: Password required for {name}"))
        .await;
    client.send(password).await;
    client.expect_joined(name).await;
    client
}

/// A line-oriented TCP client.
pub struct TestClient {
    reader: BufReader<OwnedReadHalf>,
    /// `None` once [`TestClient::take_writer`] handed it out.
    writer: Option<OwnedWriteHalf>,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        TestClient {
            reader: BufReader::new(r),
            writer: Some(w),
        }
    }

    /// Sends `line` and a newline.
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer().write_all(bytes).await.unwrap();
    }

    fn writer(&mut self) -> &mut OwnedWriteHalf {
        self.writer.as_mut().expect("the writer was taken")
    }

    /// Hands out the write half, so another task can write while this client reads.
    pub fn take_writer(&mut self) -> OwnedWriteHalf {
        self.writer.take().expect("the writer was taken")
    }

    /// The next line, without its newline; `None` at end of stream. Fails after [`WAIT`].
    pub async fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("timed out waiting for a line")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        if line.ends_with('\n') {
            line.pop();
        }
        Some(line)
    }

    /// The next line if one arrives within `wait`, for checking that nothing was sent. A line
    /// that comes later is missed: such a check may pass wrongly, but never fails wrongly.
    pub async fn try_next_line(&mut self, wait: Duration) -> Option<String> {
        let mut line = String::new();
        match tokio::time::timeout(wait, self.reader.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(line.trim_end_matches('\n').to_owned()),
            _ => None,
        }
    }

    /// Asserts the next lines are `name`'s own join notice and the `/help` hint.
    pub async fn expect_joined(&mut self, name: &str) {
        self.expect(&format!("{name} has joined the chat")).await;
        self.expect("SERVER: Type /help for the list of commands.")
            .await;
    }

    /// Asserts the next line is exactly `expected`.
    pub async fn expect(&mut self, expected: &str) {
        let line = self.next_line().await;
        assert_eq!(line.as_deref(), Some(expected));
    }

    /// Skips lines until one contains `needle`; returns it. Fails at EOF or after [`WAIT`].
    pub async fn expect_contains(&mut self, needle: &str) -> String {
        loop {
            match self.next_line().await {
                Some(line) if line.contains(needle) => return line,
                Some(_) => continue,
                None => panic!("end of stream while waiting for {needle:?}"),
            }
        }
    }

    /// Asserts the server closes the connection cleanly next: no more lines, and a clean end of
    /// stream rather than a reset.
    pub async fn expect_eof(&mut self) {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("timed out waiting for the end of stream");
        match read {
            Ok(0) => {}
            Ok(_) => panic!("expected end of stream, got {line:?}"),
            Err(e) => panic!("expected a clean end of stream, got {e}"),
        }
    }

    /// Closes the write side (EOF to the server) but keeps reading.
    pub async fn close_write(&mut self) {
        self.writer().shutdown().await.unwrap();
    }

    /// Resets the connection abruptly (RST instead of FIN).
    pub fn reset(self) {
        let writer = self.writer.expect("the writer was taken");
        let stream = self.reader.into_inner().reunite(writer).unwrap();
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    }
}

/// A temporary directory holding `files` (name, contents): filter directories for tests.
pub fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

/// Polls `condition` until it holds; fails after [`WAIT`] naming `what`. For state that has no
/// line to wait for (a counter in a test stage, say).
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where `program` is on the PATH.
///
/// A test that needs a program from outside the project is marked
/// `#[cfg_attr(not(has_X), ignore = "needs X: how to install it")]` (build.rs sets `has_X` when
/// it finds X; see its list), so without X it is listed as `ignored` and never gets here. A
/// missing program here is therefore a test without that mark (or a PATH changed since the
/// build): the test fails, naming it, rather than passing without having run. `require` (the
/// `CHATPIPE_REQUIRE_*` variable that makes build.rs insist on it) and `install` go in the
/// message.
pub fn required_tool(program: &str, require: &str, install: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file());
    assert!(
        found.is_some(),
        "{program} is missing ({install}): mark the test #[cfg_attr(not(has_...), ignore = ...)] \
         (see build.rs) so it is listed as ignored; {require}=1 makes the build insist on it"
    );
    found
}
