//! Hostile and careless clients: each test checks what the offender is told and that a
//! well-behaved client in the same room still receives everything, in order.

mod common;

use std::time::Duration;

use common::{TestClient, TestServer, test_config};

/// The well-behaved client says `n` numbered lines and checks it receives them, in order,
/// skipping only the lines named in `also`.
async fn still_fine(good: &mut TestClient, tag: &str, n: usize) {
    for i in 0..n {
        good.send(&format!("{tag} {i}")).await;
    }
    for i in 0..n {
        good.expect_contains(&format!("good: {tag} {i}")).await;
    }
}

/// An over-long line is refused with a notice and its rest discarded; the connection stays.
/// Repeated offences disconnect.
#[tokio::test]
async fn over_long_lines() {
    let mut config = test_config();
    config.server.max_line_bytes = 100;
    config.server.max_bad_lines = 3;
    let server = TestServer::with_config(config).await;
    let mut good = server.login("good").await;
    let mut bad = server.login("bad").await;
    good.expect("bad has joined the chat").await;

    bad.send(&"x".repeat(500)).await;
    bad.expect("SERVER: Line too long (the limit is 100 bytes); it was discarded.")
        .await;
    bad.send("short and fine").await;
    bad.expect("bad: short and fine").await;
    good.expect("bad: short and fine").await;
    still_fine(&mut good, "a", 5).await;

    bad.send(&"y".repeat(500)).await;
    bad.send(&"z".repeat(500)).await;
    bad.expect_contains("Line too long").await;
    bad.expect_contains("Line too long").await;
    bad.expect("SERVER: Disconnected: too many invalid lines")
        .await;
    bad.expect_eof().await;
    good.expect("bad has left the chat").await;
    still_fine(&mut good, "b", 5).await;
    server.shutdown().await;
}

/// A megabyte without a newline costs the server one line's buffer: one notice, and the next
/// line after the newline is delivered.
#[tokio::test]
async fn a_megabyte_without_newline() {
    let server = TestServer::with_config(test_config()).await;
    let mut good = server.login("good").await;
    let mut bad = server.login("bad").await;
    good.expect("bad has joined the chat").await;
    let blob = vec![b'm'; 1024 * 1024];
    bad.send_raw(&blob).await;
    bad.send_raw(b"\nafter the blob\n").await;
    bad.expect_contains("Line too long").await;
    bad.expect("bad: after the blob").await;
    good.expect("bad: after the blob").await;
    still_fine(&mut good, "c", 3).await;
    server.shutdown().await;
}

/// Invalid UTF-8 is refused with a notice; the connection stays.
#[tokio::test]
async fn invalid_utf8() {
    let server = TestServer::with_config(test_config()).await;
    let mut good = server.login("good").await;
    let mut bad = server.login("bad").await;
    good.expect("bad has joined the chat").await;
    bad.send_raw(b"caf\xe9 \xff\xfe\n").await;
    bad.expect("SERVER: Invalid UTF-8; the line was discarded.")
        .await;
    bad.send("fine").await;
    good.expect("bad: fine").await;
    still_fine(&mut good, "d", 3).await;
    server.shutdown().await;
}

/// Escape sequences, control characters, NUL and lone carriage returns are stripped from what is
/// relayed; a line of only spaces is ignored.
#[tokio::test]
async fn control_characters_are_stripped() {
    let server = TestServer::with_config(test_config()).await;
    let mut good = server.login("good").await;
    let mut bad = server.login("bad").await;
    good.expect("bad has joined the chat").await;
    bad.send_raw(b"\x1b[2J\x1b[31mred\x1b[0m al\x00ert\x07 and\rcr\n")
        .await;
    good.expect("bad: red alert andcr").await;
    bad.send("      ").await;
    bad.send("\x1b]0;new title\x07").await;
    bad.send("visible").await;
    good.expect("bad: visible").await;
    still_fine(&mut good, "e", 3).await;
    server.shutdown().await;
}

