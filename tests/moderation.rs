//! Moderation over real sockets: sanctions that follow the person, reasons for bans and mutes,
//! the server's reserved names, away messages across renames, `/help` by role, and a report
//! flood that must not cost the moderators their connection.

mod common;

use chatpipe::event::Role;
use chatpipe::{Config, Server};
use common::irc::IrcClient;
use common::web::WebClient;
use common::{TestClient, TestServer, login_at, login_with_password_at, test_config};
use serde_json::json;

/// A config with a moderator `mod` (password `modpass1`), an admin `root` (`rootpass1`) and a
/// user account `alice` (`alicepass`).
fn with_accounts() -> Config {
    common::config_with_accounts(&[
        ("mod", "modpass1", Role::Moderator),
        ("root", "rootpass1", Role::Admin),
        ("alice", "alicepass", Role::User),
    ])
}

/// Sends `command` and then `/rooms`, and returns every line up to the `/rooms` answer: what
/// `command` said, however many lines.
async fn answer_of(client: &mut TestClient, command: &str) -> Vec<String> {
    client.send(command).await;
    client.send("/rooms").await;
    let mut lines = Vec::new();
    loop {
        let line = client.next_line().await.expect("the connection stays open");
        if line.starts_with("SERVER: Rooms: ") {
            return lines;
        }
        lines.push(line);
    }
}

/// [`answer_of`] from the line that starts with `header` on (what came before, such as joins,
/// is skipped).
async fn listing(client: &mut TestClient, command: &str, header: &str) -> Vec<String> {
    let lines = answer_of(client, command).await;
    let start = lines
        .iter()
        .position(|l| l.starts_with(header))
        .unwrap_or_else(|| panic!("no {header:?} in {lines:?}"));
    lines[start..].to_vec()
}

/// Item 15: `/help` lists only what the asker may use: `/role` is for admins alone, moderator
/// commands for moderators and admins.
#[tokio::test]
async fn help_lists_only_what_the_asker_may_use() {
    let server = TestServer::with_config(with_accounts()).await;
    let mut user = login_at(server.addr, "plain").await;
    let mut moderator = login_with_password_at(server.addr, "mod", "modpass1").await;
    let mut admin = login_with_password_at(server.addr, "root", "rootpass1").await;

    let help = answer_of(&mut user, "/help").await.join("\n");
    assert!(help.contains("/report NAME"), "{help}");
    assert!(!help.contains("/kick"), "{help}");
    assert!(!help.contains("/role"), "{help}");

    let help = answer_of(&mut moderator, "/help").await.join("\n");
    assert!(help.contains("/kick NAME"), "{help}");
    assert!(help.contains("/ban NAME [duration] [reason]"), "{help}");
    assert!(
        !help.contains("/role"),
        "a moderator may not use /role: {help}"
    );

    let help = answer_of(&mut admin, "/help").await.join("\n");
    assert!(help.contains("/kick NAME"), "{help}");
    assert!(help.contains("/role NAME user|moderator|admin"), "{help}");
    server.shutdown().await;
}

/// Item 7: nobody can call themselves by the server's names (`chatpipe`, `server`, in any case)
/// at login or with a rename, on any door.
#[tokio::test]
async fn the_servers_names_are_reserved_on_every_door() {
    let server = Server::new(test_config());
    let (server, web, irc) = TestServer::start_with_doors(server).await;

    // Text door: at login, and with /nick.
    for name in ["chatpipe", "ChatPipe", "SERVER", "server"] {
        let mut client = server.connect().await;
        client.expect_contains("Please enter your username").await;
        client.send(name).await;
        client
            .expect("SERVER: Invalid username: that name is reserved")
            .await;
    }
    let mut bob = server.login("bob").await;
    bob.send("/nick CHATPIPE").await;
    bob.expect("SERVER: Invalid username: that name is reserved")
        .await;

    // IRC: NICK at registration and after it.
    let mut irc_client = IrcClient::connect(irc).await;
    irc_client.send("NICK chatpipe").await;
    irc_client
        .expect_contains(" 432 * chatpipe :Erroneous nickname: that name is reserved")
        .await;
    let mut carol = IrcClient::register(irc, "carol").await;
    carol.send("NICK Chatpipe").await;
    carol
        .expect_contains(" 432 carol Chatpipe :Erroneous nickname: that name is reserved")
        .await;

    // Web: the hello.
    let mut page = WebClient::connect(web).await;
    page.expect_type("notice").await;
    page.send(json!({"type": "hello", "name": "chatPIPE"}))
        .await;
    page.expect_notice("that name is reserved").await;

    // Nobody got in under the name: bob is still bob, and nobody is called chatpipe.
    bob.send("/who").await;
    bob.expect_contains("SERVER: Users in lobby (2): ").await;
    server.shutdown().await;
}

