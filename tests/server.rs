//! The core server over real TCP: handshake, chat, leaving, slow clients, ordering, shutdown.

mod common;

use std::collections::HashMap;

use common::{TestClient, TestServer, test_config};

/// Three clients see each other join, and a line from one reaches all three.
#[tokio::test]
async fn three_clients_join_and_chat() {
    let server = TestServer::with_config(test_config()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect("bob has joined the chat").await;
    let mut carol = server.login("carol").await;
    alice.expect("carol has joined the chat").await;
    bob.expect("carol has joined the chat").await;

    bob.send("hello everyone").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.expect("bob: hello everyone").await;
    }
    server.shutdown().await;
}

/// Invalid, taken (in another case) and reserved names are refused with a reason; a retry works.
#[tokio::test]
async fn bad_names_are_refused_and_retry_works() {
    let server = TestServer::with_config(test_config()).await;
    let _alice = server.login("alice").await;
    let mut client = server.connect().await;
    client.expect_contains("Please enter your username").await;

    client.send("not valid!").await;
    let reason = client.next_line().await.unwrap();
    assert!(reason.starts_with("SERVER: Invalid username:"), "{reason}");
    client.expect("SERVER: Please enter your username:").await;

    client.send("ALICE").await;
    let reason = client.next_line().await.unwrap();
    assert!(reason.contains("already taken"), "{reason}");
    client.expect("SERVER: Please enter your username:").await;

    client.send("Server").await;
    let reason = client.next_line().await.unwrap();
    assert!(reason.contains("reserved"), "{reason}");
    client.expect("SERVER: Please enter your username:").await;

    client.send("bob").await;
    client.expect("bob has joined the chat").await;
    server.shutdown().await;
}

/// Five refused names close the connection with a reason.
#[tokio::test]
async fn five_bad_names_close_the_connection() {
    let server = TestServer::with_config(test_config()).await;
    let mut client = server.connect().await;
    for _ in 0..5 {
        client.send("").await;
    }
    client.expect_contains("Too many invalid usernames").await;
    client.expect_eof().await;
    server.shutdown().await;
}

/// A client that never picks a name is closed after the handshake timeout, with a reason.
#[tokio::test]
async fn handshake_times_out() {
    let mut config = test_config();
    config.server.handshake_timeout = std::time::Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    let mut client = server.connect().await;
    client
        .expect_contains("Timed out waiting for a username")
        .await;
    client.expect_eof().await;
    server.shutdown().await;
}

/// `/quit`, end of stream and an abrupt reset each tell the others that the client left.
#[tokio::test]
async fn quit_eof_and_reset_announce_leaving() {
    let server = TestServer::with_config(test_config()).await;
    let mut watcher = server.login("watcher").await;

    let mut quitter = server.login("quitter").await;
    watcher.expect("quitter has joined the chat").await;
    quitter.send("bye").await;
    quitter.send("/quit").await;
    watcher.expect("quitter: bye").await;
    watcher.expect("quitter has left the chat").await;
    quitter.expect("quitter: bye").await;
    quitter.expect("SERVER: Goodbye!").await;
    quitter.expect_eof().await;

    let mut closer = server.login("closer").await;
    watcher.expect("closer has joined the chat").await;
    closer.send("last words").await;
    closer.close_write().await;
    watcher.expect("closer: last words").await;
    watcher.expect("closer has left the chat").await;

    let resetter = server.login("resetter").await;
    watcher.expect("resetter has joined the chat").await;
    resetter.reset();
    watcher.expect("resetter has left the chat").await;

    // The name is free again once its owner left.
    let _again = server.login("quitter").await;
    watcher.expect("quitter has joined the chat").await;
    server.shutdown().await;
}