/// Names with control characters or looking like the server are refused.
#[tokio::test]
async fn hostile_names() {
    let server = TestServer::with_config(test_config()).await;
    let mut client = server.connect().await;
    client.expect_contains("Please enter your username").await;
    client.send_raw(b"ev\x1b[2Jil\n").await;
    client.expect_contains("SERVER: Invalid username").await;
    client.expect_contains("Please enter your username").await;
    client.send("5erv3r").await;
    client
        .expect("SERVER: Invalid username: that name is reserved")
        .await;
    client.expect_contains("Please enter your username").await;
    client.send("honest").await;
    client.expect("honest has joined the chat").await;
    server.shutdown().await;
}

/// A flood is cut by the rate limit, told once; another client's lines are not delayed or lost.
#[tokio::test]
async fn floods_are_rate_limited() {
    let mut config = test_config();
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 5;
    let server = TestServer::with_config(config).await;
    let mut good = server.login("good").await;
    let mut flood = server.login("flood").await;
    good.expect("flood has joined the chat").await;
    let burst: String = (0..50).map(|i| format!("spam {i}\n")).collect();
    flood.send_raw(burst.as_bytes()).await;
    // The burst passes, then one notice; the rest is dropped without a notice each.
    for i in 0..5 {
        flood.expect(&format!("flood: spam {i}")).await;
    }
    flood
        .expect("SERVER: Rate limit exceeded. Please slow down.")
        .await;
    for i in 0..5 {
        good.expect(&format!("flood: spam {i}")).await;
    }
    // The well-behaved client has its own allowance.
    still_fine(&mut good, "f", 4).await;
    server.shutdown().await;
}

/// Per-address limits: too many open connections, or too many new ones, get one line saying
/// why; exempt addresses are not limited.
#[tokio::test]
async fn per_address_limits() {
    let mut config = test_config();
    config.admission.exempt = Vec::new();
    config.admission.per_address_connections = 2;
    config.admission.per_address_new_per_10m = 3;
    let server = TestServer::with_config(config).await;
    let mut good = server.login("good").await;
    let second = server.login("second").await;
    good.expect("second has joined the chat").await;

    let mut third = server.connect().await;
    third
        .expect("SERVER: Too many connections from your address (the limit is 2).")
        .await;
    third.expect_eof().await;

    drop(second);
    good.expect("second has left the chat").await;
    let _third = server.login("third").await;
    good.expect("third has joined the chat").await;
    // That was the third new connection in the window (the refused one did not count).
    drop(_third);
    good.expect("third has left the chat").await;
    let mut fourth = server.connect().await;
    fourth
        .expect("SERVER: Too many new connections from your address; try again later (the limit is 3 per 10 minutes).")
        .await;
    still_fine(&mut good, "g", 3).await;
    server.shutdown().await;

    // With the default exemption (loopback), the same pattern is not limited.
    let mut config = test_config();
    config.admission.per_address_connections = 1;
    let server = TestServer::with_config(config).await;
    let _a = server.login("a").await;
    let _b = server.login("b").await;
    server.shutdown().await;
}