/// The lines of a `WHOIS nick` answer, up to its `318`.
async fn whois(client: &mut IrcClient, nick: &str) -> Vec<String> {
    client.send(&format!("WHOIS {nick}")).await;
    let mut said = Vec::new();
    loop {
        let line = client.next_line().await.expect("the connection stays open");
        let end = line.contains(" 318 ");
        said.push(line);
        if end {
            return said;
        }
    }
}

/// Item 7: an away message moves with the person when they rename, and does not stay with the
/// name they left.
#[tokio::test]
async fn an_away_message_moves_with_a_rename() {
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut dave = IrcClient::register(irc, "dave").await;
    let mut erin = IrcClient::register(irc, "erin").await;
    dave.send("AWAY :at lunch").await;
    dave.expect_contains(" 306 dave ").await;
    dave.send("NICK dave2").await;
    dave.expect_contains(":dave!dave@chatpipe NICK dave2").await;
    erin.expect_contains(":dave!dave@chatpipe NICK dave2").await;

    // Someone else takes the old name.
    let _other = IrcClient::register(irc, "dave").await;

    let said = whois(&mut erin, "dave2").await;
    assert!(
        said.iter().any(|l| l.contains(" 301 erin dave2 :at lunch")),
        "the away message follows dave to dave2: {said:?}"
    );
    let said = whois(&mut erin, "dave").await;
    assert!(
        said.iter().all(|l| !l.contains(" 301 ")),
        "the new dave is not away: {said:?}"
    );
    server.shutdown().await;
}

/// A [`with_accounts`] config whose loopback address is not exempt from address sanctions, so a
/// guest's mute binds to the address the tests connect from.
fn without_exempt_addresses() -> Config {
    let mut config = with_accounts();
    config.admission.exempt = Vec::new();
    config
}

/// Item 5: a mute follows the person through a rename, a reconnect under the old name, and (a
/// guest) a reconnect under a new name from the same address; `/mutes` shows every name, and
/// `/unmute` under any of them lifts it.
#[tokio::test]
async fn a_mute_follows_the_person() {
    let server = TestServer::with_config(without_exempt_addresses()).await;
    let mut m = login_with_password_at(server.addr, "mod", "modpass1").await;
    let mut troll = login_at(server.addr, "troll").await;
    m.expect("troll has joined the chat").await;
    m.send("/mute troll 1h").await;
    m.expect("SERVER: troll was muted by mod for 1h").await;
    troll.expect("SERVER: troll was muted by mod for 1h").await;

    // A rename keeps the mute.
    troll.send("/nick troll_x").await;
    troll.expect("troll is now known as troll_x").await;
    troll.send("still here").await;
    troll
        .expect_contains("SERVER: You are muted for another")
        .await;

    // A reconnect under the old name keeps it.
    troll.send("/quit").await;
    troll.expect("SERVER: Goodbye!").await;
    troll.expect_eof().await;
    let mut troll = login_at(server.addr, "troll").await;
    troll.send("back again").await;
    troll
        .expect_contains("SERVER: You are muted for another")
        .await;
    troll.send("/quit").await;
    troll.expect("SERVER: Goodbye!").await;
    troll.expect_eof().await;

    // So does a reconnect under a new name from the same address (a guest's mute binds to the
    // address too), and the new name joins the mute.
    let mut fresh = login_at(server.addr, "newface").await;
    fresh.send("hello all").await;
    fresh
        .expect_contains("SERVER: You are muted for another")
        .await;

    let mutes = listing(&mut m, "/mutes", "SERVER: Mutes (").await;
    assert_eq!(mutes.len(), 2, "{mutes:?}");
    assert_eq!(mutes[0], "SERVER: Mutes (1):");
    assert!(
        mutes[1].starts_with("SERVER: troll (also troll_x, newface) for "),
        "{mutes:?}"
    );

    // Lifted under any of its names, for every name.
    m.send("/unmute troll_x").await;
    fresh.expect("SERVER: troll_x was unmuted by mod").await;
    fresh.send("free at last").await;
    m.expect_contains("newface: free at last").await;
    assert_eq!(
        answer_of(&mut m, "/mutes").await,
        vec!["SERVER: Nobody is muted.".to_owned()]
    );
    server.shutdown().await;
}