/// A client that never reads is disconnected as too slow; the others keep receiving in order.
#[tokio::test]
async fn slow_reader_is_disconnected_and_others_are_unaffected() {
    let mut config = test_config();
    config.server.outbox_lines = 64;
    config.server.outbox_bytes = 64 * 1024;
    let server = TestServer::with_config(config).await;
    let mut sender = server.login("sender").await;
    let mut watcher = server.login("watcher").await;
    sender.expect("watcher has joined the chat").await;
    let mut sloth = server.login("sloth").await;
    sender.expect("sloth has joined the chat").await;
    watcher.expect("sloth has joined the chat").await;

    // Lines of ~1 KB fill the sloth's socket buffers and then its outbox.
    flood_until_gone(&mut sender, &mut watcher, "sloth", 1000).await;
    // The sloth finally reads: its backlog was dropped, and it is told why.
    sloth
        .expect_contains("SERVER: Disconnected: too slow to keep up")
        .await;
    sloth.expect_eof().await;
    // The room still works.
    sender.send("still here").await;
    watcher.expect("sender: still here").await;
    server.shutdown().await;
}

/// `sender` sends numbered lines of about `size` bytes in batches until `watcher` sees `gone`
/// leave; the sender reads its own echoes (so only `gone` falls behind), and the watcher checks
/// it received every line, in order.
async fn flood_until_gone(
    sender: &mut TestClient,
    watcher: &mut TestClient,
    gone: &str,
    size: usize,
) {
    const BATCH: usize = 50;
    let filler = "x".repeat(size);
    let left = format!("{gone} has left the chat");
    let mut sent = 0;
    let mut is_gone = false;
    while !is_gone {
        assert!(sent < 100_000, "{gone} was never disconnected");
        for _ in 0..BATCH {
            sender.send(&format!("{sent} {filler}")).await;
            sent += 1;
        }
        sender
            .expect_contains(&format!("sender: {} ", sent - 1))
            .await;
        let mut received = sent - BATCH;
        while received < sent {
            let line = watcher.next_line().await.expect("watcher disconnected");
            if line == left {
                is_gone = true;
                continue;
            }
            assert_eq!(line, format!("sender: {received} {filler}"));
            received += 1;
        }
    }
}

/// 20 senders × 50 lines: everyone receives every line, each sender's in order, all in one order.
#[tokio::test]
async fn many_senders_one_total_order() {
    let server = TestServer::with_config(test_config()).await;
    let mut clients: Vec<TestClient> = Vec::new();
    for i in 0..20 {
        let client = server.login(&format!("user{i}")).await;
        clients.push(client);
    }
    // Consume the join notices of those who joined later.
    for (i, client) in clients.iter_mut().enumerate() {
        for j in i + 1..20 {
            client.expect(&format!("user{j} has joined the chat")).await;
        }
    }
    let mut writers = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            for n in 0..50 {
                client.send(&format!("line {n} from {i}")).await;
            }
            let mut seen = Vec::new();
            while seen.len() < 1000 {
                seen.push(client.next_line().await.expect("disconnected early"));
            }
            (client, seen)
        }));
    }
    let mut orders = Vec::new();
    for writer in writers {
        let (_client, seen) = writer.await.unwrap();
        let mut next: HashMap<String, usize> = HashMap::new();
        for line in &seen {
            let (name, text) = line.split_once(": ").expect("a chat line");
            let n: usize = text.split(' ').nth(1).unwrap().parse().unwrap();
            let expected = next.entry(name.to_owned()).or_insert(0);
            assert_eq!(n, *expected, "{name}'s lines out of order");
            *expected += 1;
        }
        assert!(next.values().all(|&n| n == 50));
        orders.push(seen);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "two clients saw different orders");
    }
    server.shutdown().await;
}

/// Shutdown delivers what is in flight, then the notice, then closes; `run` returns.
#[tokio::test]
async fn shutdown_delivers_in_flight_lines_then_notice_then_eof() {
    let server = TestServer::with_config(test_config()).await;
    let mut talker = server.login("talker").await;
    let mut quiet1 = server.login("quiet1").await;
    let mut quiet2 = server.login("quiet2").await;
    talker.expect("quiet1 has joined the chat").await;
    talker.expect("quiet2 has joined the chat").await;
    quiet1.expect("quiet2 has joined the chat").await;

    // The quiet clients do not read: these lines wait in their outboxes and socket buffers.
    for n in 0..100 {
        talker.send(&format!("message {n}")).await;
    }
    for n in 0..100 {
        talker.expect(&format!("talker: message {n}")).await;
    }
    server.shutdown().await;

    for client in [&mut quiet1, &mut quiet2] {
        for n in 0..100 {
            client.expect(&format!("talker: message {n}")).await;
        }
    }
    for client in [&mut quiet1, &mut quiet2, &mut talker] {
        client.expect("SERVER: Chat server is shutting down").await;
        client.expect_eof().await;
    }
}