/// An idle client is warned, then disconnected with a reason; an active one is not.
#[tokio::test]
async fn idle_clients_are_warned_then_disconnected() {
    let mut config = test_config();
    config.server.idle_timeout = Duration::from_secs(2);
    let server = TestServer::with_config(config).await;
    let mut good = server.login("good").await;
    let mut idle = server.login("idle").await;
    good.expect("idle has joined the chat").await;
    // The good client stays active meanwhile (lines every 200 ms, far inside the 2 s).
    let chatter = tokio::spawn(async move {
        for i in 0..15 {
            good.send(&format!("tick {i}")).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        good
    });
    let warning = idle.expect_contains("You have been idle").await;
    assert!(warning.contains("disconnected in 1s"), "{warning}");
    idle.expect_contains("SERVER: Disconnected: idle for 2s")
        .await;
    idle.expect_eof().await;
    let mut good = chatter.await.unwrap();
    for i in 0..15 {
        good.expect_contains(&format!("good: tick {i}")).await;
    }
    good.send("/ping").await;
    good.expect_contains("SERVER: PONG").await;
    server.shutdown().await;
}

/// At `max_connections` the server stops accepting: a further client gets nothing until a
/// place frees up, then is served normally.
#[tokio::test]
async fn connection_limit_waits_for_a_free_place() {
    let mut config = test_config();
    config.server.max_connections = 2;
    let server = TestServer::with_config(config).await;
    let mut first = server.login("first").await;
    let mut second = server.login("second").await;
    first.expect("second has joined the chat").await;

    let mut third = server.connect().await;
    // A round trip through the server: had the third client been accepted, its greeting would
    // have been sent by now.
    second.send("ping?").await;
    second.expect("second: ping?").await;
    assert!(
        third
            .try_next_line(Duration::from_millis(100))
            .await
            .is_none(),
        "a client over the limit was served"
    );

    first.send("/quit").await;
    first.expect_contains("Goodbye").await;
    third.expect_contains("Please enter your username").await;
    third.send("third").await;
    third.expect("third has joined the chat").await;
    server.shutdown().await;
}

/// A stage that panics on the line "boom": a bug in a user's stage.
struct PanicsOnBoom;

impl chatpipe::Stage for PanicsOnBoom {
    fn name(&self) -> &str {
        "panics_on_boom"
    }

    fn apply(
        self: Box<Self>,
        input: chatpipe::EventStream,
        _: &chatpipe::StageContext,
    ) -> chatpipe::EventStream {
        use futures::StreamExt;
        Box::pin(input.map(|event| {
            if matches!(&event.body, chatpipe::Body::Chat(text) if text == "boom") {
                panic!("boom");
            }
            event
        }))
    }
}

/// When the hub cannot go on (the pipeline feeding it panicked), the server does not pretend to
/// be alive: every client is told, connections close, and `run` returns an error (the binary
/// exits non-zero).
#[tokio::test]
async fn a_dead_hub_stops_the_server() {
    let server = chatpipe::Server::new(test_config()).pipeline(|p| p.stage(PanicsOnBoom));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let run = tokio::spawn(server.run(listener, std::future::pending()));
    let mut alice = TestClient::connect(addr).await;
    alice.expect_contains("Please enter your username").await;
    alice.send("alice").await;
    alice.expect_joined("alice").await;
    alice.send("fine").await;
    alice.expect("alice: fine").await;
    alice.send("boom").await;
    alice
        .expect_contains("Chat server is shutting down after an internal error")
        .await;
    alice.expect_eof().await;
    let result = tokio::time::timeout(common::WAIT, run)
        .await
        .expect("run returned")
        .unwrap();
    let error = result.expect_err("run must fail when the hub stops");
    assert!(error.to_string().contains("boom"), "{error}");
}

/// An HTTP request cut short: the headers never end.
const HALF_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow";

/// A TCP connection to `to` from the loopback address `local` (any of 127.0.0.0/8 on Linux), so
/// one test can be several hosts.
async fn connect_from(local: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Everything `socket` receives until the server closes it (a reset counts as closed); fails
/// if it stays open for [`common::WAIT`].
async fn read_until_closed(socket: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(common::WAIT, async {
        loop {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// Half-sent HTTP requests count against the per-address limits from the moment they are
/// accepted: one host opening more of them than its limit gets the excess answered `429` and
/// closed (before, every one stayed open, until the process ran out of file descriptors), while
/// the text door greets a new client and the web door serves another host.
#[tokio::test]
async fn half_sent_http_requests_count_against_the_per_address_limits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = test_config();
    config.admission.exempt = Vec::new();
    config.admission.per_address_connections = 4;
    config.admission.per_address_new_per_10m = 100;
    let (server, web) = common::TestServer::start_with_web(chatpipe::Server::new(config)).await;
    let mut attacker = Vec::new();
    for _ in 0..12 {
        let mut socket = connect_from("127.0.0.2", web).await;
        socket.write_all(HALF_REQUEST).await.unwrap();
        attacker.push(socket);
    }
    // Accepted in the order they connected: the first four are in, the rest refused.
    for socket in &mut attacker[4..] {
        let answer = read_until_closed(socket).await;
        assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
        assert!(
            answer.contains("Too many connections from your address (the limit is 4)."),
            "{answer}"
        );
    }
    for socket in &mut attacker[..4] {
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), socket.read(&mut byte))
                .await
                .is_err(),
            "an admitted connection was answered or closed before its request was complete"
        );
    }
    let mut text = server.connect().await;
    text.expect_contains("Please enter your username").await;
    let _web_user = common::web::WebClient::login(web, "alice").await;
    server.shutdown().await;
}

/// A page load's HTTP connections count against the per-address limits only while open: ten page
/// loads from one address, with an allowance of three new connections per window, are all
/// answered, and it is the WebSocket sessions that the allowance counts (the fourth is refused).
#[tokio::test]
async fn page_loads_do_not_use_up_the_new_connection_allowance() {
    use tokio::io::AsyncWriteExt;
    let mut config = test_config();
    config.admission.exempt = Vec::new();
    config.admission.per_address_new_per_10m = 3;
    let (server, web) = common::TestServer::start_with_web(chatpipe::Server::new(config)).await;
    for _ in 0..10 {
        let mut socket = connect_from("127.0.0.2", web).await;
        socket
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut socket).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let socket = connect_from("127.0.0.2", web).await;
        let (session, _) = tokio_tungstenite::client_async(format!("ws://{web}/ws"), socket)
            .await
            .expect("a session within the allowance is opened");
        sessions.push(session);
    }
    let socket = connect_from("127.0.0.2", web).await;
    match tokio_tungstenite::client_async(format!("ws://{web}/ws"), socket).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        Err(other) => panic!("the fourth session failed otherwise: {other}"),
        Ok(_) => panic!("a fourth session within the window was opened"),
    }
    drop(sessions);
    server.shutdown().await;
}