/// Item 5: a registered member's mute is carried by the account: logging in again keeps it,
/// whatever the address, and a rename does not shed it; coming back as a guest from the same
/// address does not either, while another registered member there is not touched.
#[tokio::test]
async fn a_registered_members_mute_follows_the_account() {
    let server = TestServer::with_config(without_exempt_addresses()).await;
    let mut m = login_with_password_at(server.addr, "mod", "modpass1").await;
    let mut alice = login_with_password_at(server.addr, "alice", "alicepass").await;
    m.expect("alice has joined the chat").await;
    m.send("/mute alice 1h").await;
    m.expect("SERVER: alice was muted by mod for 1h").await;
    alice.expect("SERVER: alice was muted by mod for 1h").await;
    alice.send("/nick alice_away").await;
    alice.expect("alice is now known as alice_away").await;
    alice.send("/quit").await;
    alice.expect("SERVER: Goodbye!").await;
    alice.expect_eof().await;
    let mut alice = login_with_password_at(server.addr, "alice", "alicepass").await;
    alice.send("hi").await;
    alice
        .expect_contains("SERVER: You are muted for another")
        .await;
    // Back as a guest from the same address: still muted.
    let mut guest = login_at(server.addr, "freshguest").await;
    guest.send("I am free").await;
    guest
        .expect_contains("SERVER: You are muted for another")
        .await;
    // Another account at that address is its own person.
    let mut root = login_with_password_at(server.addr, "root", "rootpass1").await;
    root.send("hello").await;
    m.expect_contains("root: hello").await;
    server.shutdown().await;
}

/// Item 5: a mute kept in the store holds after a restart under every name it gathered.
#[tokio::test]
async fn a_mute_with_its_names_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = without_exempt_addresses();
    config.storage.path = dir.path().join("chat.db");
    let server = TestServer::with_config(config.clone()).await;
    let mut m = login_with_password_at(server.addr, "mod", "modpass1").await;
    let mut troll = login_at(server.addr, "troll").await;
    m.expect("troll has joined the chat").await;
    m.send("/mute troll 1h").await;
    troll.expect("SERVER: troll was muted by mod for 1h").await;
    m.expect("SERVER: troll was muted by mod for 1h").await;
    troll.send("/nick troll_x").await;
    m.expect("troll is now known as troll_x").await;
    drop(troll);
    // Shutting down waits for the store to write what it was given.
    server.shutdown().await;

    let server = TestServer::with_config(config).await;
    // Under the name muted, which the rename did not free of the mute,
    let mut troll = login_at(server.addr, "troll").await;
    troll.send("after the restart").await;
    troll
        .expect_contains("SERVER: You are muted for another")
        .await;
    // and under the name taken since.
    troll.send("/nick troll_x").await;
    troll.expect("troll is now known as troll_x").await;
    troll.send("still muted").await;
    troll
        .expect_contains("SERVER: You are muted for another")
        .await;
    server.shutdown().await;
}

