//! The web door over a real WebSocket: JSON in and out, the same rooms, names, pipeline and
//! moderation as the text protocol, the origin check, bad frames, several rooms at once.

mod common;

use chatpipe::Server;
use common::web::WebClient;
use common::{TestServer, test_config};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A web user and a text user in the lobby see each other: the text user's lines exactly as
/// always, the web user's as JSON objects with a time.
#[tokio::test]
async fn web_and_text_users_share_a_room() {
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let mut tcp = server.login("tom").await;
    let mut alice = WebClient::login(web, "alice").await;
    let joined = alice
        .expect_where("own join", |v| {
            v["type"] == "joined" && v["name"] == "alice"
        })
        .await;
    assert_eq!(joined["room"], "lobby");
    assert!(joined["time"].is_string());
    let members = alice.expect_type("members").await;
    assert_eq!(members["room"], "lobby");
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tom", "alice"]);
    tcp.expect("alice has joined the chat").await;

    alice.say(None, "hello from the browser").await;
    alice
        .expect_message("alice", "hello from the browser")
        .await;
    tcp.expect("alice: hello from the browser").await;
    tcp.send("hello from nc").await;
    tcp.expect("tom: hello from nc").await;
    let message = alice.expect_message("tom", "hello from nc").await;
    assert_eq!(message["room"], "lobby");

    alice.say(None, "/msg tom psst").await;
    tcp.expect("[PM from alice] psst").await;
    let sent = alice.expect_type("private").await;
    assert_eq!(
        (sent["to"].as_str(), sent["direction"].as_str()),
        (Some("tom"), Some("out"))
    );

    // The pipeline applies: the rate limit is per client, whatever the door.
    drop(alice);
    tcp.expect("alice has left the chat").await;
    server.shutdown().await;
}

/// A name taken on one door is taken on the other; a bad name and a bad frame get a notice
/// with a code and a reason; binary frames are refused; the connection survives all of it.
#[tokio::test]
async fn names_and_bad_frames() {
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let _tom = server.login("tom").await;
    let mut web_user = WebClient::connect(web).await;
    web_user.expect_type("notice").await;
    web_user.send(json!({"type": "hello", "name": "TOM"})).await;
    let taken = web_user.expect_type("notice").await;
    assert_eq!(taken["code"], "name_taken");
    web_user
        .send(json!({"type": "hello", "name": "bad name!"}))
        .await;
    assert_eq!(web_user.expect_type("notice").await["code"], "invalid_name");
    web_user.send_raw(Message::text("{not json")).await;
    assert_eq!(web_user.expect_type("notice").await["code"], "bad_frame");
    web_user.send(json!({"type": "hello", "name": "bea"})).await;
    web_user.expect_type("welcome").await;
    web_user.send_raw(Message::binary(vec![1, 2, 3])).await;
    let refused = web_user.expect_notice("Binary frames are refused").await;
    assert_eq!(refused["code"], "bad_frame");
    web_user.send(json!({"type": "line", "text": 5})).await;
    assert_eq!(web_user.expect_type("notice").await["code"], "bad_frame");
    let long = "x".repeat(3000);
    web_user.say(None, &long).await;
    assert_eq!(web_user.expect_type("notice").await["code"], "too_long");
    web_user.say(None, "still here").await;
    web_user.expect_message("bea", "still here").await;
    server.shutdown().await;
}

/// A web member sits in several rooms: `/join` adds one, a line names its room, `/leave` drops
/// the room it is sent to; a text member's `/join` still moves it.
#[tokio::test]
async fn web_members_sit_in_several_rooms() {
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let mut tom = server.login("tom").await;
    let mut alice = WebClient::login(web, "alice").await;
    tom.expect("alice has joined the chat").await;
    alice.say(None, "/join games").await;
    let joined = alice
        .expect_where("join games", |v| {
            v["type"] == "joined" && v["room"] == "games"
        })
        .await;
    assert_eq!(joined["scope"], "room");
    tom.send("/join games").await;
    tom.expect_contains("tom has joined the room").await;
    alice
        .expect_where("tom joins games", |v| {
            v["type"] == "joined" && v["name"] == "tom"
        })
        .await;
    // alice is still in the lobby too: a line for the lobby goes there, not to games.
    alice.say(Some("lobby"), "in the lobby").await;
    alice
        .expect_where("lobby line", |v| {
            v["type"] == "message" && v["room"] == "lobby" && v["text"] == "in the lobby"
        })
        .await;
    alice.say(Some("games"), "in games").await;
    tom.expect("alice: in games").await;
    alice.say(Some("nowhere"), "lost?").await;
    alice.expect_notice("You are not in nowhere").await;
    alice.say(Some("games"), "/leave").await;
    alice
        .expect_where("left games", |v| {
            v["type"] == "left" && v["room"] == "games"
        })
        .await;
    tom.expect("alice has left the room").await;
    alice.say(Some("lobby"), "/leave").await;
    alice.expect_notice("in one room only").await;
    server.shutdown().await;
}