/// A web connection holds a `max_connections` permit from accept, as the other doors' do: with
/// two places, both held by idle keep-alive HTTP connections (from an exempt address, so no
/// per-address limit), a text client waits until one of them goes.
#[tokio::test]
async fn http_connections_take_a_place_from_accept() {
    let mut config = test_config();
    config.server.max_connections = 2;
    let (server, web) = common::TestServer::start_with_web(chatpipe::Server::new(config)).await;
    // Each answered, so each was accepted before the text client connects.
    let first = answered_and_kept_alive(web).await;
    let second = answered_and_kept_alive(web).await;
    let mut text = server.connect().await;
    assert!(
        text.try_next_line(Duration::from_millis(200))
            .await
            .is_none(),
        "a client over max_connections was served"
    );
    drop(first);
    text.expect_contains("Please enter your username").await;
    drop(second);
    server.shutdown().await;
}

/// A connection to the web door that has had one answer (`HEAD /style.css`) and is kept alive.
async fn answered_and_kept_alive(web: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(web).await.unwrap();
    socket
        .write_all(b"HEAD /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(common::WAIT, socket.read(&mut chunk))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&chunk[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

/// An HTTP request's headers must arrive within `handshake_timeout`, and a keep-alive
/// connection left idle after a response is closed after as long; a WebSocket session on the
/// same door is not affected (its upgrade ended the HTTP part). Real time: half a second.
#[tokio::test]
async fn slow_and_idle_http_connections_are_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    let mut config = test_config();
    config.server.handshake_timeout = Duration::from_millis(500);
    let (server, web) = common::TestServer::start_with_web(chatpipe::Server::new(config)).await;
    let mut alice = common::web::WebClient::login(web, "alice").await;

    let mut slow = tokio::net::TcpStream::connect(web).await.unwrap();
    slow.write_all(HALF_REQUEST).await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(!answer.contains(" 200 "), "{answer}");

    let mut idle = tokio::net::TcpStream::connect(web).await.unwrap();
    idle.write_all(b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    alice.say(None, "still here").await;
    alice.expect_message("alice", "still here").await;
    server.shutdown().await;
}
