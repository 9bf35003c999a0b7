//! Rooms, private messages, history, accounts and moderation over real TCP.

mod common;

use chatpipe::Config;
use chatpipe::event::Role;
use common::{TestClient, TestServer, test_config};

/// A config with a moderator `mod` (password `modpass`), an admin `root` (`rootpass`) and a user
/// account `alice` (`alicepass`).
fn with_accounts() -> Config {
    common::config_with_accounts(&[
        ("mod", "modpass", Role::Moderator),
        ("root", "rootpass", Role::Admin),
        ("alice", "alicepass", Role::User),
    ])
}

/// Logs in to a registered account.
async fn login_with_password(server: &TestServer, name: &str, password: &str) -> TestClient {
    common::login_with_password_at(server.addr, name, password).await
}

/// A line said in one room never reaches another; join and leave notices go to the rooms
/// concerned; `/rooms` and `/who` describe them.
#[tokio::test]
async fn rooms_are_isolated() {
    let server = TestServer::with_config(test_config()).await;
    let mut ann = server.login("ann").await;
    let mut ben = server.login("ben").await;
    ann.expect("ben has joined the chat").await;

    ben.send("/join Games").await;
    ben.expect("SERVER: You are now in games.").await;
    ben.expect("ben has joined the room").await;
    ann.expect("ben has left the room").await;

    ben.send("in games").await;
    ben.expect("ben: in games").await;
    ann.send("in lobby").await;
    ann.expect("ann: in lobby").await;
    ann.send("/rooms").await;
    ann.expect("SERVER: Rooms: games (1), lobby (1)").await;
    ben.send("/who").await;
    ben.expect("SERVER: Users in games (1): ben").await;

    ben.send("/leave").await;
    ben.expect("SERVER: You are now in lobby.").await;
    ann.expect("ben has joined the room").await;
    ben.expect("ben has joined the room").await;
    ben.expect_contains("End of history").await;
    // The empty room is gone.
    ann.send("/rooms").await;
    ann.expect("SERVER: Rooms: lobby (2)").await;
    server.shutdown().await;
}

/// A client joining a room gets its recent lines, marked as history.
#[tokio::test]
async fn history_is_replayed_on_join() {
    let mut config = test_config();
    config.rooms.history = 2;
    let server = TestServer::with_config(config).await;
    let mut ann = server.login("ann").await;
    for line in ["one", "two", "three"] {
        ann.send(line).await;
        ann.expect(&format!("ann: {line}")).await;
    }
    ann.send("/me waves").await;
    ann.expect("* ann waves").await;
    let mut ben = server.login("ben").await;
    ben.expect("SERVER: Recent messages in lobby:").await;
    ben.expect("[history] ann: three").await;
    ben.expect("[history] * ann waves").await;
    ben.expect("SERVER: End of history").await;
    server.shutdown().await;
}

/// `/msg` reaches only its recipient, passes the filters, and answers unknown names.
#[tokio::test]
async fn private_messages() {
    let dir = common::dir_with(&[("w.toml", "action = \"mask\"\nwords = [\"darn\"]\n")]);
    let server = chatpipe::Server::new(test_config())
        .filters_dir(dir.path())
        .unwrap();
    let server = TestServer::start(server).await;
    let mut ann = server.login("ann").await;
    let mut ben = server.login("ben").await;
    ann.expect("ben has joined the chat").await;
    let mut cat = server.login("cat").await;
    ann.expect("cat has joined the chat").await;

    ben.expect("cat has joined the chat").await;
    ann.send("/msg BEN darn secret").await;
    ann.expect("[PM to ben] **** secret").await;
    ben.expect("[PM from ann] **** secret").await;
    ann.send("/msg nobody hi").await;
    ann.expect("SERVER: No user named nobody is online.").await;
    // cat saw none of it: the next thing cat sees is this.
    ann.send("public").await;
    cat.expect("ann: public").await;
    server.shutdown().await;
}

const WRONG_ALICE: &str =
    "SERVER: Wrong password for alice; try again, or send an empty line to choose another username";

