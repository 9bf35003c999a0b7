//! A raw IRC client for tests: lines in and out over TCP, every wait bounded.

use std::net::SocketAddr;
use std::time::Duration;

use super::TestClient;

/// An IRC client speaking raw protocol lines.
pub struct IrcClient {
    inner: TestClient,
    /// The nick it registered with.
    pub nick: String,
}

impl IrcClient {
    /// Connects without registering.
    pub async fn connect(addr: SocketAddr) -> IrcClient {
        IrcClient {
            inner: TestClient::connect(addr).await,
            nick: String::new(),
        }
    }

    /// Connects and registers as `nick` without capabilities, consuming the welcome burst and
    /// the join into the lobby (up to its `366`).
    pub async fn register(addr: SocketAddr, nick: &str) -> IrcClient {
        let mut client = IrcClient::connect(addr).await;
        client.send(&format!("NICK {nick}")).await;
        client.send(&format!("USER {nick} 0 * :{nick}")).await;
        client.expect_welcome(nick).await;
        client
    }

    /// Skips to the end of the welcome burst and the join into the lobby.
    pub async fn expect_welcome(&mut self, nick: &str) {
        self.expect_contains(&format!(" 001 {nick} ")).await;
        self.expect_contains(" 376 ").await;
        self.expect_contains(&format!(":{nick}!{nick}@chatpipe JOIN #lobby"))
            .await;
        self.expect_contains(" 366 ").await;
        self.nick = nick.to_owned();
    }

    /// Sends one line (with `\r\n`).
    pub async fn send(&mut self, line: &str) {
        self.inner.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.inner.send_raw(bytes).await;
    }

    /// The next line without `\r\n`; `None` at end of stream.
    pub async fn next_line(&mut self) -> Option<String> {
        self.inner
            .next_line()
            .await
            .map(|l| l.trim_end_matches('\r').to_owned())
    }

    /// The next line if one comes within `wait`.
    pub async fn try_next_line(&mut self, wait: Duration) -> Option<String> {
        self.inner
            .try_next_line(wait)
            .await
            .map(|l| l.trim_end_matches('\r').to_owned())
    }

    /// Skips lines until one contains `needle`; returns it (without `\r`).
    pub async fn expect_contains(&mut self, needle: &str) -> String {
        let line = self.inner.expect_contains(needle).await;
        line.trim_end_matches('\r').to_owned()
    }

    /// Asserts that the next line is exactly `expected`.
    pub async fn expect(&mut self, expected: &str) {
        assert_eq!(self.next_line().await.as_deref(), Some(expected));
    }

    /// Joins `#room` and waits for the end of its names.
    pub async fn join(&mut self, room: &str) {
        self.send(&format!("JOIN #{room}")).await;
        let nick = self.nick.clone();
        self.expect_contains(&format!(":{nick}!{nick}@chatpipe JOIN #{room}"))
            .await;
        self.expect_contains(&format!(" 366 {nick} #{room} ")).await;
    }

    /// Asserts that the server closes the connection next, after any lines.
    pub async fn expect_closed(&mut self) {
        while self.next_line().await.is_some() {}
    }
}
