//! The moderation queue over real TCP: held lines approved and denied by a moderator, reports
//! with their recorded context, and every new command refused to ordinary users.

mod common;

use chatpipe::{Config, Server};
use common::{TestClient, TestServer, login_with_password_at};

const HOLD: &str =
    "action = \"hold\"\nwords = [\"darn\"]\n\n[[test]]\ninput = \"darn it\"\nexpect = \"held\"\n";

fn config() -> Config {
    common::config_with_moderator()
}

async fn start(config: Config) -> (TestServer, tempfile::TempDir) {
    let dir = common::dir_with(&[("review.toml", HOLD)]);
    let server = Server::new(config).filters_dir(dir.path()).unwrap();
    (TestServer::start(server).await, dir)
}

/// A held line reaches nobody until a moderator approves it; then the room gets it as the
/// sender's line. A denied one is dropped and its sender told why.
#[tokio::test]
async fn a_moderator_approves_and_denies_held_lines() {
    let (server, _dir) = start(config()).await;
    let mut moderator = login_with_password_at(server.addr, "mod", "modpass12").await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    moderator.expect("alice has joined the chat").await;
    moderator.expect("bob has joined the chat").await;
    alice.expect("bob has joined the chat").await;

    alice.send("darn it").await;
    alice
        .expect("SERVER: Your message is held for review by a moderator.")
        .await;
    moderator
        .expect("SERVER: [held #1] alice in lobby (review): darn it")
        .await;
    bob.send("meanwhile").await;
    bob.expect("bob: meanwhile").await;
    moderator.expect("bob: meanwhile").await;
    moderator.send("/held").await;
    moderator.expect("SERVER: Held lines (1):").await;
    let entry = moderator.next_line().await.unwrap();
    assert!(
        entry.starts_with("SERVER: #1 alice in lobby (review), ")
            && entry.ends_with(" ago: darn it"),
        "{entry}"
    );
    moderator.send("/approve 1").await;
    // In the room's order at the time of approval: after "meanwhile".
    bob.expect("alice: darn it").await;
    alice.expect("bob: meanwhile").await;
    alice.expect("alice: darn it").await;
    moderator.expect("alice: darn it").await;
    moderator
        .expect("SERVER: Held line #1 approved and delivered to lobby.")
        .await;

    alice.send("darn again").await;
    moderator
        .expect("SERVER: [held #2] alice in lobby (review): darn again")
        .await;
    moderator.send("/deny 2 please keep it civil").await;
    moderator.expect("SERVER: Held line #2 denied.").await;
    alice
        .expect("SERVER: Your message is held for review by a moderator.")
        .await;
    alice
        .expect("SERVER: Your message held for review was not approved: please keep it civil.")
        .await;
    moderator.send("/approve 2").await;
    moderator
        .expect("SERVER: No held line #2 is waiting.")
        .await;
    // bob never saw the denied line.
    bob.send("end").await;
    bob.expect("bob: end").await;

    let metrics = server_metrics(&server);
    for series in [
        "chatpipe_moderation_queue_total{filter=\"review\",outcome=\"held\"} 2",
        "chatpipe_moderation_queue_total{filter=\"review\",outcome=\"approved\"} 1",
        "chatpipe_moderation_queue_total{filter=\"review\",outcome=\"denied\"} 1",
        "chatpipe_held_lines 0",
        "chatpipe_hold_decision_seconds_count 2",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
    server.shutdown().await;
}

fn server_metrics(server: &TestServer) -> String {
    server.metrics.as_ref().expect("metrics").encode()
}

/// A report records the last lines the reported member said in the room; moderators see it,
/// list it with its lines and resolve it; reports are limited per hour.
#[tokio::test]
async fn reports_carry_their_context() {
    let mut config = config();
    config.moderation.reports_per_hour = 2;
    let (server, _dir) = start(config).await;
    let mut moderator = login_with_password_at(server.addr, "mod", "modpass12").await;
    let mut eve = server.login("eve").await;
    let mut alice = server.login("alice").await;
    for n in 1..=3 {
        eve.send(&format!("spam {n}")).await;
        alice.expect(&format!("eve: spam {n}")).await;
    }
    alice.send("/report eve spamming the lobby").await;
    alice
        .expect("SERVER: Thank you; the moderators have your report (#1).")
        .await;
    moderator
        .expect_contains("SERVER: [report #1] alice reported eve in lobby: spamming the lobby (3 lines; /reports shows them)")
        .await;
    moderator.send("/reports").await;
    moderator.expect("SERVER: Open reports (1):").await;
    let header = moderator.next_line().await.unwrap();
    assert!(
        header.starts_with("SERVER: #1 alice reported eve in lobby, "),
        "{header}"
    );
    for n in 1..=3 {
        moderator.expect(&format!("SERVER:   eve: spam {n}")).await;
    }
    moderator.send("/resolve 1 warned eve").await;
    moderator.expect("SERVER: Report #1 resolved.").await;
    moderator.send("/reports").await;
    moderator.expect("SERVER: No reports are open.").await;
    alice.send("/report eve again").await;
    alice.expect_contains("have your report (#2)").await;
    alice.send("/report eve and again").await;
    alice
        .expect("SERVER: You have made 2 reports in the last hour, the most allowed; the moderators have them.")
        .await;
    alice.send("/report alice").await;
    alice.expect("SERVER: You cannot report yourself.").await;
    server.shutdown().await;
}

/// Every new moderator command is refused to an ordinary user.
#[tokio::test]
async fn users_cannot_work_the_queue() {
    let (server, _dir) = start(config()).await;
    let mut user: TestClient = server.login("plain").await;
    for command in [
        "/held",
        "/approve 1",
        "/deny 1",
        "/reports",
        "/resolve 1 done",
    ] {
        user.send(command).await;
        user.expect("SERVER: Permission denied").await;
    }
    server.shutdown().await;
}