/// Accounts: the right password logs in with the account's role; a wrong or missing one does
/// not; guests can be turned off; a registered name cannot be taken with /nick.
#[tokio::test]
async fn accounts_need_their_password() {
    let server = TestServer::with_config(with_accounts()).await;
    let mut m = login_with_password(&server, "mod", "modpass").await;
    m.send("/help").await;
    m.expect_contains("/kick NAME").await;

    let mut wrong = server.connect().await;
    wrong.expect_contains("Please enter your username").await;
    wrong.send("alice").await;
    wrong.expect("SERVER: Password required for alice").await;
    wrong.send("guess").await;
    wrong.expect(WRONG_ALICE).await;
    // Asked for the password again, not for a name: a retyped password never becomes a name.
    wrong.expect("SERVER: Password for alice:").await;
    wrong.send("s3cret").await;
    wrong.expect(WRONG_ALICE).await;
    wrong.expect("SERVER: Password for alice:").await;
    // An empty line goes back to choosing a username.
    wrong.send("").await;
    wrong
        .expect("SERVER: No password given; choose a username")
        .await;
    wrong.expect("SERVER: Please enter your username:").await;
    wrong.send("someone").await;
    wrong.expect("someone has joined the chat").await;
    drop(wrong);
    // The moderator sees the real name join, and never the password.
    loop {
        let line = m.next_line().await.unwrap();
        assert!(
            !line.contains("s3cret"),
            "a password shown as a name: {line}"
        );
        if line == "someone has joined the chat" {
            break;
        }
    }

    let mut guest = server.login("guest").await;
    guest.send("/nick ALICE").await;
    guest.expect_contains("is registered").await;
    guest.send("/kick mod").await;
    guest.expect("SERVER: Permission denied").await;
    server.shutdown().await;

    let mut config = with_accounts();
    config.admission.allow_guests = false;
    let server = TestServer::with_config(config).await;
    let mut guest = server.connect().await;
    guest.expect_contains("Please enter your username").await;
    guest.send("guest").await;
    guest
        .expect("SERVER: Only registered users may join; guest is not registered")
        .await;
    server.shutdown().await;
}

/// Wrong passwords are throttled: past the limit even the right password is refused for a while.
#[tokio::test]
async fn wrong_passwords_are_throttled() {
    let mut config = with_accounts();
    config.admission.login_failures = 2;
    let server = TestServer::with_config(config).await;
    let mut client = server.connect().await;
    client.expect_contains("Please enter your username").await;
    client.send("alice").await;
    client.expect("SERVER: Password required for alice").await;
    client.send("nope").await;
    client.expect(WRONG_ALICE).await;
    client.expect("SERVER: Password for alice:").await;
    client.send("nope").await;
    client.expect(WRONG_ALICE).await;
    // Past the limit: refused without another prompt, and the connection ends.
    let refusal = client.next_line().await.unwrap();
    assert!(
        refusal.starts_with("SERVER: Too many failed logins; try again in"),
        "{refusal}"
    );
    client.expect_eof().await;
    server.shutdown().await;
}

/// A client that types its name and password ahead while the name is throttled is refused and
/// disconnected: the password it typed is never read as a username (which would announce it to
/// the room and write it to the log).
#[tokio::test]
async fn a_throttled_login_never_takes_the_password_for_a_name() {
    let mut config = with_accounts();
    config.admission.login_failures = 1;
    let server = TestServer::with_config(config).await;
    let mut watcher = server.login("watcher").await;
    let mut client = server.connect().await;
    client.expect_contains("Please enter your username").await;
    client.send("alice").await;
    client.expect("SERVER: Password required for alice").await;
    client.send("nope").await;
    client.expect(WRONG_ALICE).await;
    drop(client);
    let mut again = server.connect().await;
    again.expect_contains("Please enter your username").await;
    again.send("alice\ntypedahead99").await;
    let refusal = again.next_line().await.unwrap();
    assert!(
        refusal.starts_with("SERVER: Too many failed logins; try again in"),
        "{refusal}"
    );
    again.expect_eof().await;
    watcher.send("/who").await;
    let who = watcher.expect_contains("Users in lobby").await;
    assert!(
        !who.contains("typedahead99"),
        "the password became a name: {who}"
    );
    server.shutdown().await;
}