/// Item 14: `/ban NAME [duration] [reason]` and `/mute … [reason]`: the reason is shown to the
/// person, in `/bans`, at every refused login, in IRC's ban list, and kept in the audit log.
#[tokio::test]
async fn bans_and_mutes_take_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let mut config = with_accounts();
    config.storage.path = db.clone();
    let (server, irc) = TestServer::start_with_irc(Server::new(config)).await;
    let mut m = login_with_password_at(server.addr, "mod", "modpass1").await;
    let mut eve = login_at(server.addr, "eve").await;
    m.expect("eve has joined the chat").await;

    m.send("/ban eve 1d spamming the lobby").await;
    eve.expect("SERVER: You were banned by mod for 1d: spamming the lobby.")
        .await;
    eve.expect_eof().await;
    m.expect("eve has left the chat").await;
    m.expect("SERVER: eve was banned by mod for 1d: spamming the lobby")
        .await;
    m.expect("SERVER: eve is banned by mod for 1d: spamming the lobby.")
        .await;
    // A ban without a duration may still have a reason.
    m.send("/ban mallory flooding").await;
    m.expect("SERVER: mallory is banned by mod until unbanned: flooding.")
        .await;

    let bans = answer_of(&mut m, "/bans").await;
    assert_eq!(
        bans,
        vec![
            "SERVER: Bans (2):".to_owned(),
            "SERVER: eve (name) for 1d: banned by mod: spamming the lobby".to_owned(),
            "SERVER: mallory (name) until unbanned: banned by mod: flooding".to_owned(),
        ]
    );

    let mut again = server.connect().await;
    again.expect_contains("Please enter your username").await;
    again.send("eve").await;
    let refusal = again.next_line().await.unwrap();
    assert!(
        refusal.ends_with(": banned by mod: spamming the lobby."),
        "{refusal}"
    );

    let mut watcher = IrcClient::register(irc, "watcher").await;
    watcher.send("MODE #lobby b").await;
    watcher
        .expect_contains(" 367 watcher #lobby eve!*@* :banned by mod: spamming the lobby")
        .await;

    m.expect("watcher has joined the chat").await;
    let mut bob = login_at(server.addr, "bob").await;
    m.expect("bob has joined the chat").await;
    m.send("/mute bob 10m shouting").await;
    bob.expect("SERVER: bob was muted by mod for 10m: shouting")
        .await;
    let mutes = listing(&mut m, "/mutes", "SERVER: Mutes (").await;
    assert_eq!(mutes[1], "SERVER: bob for 10m: shouting", "{mutes:?}");

    // The audit log keeps each reason (written before the confirmations above came back).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut reasons: Vec<(String, String, String)> = conn
        .prepare("SELECT what, whom, why FROM audit WHERE what IN ('ban', 'mute') ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("ban".into(), "eve".into(), "spamming the lobby".into()),
            ("ban".into(), "mallory".into(), "flooding".into()),
            ("mute".into(), "bob".into(), "shouting".into()),
        ]
    );
    server.shutdown().await;
}

/// A config for report floods: a small outbox (the issue's 64 KiB, which 16 whole reports used
/// to overflow), no exempt addresses, and report bounds of `per_hour`, `per_member`, `total`.
fn report_config(per_hour: usize, per_member: usize, total: usize) -> Config {
    let mut config = without_exempt_addresses();
    config.server.outbox_bytes = 64 * 1024;
    config.moderation.reports_per_hour = per_hour;
    config.moderation.open_reports_per_member = per_member;
    config.moderation.max_open_reports = total;
    config
}

/// Item 4: three hundred reports of ~2 KB each with 20 lines of context cannot cut the
/// moderators off: a text moderator pages through `/reports` and sees every report once; a web
/// moderator logging in gets a bounded panel and a line saying how to see the rest; both stay
/// connected.
#[tokio::test]
async fn a_report_flood_keeps_moderators_connected() {
    const REPORTS: usize = 300;
    let (server, web) =
        TestServer::start_with_web(Server::new(report_config(1000, 1000, 1000))).await;
    let mut m = login_with_password_at(server.addr, "mod", "modpass1").await;
    let mut eve = login_at(server.addr, "eve").await;
    let mut reporter = login_at(server.addr, "reporter").await;
    let long = "x".repeat(900);
    for n in 0..20 {
        eve.send(&format!("{n} {long}")).await;
    }
    eve.send("done").await;
    reporter.expect_contains("eve: done").await;
    // In batches, the moderator reading the alerts as they come (as a client does).
    let reason = "r".repeat(1900);
    for batch in 0..REPORTS / 20 {
        for _ in 0..20 {
            reporter.send(&format!("/report eve {reason}")).await;
        }
        for n in batch * 20 + 1..=batch * 20 + 20 {
            reporter
                .expect_contains(&format!("the moderators have your report (#{n})."))
                .await;
            m.expect_contains(&format!("SERVER: [report #{n}] reporter reported eve"))
                .await;
        }
    }

    // Every report is on exactly one page, and the moderator is still here afterwards.
    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        // The first page as `/reports` alone asks for it (which sent every report at once).
        let command = if page == 1 {
            "/reports".to_owned()
        } else {
            format!("/reports {page}")
        };
        let lines = listing(&mut m, &command, "SERVER: Open reports").await;
        assert!(
            lines[0].starts_with(&format!(
                "SERVER: Open reports ({REPORTS}), page {page} of "
            )),
            "{}",
            lines[0]
        );
        for line in &lines {
            if let Some(rest) = line.strip_prefix("SERVER: #") {
                seen.push(rest.split(' ').next().unwrap().parse::<usize>().unwrap());
            }
        }
        if lines.last().unwrap() != &format!("SERVER: More: /reports {}", page + 1) {
            break;
        }
        page += 1;
    }
    assert!(page > 1, "{REPORTS} reports take several pages");
    assert_eq!(seen, (1..=REPORTS).collect::<Vec<_>>());
    let past = answer_of(&mut m, &format!("/reports {}", page + 1)).await;
    assert_eq!(
        past,
        vec![format!(
            "SERVER: Open reports: there are {page} pages; /reports {page} is the last."
        )]
    );

    // A web moderator logs in: a bounded panel, a line about the rest, still connected.
    let mut panel = WebClient::connect(web).await;
    panel.expect_type("notice").await;
    panel
        .send(json!({"type": "hello", "name": "root", "password": "rootpass1"}))
        .await;
    panel.expect_type("welcome").await;
    let queue = panel.expect_type("queue").await;
    let shown = queue["reports"].as_array().unwrap().len();
    assert!(shown > 0 && shown < REPORTS, "{shown}");
    panel
        .expect_notice(&format!("{} more reports (/reports) wait", REPORTS - shown))
        .await;
    panel.say(None, "/reports 2").await;
    panel.expect_notice("page 2 of").await;
    m.send("still connected").await;
    panel.expect_message("mod", "still connected").await;
    server.shutdown().await;
}