/// An upgrade from another site's page is refused with 403; the page itself is served.
#[tokio::test]
async fn cross_origin_upgrades_are_refused_and_the_page_is_served() {
    let mut config = test_config();
    config.web.origins = vec!["https://chat.example.org".into()];
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let mut request = format!("ws://{web}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let mut request = format!("ws://{web}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://chat.example.org".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = tokio::net::TcpStream::connect(web).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-security-policy"), "{page}");
    assert!(page.contains("<script src=\"/app.js\""), "{page}");
    server.shutdown().await;
}

/// `GET /favicon.ico`, which every browser asks for, is an icon rather than a 404, and the page
/// names it.
#[tokio::test]
async fn the_favicon_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let get = |path: &'static str| async move {
        let mut http = tokio::net::TcpStream::connect(web).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        http.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(common::WAIT, http.read_to_string(&mut response))
            .await
            .expect("an answer in time")
            .unwrap();
        response
    };
    let icon = get("/favicon.ico").await;
    assert!(icon.starts_with("HTTP/1.1 200"), "{icon}");
    let (head, body) = icon.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_lowercase().contains("content-type: image/svg+xml"),
        "{head}"
    );
    assert!(body.starts_with("<svg"), "{body}");
    assert!(body.len() < 1024, "a favicon of {} bytes", body.len());
    let page = get("/").await;
    assert!(
        page.contains("<link rel=\"icon\" href=\"/favicon.ico\""),
        "{page}"
    );
    server.shutdown().await;
}

/// Filters and the rate limit reach web users with codes: a blocked line, a rate-limited one.
#[tokio::test]
async fn the_pipeline_reaches_web_users() {
    let dir = common::dir_with(&[(
        "block.toml",
        "action = \"block\"\nmessage = \"No spoilers.\"\nwords = [\"snape\"]\n",
    )]);
    let mut config = test_config();
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 3;
    let server = Server::new(config).filters_dir(dir.path()).unwrap();
    let (server, web) = TestServer::start_with_web(server).await;
    let mut alice = WebClient::login(web, "alice").await;
    alice.say(None, "snape did it").await;
    let blocked = alice
        .expect_where("blocked", |v| v["code"] == "blocked")
        .await;
    assert_eq!(
        (blocked["code"].as_str(), blocked["text"].as_str()),
        (Some("blocked"), Some("No spoilers."))
    );
    for n in 0..6 {
        alice.say(None, &format!("flood {n}")).await;
    }
    let limited = alice.expect_notice("Rate limit exceeded").await;
    assert_eq!(limited["code"], "rate_limited");
    server.shutdown().await;
}

/// On shutdown a web client gets the notice with its code, then the connection closes.
#[tokio::test]
async fn shutdown_reaches_web_users() {
    let (mut server, web) = TestServer::start_with_web(Server::new(test_config())).await;
    let mut alice = WebClient::login(web, "alice").await;
    server.trigger_shutdown();
    let bye = alice.expect_type("notice").await;
    let bye = if bye["code"] == "shutting_down" {
        bye
    } else {
        alice.expect_notice("shutting down").await
    };
    assert_eq!(bye["code"], "shutting_down");
    assert!(alice.next().await.is_none(), "closed after the notice");
}

/// Per-address limits count web and text connections together: with two allowed per address,
/// a text client and a web client fill them, and the next WebSocket upgrade gets 429.
#[tokio::test]
async fn per_address_limits_are_shared_between_doors() {
    let mut config = test_config();
    config.admission.exempt = Vec::new();
    config.admission.per_address_connections = 2;
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let _tom = server.login("tom").await;
    let _alice = WebClient::login(web, "alice").await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{web}/ws")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let mut third = server.connect().await;
    third
        .expect_contains("Too many connections from your address (the limit is 2)")
        .await;
    server.shutdown().await;
}

/// A WebSocket that sends nothing — not even the pong a browser sends to the server's pings —
/// for `idle_timeout` is told and closed. The client is a raw socket that speaks just enough
/// WebSocket to log in and then stays silent (a WebSocket library would answer the pings).
/// Real time: a one-second timeout.
#[tokio::test]
async fn a_silent_websocket_is_closed_at_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = test_config();
    config.server.idle_timeout = std::time::Duration::from_secs(1);
    let (server, web) = TestServer::start_with_web(Server::new(config)).await;
    let mut socket = tokio::net::TcpStream::connect(web).await.unwrap();
    socket
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let hello = br#"{"type":"hello","name":"quiet"}"#;
    // A masked text frame with a zero mask: the payload goes as it is.
    let mut frame = vec![0x81, 0x80 | hello.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(hello);
    socket.write_all(&frame).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(common::WAIT, socket.read_to_end(&mut received))
        .await
        .expect("closed within the wait")
        .unwrap();
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 101"), "{received}");
    assert!(received.contains(r#""type":"welcome""#), "{received}");
    assert!(received.contains(r#""code":"idle""#), "{received}");
    assert!(received.contains("Disconnected: idle for 1s"), "{received}");
    server.shutdown().await;
}