/// Moderator commands work for moderators, are refused to users, and are announced.
#[tokio::test]
async fn moderator_commands() {
    let server = TestServer::with_config(with_accounts()).await;
    let mut m = login_with_password(&server, "mod", "modpass").await;
    let mut bob = server.login("bob").await;
    m.expect("bob has joined the chat").await;

    bob.send("/mute mod").await;
    bob.expect("SERVER: Permission denied").await;

    m.send("/mute bob 10m").await;
    m.expect("SERVER: bob was muted by mod for 10m").await;
    bob.expect("SERVER: bob was muted by mod for 10m").await;
    bob.send("hello?").await;
    bob.expect("SERVER: You are muted for another 10m.").await;
    m.send("/unmute bob").await;
    bob.expect("SERVER: bob was unmuted by mod").await;
    bob.send("thanks").await;
    m.expect("SERVER: bob was unmuted by mod").await;
    m.expect("bob: thanks").await;

    m.send("/moderated on").await;
    bob.expect_contains("lobby is now moderated by mod").await;
    bob.send("can I talk?").await;
    bob.expect_contains("lobby is moderated").await;
    m.send("/voice bob").await;
    bob.expect("SERVER: bob was given voice by mod").await;
    bob.send("now I can").await;
    bob.expect("bob: now I can").await;
    m.send("/moderated off").await;
    bob.expect_contains("no longer moderated").await;

    m.send("/who").await;
    m.expect_contains("SERVER: Users in lobby (2): @mod, bob")
        .await;

    m.send("/kick bob spamming").await;
    bob.expect("SERVER: You were kicked by mod: spamming").await;
    bob.expect_eof().await;
    m.expect_contains("bob has left the chat").await;
    m.expect("SERVER: bob was kicked by mod: spamming").await;

    m.send("/kick mod").await;
    m.expect("SERVER: You cannot do that to yourself.").await;
    let mut root = login_with_password(&server, "root", "rootpass").await;
    m.expect("root has joined the chat").await;
    root.expect_contains("End of history").await;
    m.send("/kick root").await;
    m.expect("SERVER: Permission denied").await;
    root.send("/reload").await;
    root.expect("SERVER: This server has no filters directory to reload.")
        .await;
    server.shutdown().await;
}

/// A banned name and its address are refused at the handshake with the reason and time left;
/// /unban lifts it.
#[tokio::test]
async fn bans_refuse_name_and_address() {
    let mut config = with_accounts();
    config.admission.exempt = Vec::new();
    let server = TestServer::with_config(config).await;
    let mut m = login_with_password(&server, "mod", "modpass").await;
    let mut bob = server.login("bob").await;
    m.expect("bob has joined the chat").await;

    m.send("/ban bob 1h").await;
    bob.expect("SERVER: You were banned by mod for 1h.").await;
    bob.expect_eof().await;
    // The ban acts at once; the moderator's confirmation comes once it is saved.
    m.expect("bob has left the chat").await;
    m.expect("SERVER: bob was banned by mod for 1h").await;
    m.expect("SERVER: bob is banned by mod for 1h (name and address).")
        .await;

    // Same address, another name: refused too.
    let mut again = server.connect().await;
    again.expect_contains("Please enter your username").await;
    again.send("bobby").await;
    let refusal = again.next_line().await.unwrap();
    assert!(
        refusal.starts_with("SERVER: Connection refused: you are banned for another"),
        "{refusal}"
    );
    assert!(refusal.contains("banned by mod"), "{refusal}");
    again.expect_eof().await;

    // A second ban on the same name replaces the first; /bans lists it once.
    m.send("/ban bob 2d").await;
    m.expect("SERVER: bob is banned by mod for 2d.").await;
    m.send("/bans").await;
    m.expect("SERVER: Bans (1):").await;
    m.expect("SERVER: bob (name) for 2d: banned by mod").await;

    // Nobody online can rename into the banned name.
    let mut eve = server.login("eve").await;
    m.expect("eve has joined the chat").await;
    eve.send("/nick Bob").await;
    eve.expect_contains("You cannot take the name Bob: you are banned")
        .await;

    m.send("/unban bob").await;
    m.expect("SERVER: bob is no longer banned.").await;
    m.expect("SERVER: bob was unbanned by mod").await;
    eve.expect("SERVER: bob was unbanned by mod").await;
    m.send("/bans").await;
    m.expect("SERVER: Nobody is banned.").await;
    let _bob = server.login("bob").await;
    server.shutdown().await;
}

/// A mute or ban longer than anything representable lasts until lifted instead of crashing the
/// hub; `/mutes` lists it; chat goes on.
#[tokio::test]
async fn huge_durations_mean_until_lifted() {
    let server = TestServer::with_config(with_accounts()).await;
    let mut m = login_with_password(&server, "mod", "modpass").await;
    let mut bob = server.login("bob").await;
    m.expect("bob has joined the chat").await;
    m.send("/mute bob 300000000y").await;
    m.expect("SERVER: bob was muted by mod until unmuted").await;
    bob.expect("SERVER: bob was muted by mod until unmuted")
        .await;
    bob.send("let me speak").await;
    bob.expect("SERVER: You are muted until a moderator unmutes you.")
        .await;
    m.send("/mutes").await;
    m.expect("SERVER: Mutes (1):").await;
    m.expect("SERVER: bob until unmuted").await;
    m.send("/ban someone 300000000000y").await;
    let answer = m.next_line().await.unwrap();
    assert!(
        answer == "SERVER: someone is banned by mod until unbanned."
            || answer.starts_with("SERVER: Usage: /ban"),
        "{answer}"
    );
    // The hub is alive: a line still goes round.
    m.send("still here").await;
    m.expect("mod: still here").await;
    bob.expect("mod: still here").await;
    server.shutdown().await;
}