/// Item 4: the hourly limit counts the person (a guest's address, an account), so neither
/// `/nick` nor a reconnect under a new name starts a new count; open reports are bounded per
/// member and in all, with a clear line to the reporter at each bound; resolving one makes room.
#[tokio::test]
async fn report_limits_follow_the_person_and_bound_the_queue() {
    let server = TestServer::with_config(report_config(2, 10, 10)).await;
    let _eve = login_at(server.addr, "eve").await;
    let mut guest = login_at(server.addr, "guest").await;
    guest.send("/report eve one").await;
    guest.expect_contains("have your report (#1)").await;
    guest.send("/nick guest2").await;
    guest.expect("guest is now known as guest2").await;
    guest.send("/report eve two").await;
    guest.expect_contains("have your report (#2)").await;
    guest.send("/nick guest3").await;
    guest.expect("guest2 is now known as guest3").await;
    guest.send("/report eve three").await;
    guest
        .expect("SERVER: You have made 2 reports in the last hour, the most allowed; the moderators have them.")
        .await;
    let mut again = login_at(server.addr, "someone_else").await;
    again.send("/report eve four").await;
    again
        .expect("SERVER: You have made 2 reports in the last hour, the most allowed; the moderators have them.")
        .await;
    server.shutdown().await;

    // At an exempt address (loopback, by default) a guest counts by address too: renaming
    // there does not start afresh.
    let mut config = report_config(2, 10, 10);
    config.admission.exempt = vec!["127.0.0.0/8".into()];
    let server = TestServer::with_config(config).await;
    let _eve = login_at(server.addr, "eve").await;
    let mut guest = login_at(server.addr, "local").await;
    for n in 1..=2 {
        guest.send(&format!("/report eve {n}")).await;
        guest
            .expect_contains(&format!("have your report (#{n})"))
            .await;
        guest.send(&format!("/nick local{n}")).await;
        guest.expect_contains("is now known as").await;
    }
    guest.send("/report eve 3").await;
    guest
        .expect("SERVER: You have made 2 reports in the last hour, the most allowed; the moderators have them.")
        .await;
    server.shutdown().await;

    // Open reports: at most 2 per member, 3 in all.
    let server = TestServer::with_config(report_config(100, 2, 3)).await;
    let mut m2 = login_with_password_at(server.addr, "mod", "modpass1").await;
    let _eve = login_at(server.addr, "eve").await;
    let mut guest = login_at(server.addr, "guest").await;
    for n in 1..=2 {
        guest.send(&format!("/report eve {n}")).await;
        guest
            .expect_contains(&format!("have your report (#{n})"))
            .await;
    }
    guest.send("/report eve 3").await;
    guest
        .expect("SERVER: You have 2 open reports, the most allowed; your report was not taken. Wait until a moderator has dealt with them.")
        .await;
    let mut alice = login_with_password_at(server.addr, "alice", "alicepass").await;
    alice.send("/report eve a").await;
    alice.expect_contains("have your report (#3)").await;
    alice.send("/report eve b").await;
    alice
        .expect("SERVER: The moderators' queue is full (3 open reports); your report was not taken. Try again once they have worked through it.")
        .await;
    m2.send("/resolve 1").await;
    m2.expect_contains("SERVER: Report #1 resolved.").await;
    guest.send("/report eve 4").await;
    guest.expect_contains("have your report (#4)").await;
    server.shutdown().await;
}