/// Commands: /help, /who, /me, /nick, unknown commands, and `//` escaping.
#[tokio::test]
async fn basic_commands() {
    let server = TestServer::with_config(test_config()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect("bob has joined the chat").await;

    alice.send("/help").await;
    alice.expect("SERVER: Commands:").await;
    alice.expect_contains("/who").await;
    alice.send("/who").await;
    alice
        .expect_contains("SERVER: Users in lobby (2): alice, bob")
        .await;
    alice.send("/me waves").await;
    bob.expect("* alice waves").await;
    alice.send("/nick Bob").await;
    alice.expect_contains("already taken").await;
    alice.send("hello").await;
    alice.send("/nick alicia").await;
    bob.expect("alice: hello").await;
    bob.expect("alice is now known as alicia").await;
    alice.send("/dance").await;
    alice
        .expect_contains("SERVER: Unknown command /dance. Type /help")
        .await;
    alice.send("//shrug").await;
    bob.expect("alicia: /shrug").await;
    alice.send("/nick").await;
    alice.expect_contains("SERVER: Usage: /nick NEW").await;
    server.shutdown().await;
}

/// A client whose socket stops taking bytes is dropped when a write passes its deadline, even
/// while its outbox still has room; the others keep receiving in order.
#[tokio::test]
async fn write_deadline_drops_a_stuck_client() {
    let mut config = test_config();
    config.server.write_timeout = std::time::Duration::from_millis(300);
    config.server.outbox_lines = 1_000_000;
    config.server.outbox_bytes = 512 * 1024 * 1024;
    let server = TestServer::with_config(config).await;
    let mut sender = server.login("sender").await;
    let mut watcher = server.login("watcher").await;
    sender.expect("watcher has joined the chat").await;
    let _stuck = server.login("stuck").await;
    watcher.expect("stuck has joined the chat").await;

    flood_until_gone(&mut sender, &mut watcher, "stuck", 1500).await;
    server.shutdown().await;
}

/// A port already in use says which door it was for, and where: every listener's bind error
/// names its door and the address.
#[tokio::test]
async fn a_port_in_use_names_its_door() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = chatpipe::net::tls::generate_self_signed("localhost", dir.path()).unwrap();
    let expect = |door: &str, error: chatpipe::ServerError| {
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot listen for {door} on {addr}: ")),
            "{message}"
        );
        assert!(message.to_lowercase().contains("in use"), "{message}");
    };
    let config = |change: &dyn Fn(&mut chatpipe::Config)| {
        let mut config = test_config();
        config.tls.cert = cert.clone();
        config.tls.key = key.clone();
        change(&mut config);
        chatpipe::Server::new(config)
    };
    let server = config(&|c| c.server.listen = addr.clone());
    expect("the text door", server.bind().await.unwrap_err());
    let server = config(&|c| c.web.listen = addr.clone());
    expect("the web door", server.bind_web().await.unwrap_err());
    let server = config(&|c| c.irc.listen = addr.clone());
    expect("the IRC door", server.bind_irc().await.unwrap_err());
    let server = config(&|c| c.admin.listen = addr.clone());
    expect(
        "the admin endpoints",
        server.bind_admin().await.unwrap_err(),
    );
    let server = config(&|c| c.server.listen_tls = addr.clone());
    let Err(error) = server.bind_tls().await else {
        panic!("bound a port in use")
    };
    expect("the text door over TLS", error);
    let server = config(&|c| c.irc.listen_tls = addr.clone());
    let Err(error) = server.bind_tls().await else {
        panic!("bound a port in use")
    };
    expect("the IRC door over TLS", error);
}