/// A moderated room silences the room, not private messages; a moderator cannot ban an
/// admin's name while the admin is offline.
#[tokio::test]
async fn moderation_limits() {
    let server = TestServer::with_config(with_accounts()).await;
    let mut m = login_with_password(&server, "mod", "modpass").await;
    let mut bob = server.login("bob").await;
    m.expect("bob has joined the chat").await;
    m.send("/moderated on").await;
    bob.expect_contains("is now moderated").await;
    bob.send("/msg mod may I speak?").await;
    bob.expect("[PM to mod] may I speak?").await;
    m.expect_contains("is now moderated").await;
    m.expect("[PM from bob] may I speak?").await;
    m.send("/ban root").await;
    m.expect("SERVER: Permission denied").await;
    m.send("/ban someone 1h").await;
    m.expect("SERVER: someone is banned by mod for 1h.").await;
    server.shutdown().await;
}

/// Every moderator command is refused to an ordinary user, and `/help` does not list them.
#[tokio::test]
async fn users_cannot_moderate() {
    let server = TestServer::with_config(with_accounts()).await;
    let mut user = server.login("plain").await;
    let _other = server.login("other").await;
    user.expect("other has joined the chat").await;
    for command in [
        "/kick other",
        "/mute other",
        "/mute other 5m",
        "/unmute other",
        "/ban other",
        "/ban other 1h",
        "/unban other",
        "/reload",
        "/moderated on",
        "/voice other",
        "/bans",
        "/mutes",
    ] {
        user.send(command).await;
        user.expect("SERVER: Permission denied").await;
    }
    user.send("/help").await;
    let mut help = Vec::new();
    loop {
        let line = user.next_line().await.unwrap();
        let last = line.contains("//text");
        help.push(line);
        if last {
            break;
        }
    }
    assert!(help.iter().all(|l| !l.contains("/kick")), "{help:?}");
    server.shutdown().await;
}

/// `/reload` by a moderator re-reads the filters directory and says what is running.
#[tokio::test]
async fn moderator_reloads_filters() {
    let dir = common::dir_with(&[("w.toml", "action = \"mask\"\nwords = [\"darn\"]\n")]);
    let server = chatpipe::Server::new(with_accounts())
        .filters_dir(dir.path())
        .unwrap();
    let server = TestServer::start(server).await;
    let mut m = login_with_password(&server, "mod", "modpass").await;
    std::fs::write(
        dir.path().join("w.toml"),
        "action = \"mask\"\nwords = [\"heck\"]\n",
    )
    .unwrap();
    m.send("/reload").await;
    m.expect("SERVER: Filters reloaded: w").await;
    m.send("darn heck").await;
    m.expect("mod: darn ****").await;
    std::fs::write(dir.path().join("w.toml"), "words = [\n").unwrap();
    m.send("/reload").await;
    let answer = m.expect_contains("Filter reload failed").await;
    assert!(answer.contains("w.toml:"), "{answer}");
    m.send("darn heck").await;
    m.expect("mod: darn ****").await;
    server.shutdown().await;
}

/// Above `[rooms] quiet_above` members, joins and leaves are not announced to text members one
/// by one (a newcomer still sees its own join), while member lists on the web door follow
/// every change.
#[tokio::test]
async fn large_rooms_are_quiet_about_joins_and_leaves() {
    let mut config = common::test_config();
    config.rooms.quiet_above = 2;
    let (server, web) = common::TestServer::start_with_web(chatpipe::Server::new(config)).await;
    let mut alice = server.login("alice").await;
    let mut page = common::web::WebClient::login(web, "wendy").await;
    alice.expect("wendy has joined the chat").await;
    // The room has two members; the third arrives quietly for alice.
    let mut carol = server.login("carol").await;
    page.expect_where("carol's join", |m| {
        m["type"] == "joined" && m["name"] == "carol"
    })
    .await;
    carol.send("hi").await;
    alice.expect("carol: hi").await;
    drop(carol);
    page.expect_where("carol's leave", |m| {
        m["type"] == "left" && m["name"] == "carol"
    })
    .await;
    alice.send("still here").await;
    alice.expect("alice: still here").await;
    server.shutdown().await;
}
