//! A WebSocket client of the web door for tests: JSON objects in and out, every wait bounded.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::WAIT;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A web-door client.
pub struct WebClient {
    socket: Socket,
}

impl WebClient {
    /// Opens `/ws` at `addr` (as a page on that server would: same-origin).
    pub async fn connect(addr: SocketAddr) -> WebClient {
        let request = format!("ws://{addr}/ws").into_client_request().unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        WebClient { socket }
    }

    /// Connects and logs in as `name`, consuming the greeting and the welcome.
    pub async fn login(addr: SocketAddr, name: &str) -> WebClient {
        let mut client = WebClient::connect(addr).await;
        client.expect_type("notice").await;
        client.send(json!({"type": "hello", "name": name})).await;
        let welcome = client.expect_type("welcome").await;
        assert_eq!(welcome["name"], name);
        client
    }

    /// Sends a JSON object as a text frame.
    pub async fn send(&mut self, value: Value) {
        self.socket
            .send(Message::text(value.to_string()))
            .await
            .unwrap();
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.unwrap();
    }

    /// A line as typed, for `room` (or the current room).
    pub async fn say(&mut self, room: Option<&str>, text: &str) {
        let mut line = json!({"type": "line", "text": text});
        if let Some(room) = room {
            line["room"] = json!(room);
        }
        self.send(line).await;
    }

    /// The next JSON object; `None` when the connection closed. Fails after [`WAIT`].
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("timed out waiting for a frame")?;
            match message {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(&text).expect("a JSON object"));
                }
                Ok(Message::Close(_)) => return None,
                Err(error) => {
                    eprintln!("web client: {error}");
                    return None;
                }
                Ok(_) => continue,
            }
        }
    }

    /// Skips objects until one of type `kind`; returns it.
    pub async fn expect_type(&mut self, kind: &str) -> Value {
        loop {
            let value = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for a {kind}"));
            if value["type"] == kind {
                return value;
            }
        }
    }

    /// Skips objects until one for which `matches` holds; returns it.
    pub async fn expect_where(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let value = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {what}"));
            if matches(&value) {
                return value;
            }
        }
    }

    /// Skips objects until a notice whose text contains `needle`; returns it.
    pub async fn expect_notice(&mut self, needle: &str) -> Value {
        self.expect_where(needle, |v| {
            v["type"] == "notice" && v["text"].as_str().is_some_and(|t| t.contains(needle))
        })
        .await
    }

    /// Skips objects until a message `from: text`.
    pub async fn expect_message(&mut self, from: &str, text: &str) -> Value {
        self.expect_where(&format!("{from}: {text}"), |v| {
            v["type"] == "message" && v["from"] == from && v["text"] == text
        })
        .await
    }
}
