//! The store with the real binary: what survives a restart, a `kill -9`, an upgrade from an
//! older database; bad database files at start-up; `chatpipe audit` and `chatpipe backup`; a
//! full database; passwords kept out of logs and the database.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::binary::{Running, run_to_exit_with, start_with};
use common::{TestClient, login_at, login_with_password_at};
use nix::sys::signal::Signal;

const ROOT_PASSWORD: &str = "rootpass1";
const CAROL_PASSWORD: &str = "carolpass1";

/// The configuration every test here starts from: a database file `chat.db` in the test's
/// directory, an admin `root` from the configuration file, no rate limit, 5 lines of history.
fn config() -> String {
    config_with("")
}

/// [`config`] with `storage` (TOML lines) added to its `[storage]` table.
fn config_with(storage: &str) -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash =
        HASH.get_or_init(|| chatpipe::passwords::hash_password(ROOT_PASSWORD).expect("a hash"));
    format!(
        "[storage]\npath = \"chat.db\"\n{storage}[rate_limit]\nper_second = 0\n[rooms]\nhistory = 5\n\
         [[accounts]]\nname = \"root\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n"
    )
}

fn start(dir: &Path) -> Running {
    start_with(dir, &config(), &["--listen", "127.0.0.1:0"])
}

/// Stops a server with SIGTERM and checks it exits 0; returns its log lines.
fn stop(server: Running) -> Vec<String> {
    server.signal(Signal::SIGTERM);
    let lines: Vec<String> = std::iter::from_fn(|| {
        server
            .lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .ok()
    })
    .collect();
    assert_eq!(server.exit_code(), Some(0));
    lines
}

/// Every log line received so far, without waiting.
fn drain(server: &Running) -> Vec<String> {
    server.lines.try_iter().collect()
}

/// Runs `chatpipe ARGS` in `dir` to its end.
fn chatpipe(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    run_to_exit_with(dir, &config(), args)
}

/// Bans, mutes, an account with a role granted by an admin, room settings and history are all
/// there after a restart; the audit log has every action; no password reaches a log line, the
/// audit log or the database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_kept_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    let mut carol = login_at(server.addr, "carol").await;
    root.expect("carol has joined the chat").await;
    carol.send(&format!("/register {CAROL_PASSWORD}")).await;
    carol
        .expect("SERVER: carol is now registered to you: from now on, log in with your password.")
        .await;
    carol.send("/register again12345").await;
    carol.expect("SERVER: carol is registered already.").await;
    root.send("/role carol moderator").await;
    root.expect("SERVER: carol is now a moderator.").await;
    carol.expect("SERVER: root made you a moderator.").await;
    let bob = login_at(server.addr, "bob").await;
    root.expect("bob has joined the chat").await;
    root.send("/mute bob 1h").await;
    root.expect("SERVER: bob was muted by root for 1h").await;
    root.send("/ban eve 2h").await;
    root.expect("SERVER: eve is banned by root for 2h.").await;
    for n in 1..=3 {
        root.send(&format!("hello {n}")).await;
        root.expect(&format!("root: hello {n}")).await;
    }
    root.send("/join town").await;
    root.expect_contains("You are now in town").await;
    root.expect("root has joined the room").await;
    for command in ["/room keep", "/topic Welcome to town", "/moderated on"] {
        root.send(command).await;
    }
    root.expect_contains("town is now a permanent room (root)")
        .await;
    root.expect("SERVER: root set the topic of town: Welcome to town")
        .await;
    root.expect_contains("town is now moderated by root").await;
    drop((root, carol, bob));
    let mut logs = stop(server);

    let server = start(dir.path());
    let mut eve = TestClient::connect(server.addr).await;
    eve.expect_contains("Please enter your username").await;
    eve.send("eve").await;
    let refusal = eve.next_line().await.unwrap();
    assert!(
        refusal.starts_with("SERVER: Connection refused: you are banned for another")
            && refusal.contains("banned by root"),
        "{refusal}"
    );
    // carol's name needs her password now, and she is a moderator.
    let mut carol = login_with_password_at(server.addr, "carol", CAROL_PASSWORD).await;
    carol.send("/help").await;
    carol.expect_contains("/kick NAME").await;
    let mut bob = login_at(server.addr, "bob").await;
    bob.send("let me speak").await;
    bob.expect_contains("You are muted for another").await;
    // History is replayed to a newcomer in the lobby.
    let mut dan = TestClient::connect(server.addr).await;
    dan.expect_contains("Please enter your username").await;
    dan.send("dan").await;
    dan.expect_joined("dan").await;
    dan.expect("SERVER: Recent messages in lobby:").await;
    for n in 1..=3 {
        dan.expect(&format!("[history] root: hello {n}")).await;
    }
    dan.expect("SERVER: End of history").await;
    dan.send("/history 2").await;
    dan.expect("SERVER: History of lobby (2 lines):").await;
    dan.expect("[history] root: hello 2").await;
    dan.expect("[history] root: hello 3").await;
    dan.expect("SERVER: End of history").await;
    // The kept room, its topic and its moderation.
    dan.send("/rooms").await;
    dan.expect_contains("town (0)").await;
    dan.send("/join town").await;
    dan.expect_contains("You are now in town").await;
    dan.expect("dan has joined the room").await;
    dan.expect("SERVER: Topic for town: Welcome to town").await;
    dan.send("may I?").await;
    dan.expect("SERVER: town is moderated: only moderators and voiced users may speak.")
        .await;
    drop((carol, bob, dan, eve));
    logs.extend(stop(server));

    let (code, audit) = chatpipe(dir.path(), &["audit", "--db", "chat.db"]);
    assert_eq!(code, Some(0), "{audit}");
    for action in [
        "root role carol: moderator",
        "root mute bob until",
        "root ban eve until",
        "root keep room town",
        "root topic town: Welcome to town",
        "root moderated town",
    ] {
        assert!(audit.contains(action), "{action:?} missing from\n{audit}");
    }
    let (code, json) = chatpipe(
        dir.path(),
        &[
            "audit", "--db", "chat.db", "--json", "--who", "root", "--since", "1h",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    let entries: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(entries.len(), 6, "{json}");
    assert!(
        entries
            .iter()
            .all(|e| e["who"] == "root" && e["time"].is_string())
    );
    let ban = entries.iter().find(|e| e["what"] == "ban").unwrap();
    assert_eq!(ban["whom"], "eve");
    assert!(ban["until"].is_string());

    for secret in [ROOT_PASSWORD, CAROL_PASSWORD] {
        assert!(
            !logs.iter().any(|l| l.contains(secret)),
            "a password in the log"
        );
        assert!(!audit.contains(secret));
        let db = std::fs::read(dir.path().join("chat.db")).unwrap();
        let wal = std::fs::read(dir.path().join("chat.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a password in the database"
            );
        }
    }
}

/// `kill -9` while a client floods the room and a moderator bans: after a restart the database
/// opens, every ban that was confirmed is there, and the history kept is an unbroken run of the
/// flood's first lines (only the newest, unwritten ones may be missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_confirmed_ban() {
    const BANS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    let mut flooder = login_at(server.addr, "flooder").await;
    root.expect("flooder has joined the chat").await;
    let mut writer = flooder.take_writer();
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for n in 0..20_000 {
            if writer
                .write_all(format!("flood {n}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        writer
    });
    let reader = tokio::spawn(async move { while flooder.next_line().await.is_some() {} });
    // The flood's first line has reached the hub before the first ban; the store writes in the
    // order it is given work, so once a ban is confirmed that line is on disk too, and the
    // history after the restart cannot be empty.
    root.expect_contains("flooder: flood 0").await;
    for n in 0..BANS {
        root.send(&format!("/ban troll{n} 1d")).await;
        root.expect_contains(&format!("SERVER: troll{n} is banned by root for 1d."))
            .await;
    }
    server.signal(Signal::SIGKILL);
    assert_eq!(server.exit_code(), None, "killed by a signal");
    drop(root);
    let _ = flood.await;
    reader.abort();

    let server = start(dir.path());
    let mut check = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    check.send("/bans").await;
    check
        .expect_contains(&format!("SERVER: Bans ({BANS}):"))
        .await;
    for _ in 0..BANS {
        // `1d`, or `23h 59m 59s` once a second has passed since the ban on a slow machine.
        let line = check.expect_contains(": banned by root").await;
        assert!(line.contains("(name) for "), "{line}");
    }
    check.send("/history 200").await;
    let first = check.next_line().await.unwrap();
    assert!(first.starts_with("SERVER: History of lobby ("), "{first}");
    let mut last: Option<usize> = None;
    loop {
        let line = check.next_line().await.unwrap();
        if line == "SERVER: End of history" {
            break;
        }
        let n: usize = line
            .strip_prefix("[history] flooder: flood ")
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        if let Some(last) = last {
            assert_eq!(n, last + 1, "a gap in the kept history");
        }
        last = Some(n);
    }
    assert!(last.is_some(), "no line of the flood was kept");
    drop(check);
    stop(server);
}

/// A database made by the previous schema version (1) opens, is upgraded in place, and keeps
/// what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut conn = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        chatpipe::store::create_at_version(&mut conn, 1).unwrap();
        conn.execute(
            "INSERT INTO bans (name_key, name, addr, until, reason, created_at) \
             VALUES ('eve', 'eve', NULL, NULL, 'banned by an old moderator', 0)",
            [],
        )
        .unwrap();
    }
    let server = start(dir.path());
    let mut eve = TestClient::connect(server.addr).await;
    eve.expect_contains("Please enter your username").await;
    eve.send("eve").await;
    eve.expect_contains("banned by an old moderator").await;
    drop(eve);
    stop(server);
    let conn = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, chatpipe::store::SCHEMA_VERSION);
}

/// Start-up stops with one line naming the file and the cause when the database is locked by
/// another chatpipe, is not a database, was made by a newer chatpipe, or is a directory.
#[test]
fn bad_database_files_stop_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    let (code, out) = chatpipe(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{out}");
    assert_one_error(&out, "chat.db: locked by another chatpipe");
    stop(running);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chat.db"), vec![b'x'; 8192]).unwrap();
    let (code, out) = chatpipe(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{out}");
    assert_one_error(&out, "chat.db: file is not a database");

    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let (code, out) = chatpipe(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{out}");
    assert_one_error(&out, "newer than this chatpipe knows");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("chat.db")).unwrap();
    let (code, out) = chatpipe(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{out}");
    assert_one_error(&out, "chat.db: is a directory");
}

fn assert_one_error(output: &str, needle: &str) {
    let errors: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("chatpipe:"))
        .collect();
    assert_eq!(errors.len(), 1, "{output}");
    assert!(errors[0].contains(needle), "{needle:?} not in {output}");
    assert!(!output.contains("panicked"), "{output}");
}

/// `chatpipe backup` copies a running server's database consistently; the copy opens and holds
/// what was confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    root.send("/ban eve").await;
    root.expect("SERVER: eve is banned by root until unbanned.")
        .await;
    let (code, out) = chatpipe(dir.path(), &["backup", "copy.db", "--db", "chat.db"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("backed up to copy.db"), "{out}");
    let (code, out) = chatpipe(dir.path(), &["backup", "copy.db", "--db", "chat.db"]);
    assert_eq!(
        code,
        Some(1),
        "an existing file is never overwritten: {out}"
    );
    drop(root);
    stop(server);
    let (code, audit) = chatpipe(dir.path(), &["audit", "--db", "copy.db"]);
    assert_eq!(code, Some(0), "{audit}");
    assert!(audit.contains("root ban eve"), "{audit}");
}

/// At `[storage] max_size` the oldest history is deleted to make room (logged), and chat and
/// its history go on; once no history is left to give up, a ban that cannot be saved is
/// answered with an error, not a false confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_is_an_error_not_a_false_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with("max_size = 131072\nhistory_keep = 1000000\n");
    let server = start_with(dir.path(), &config, &["--listen", "127.0.0.1:0"]);
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    let filler = "x".repeat(400);
    let mut full = false;
    for batch in 0..50 {
        for n in 0..50 {
            root.send(&format!("{batch}-{n} {filler}")).await;
        }
        root.expect_contains(&format!("root: {batch}-49 ")).await;
        root.send("/history 1").await;
        root.expect_contains("History of lobby").await;
        let logged = drain(&server);
        assert!(
            !logged
                .iter()
                .any(|l| l.contains("chat history could not be saved")),
            "{logged:#?}"
        );
        if logged.iter().any(|l| l.contains("deleted to make room")) {
            full = true;
            break;
        }
    }
    assert!(full, "the database never filled up");
    root.send("still chatting").await;
    root.expect_contains("root: still chatting").await;
    // Ban name after name until the database refuses one: each ban is either confirmed or
    // answered with the error, never both, and after a restart exactly the confirmed ones hold.
    let mut confirmed = 0;
    let mut refused = false;
    for n in 0..5000 {
        root.send(&format!("/ban troll{n} 1d")).await;
        let answer = loop {
            let line = root.next_line().await.expect("still connected");
            if line.starts_with("SERVER: That could not be saved")
                || line.starts_with(&format!("SERVER: troll{n} is banned"))
            {
                break line;
            }
        };
        if answer.starts_with("SERVER: That could not be saved") {
            assert!(answer.contains("full"), "{answer}");
            refused = true;
            break;
        }
        confirmed += 1;
    }
    assert!(refused, "no ban was refused by the full database");
    drop(root);
    stop(server);

    let server = start_with(dir.path(), &config, &["--listen", "127.0.0.1:0"]);
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    root.send("/bans").await;
    root.expect_contains(&format!("SERVER: Bans ({confirmed}):"))
        .await;
    drop(root);
    stop(server);
}

/// `/password` and `/unregister` check the current password; a configured account is left to
/// the operator; an account in both the configuration file and the store is reported at
/// start-up, and the configuration file wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_commands_and_configured_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut dave = login_at(server.addr, "dave").await;
    dave.send("/register short").await;
    dave.expect("SERVER: A password needs at least 8 characters (and no spaces).")
        .await;
    dave.send("/register davepass1").await;
    dave.expect_contains("dave is now registered to you").await;
    dave.send("/password wrongpass newpass12").await;
    dave.expect("SERVER: Wrong password.").await;
    dave.send("/password davepass1 newpass12").await;
    dave.expect("SERVER: Your password is changed.").await;
    dave.send("/unregister davepass1").await;
    dave.expect("SERVER: Wrong password.").await;
    drop(dave);
    let mut dave = login_with_password_at(server.addr, "dave", "newpass12").await;
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    dave.expect("root has joined the chat").await;
    root.send("/password rootpass1 another12").await;
    root.expect_contains("is set in the server's configuration file")
        .await;
    root.send("/role root user").await;
    root.expect("SERVER: root's role is set in the server's configuration file.")
        .await;
    dave.send("/role root user").await;
    dave.expect("SERVER: Permission denied").await;
    drop((dave, root));
    stop(server);

    // dave is now also in the configuration file, with another password: it wins, and the
    // conflict is logged.
    let hash = chatpipe::passwords::hash_password("configured1").unwrap();
    let config = format!(
        "{}[[accounts]]\nname = \"dave\"\npassword_hash = \"{hash}\"\n",
        config()
    );
    let server = start_with(dir.path(), &config, &["--listen", "127.0.0.1:0"]);
    assert!(
        server.start_up.iter().any(|l| l.contains(
            "an account is both in the configuration file and in the store; the configuration file wins"
        ) && l.contains("dave")),
        "{:#?}",
        server.start_up
    );
    let mut dave = login_with_password_at(server.addr, "dave", "configured1").await;
    dave.send("/unregister newpass12").await;
    dave.expect_contains("is set in the server's configuration file")
        .await;
    drop(dave);
    stop(server);
}

/// Held lines and open reports survive a restart; after it a moderator approves the line and it
/// reaches the room; the audit log has the approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_moderation_queue_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("filters")).unwrap();
    std::fs::write(
        dir.path().join("filters/review.toml"),
        "action = \"hold\"\nwords = [\"darn\"]\n",
    )
    .unwrap();
    let server = start(dir.path());
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    let mut alice = login_at(server.addr, "alice").await;
    alice.send("darn it").await;
    alice
        .expect("SERVER: Your message is held for review by a moderator.")
        .await;
    root.expect_contains("[held #1] alice in lobby (review): darn it")
        .await;
    alice.send("/report root too strict").await;
    alice.expect_contains("have your report (#1)").await;
    drop((root, alice));
    stop(server);

    let server = start(dir.path());
    let mut root = login_with_password_at(server.addr, "root", ROOT_PASSWORD).await;
    root.send("/held").await;
    root.expect_contains("SERVER: Held lines (1):").await;
    root.expect_contains("#1 alice in lobby (review)").await;
    root.send("/reports").await;
    root.expect_contains("SERVER: Open reports (1):").await;
    let mut bob = login_at(server.addr, "bob").await;
    root.send("/approve 1").await;
    bob.expect("alice: darn it").await;
    root.expect_contains("Held line #1 approved").await;
    // New lines get new numbers, never a reused one.
    bob.send("darn").await;
    root.expect_contains("[held #2] bob in lobby (review): darn")
        .await;
    drop((root, bob));
    stop(server);
    let (code, audit) = chatpipe(dir.path(), &["audit", "--db", "chat.db"]);
    assert_eq!(code, Some(0), "{audit}");
    assert!(audit.contains("root approve alice: #1 (review)"), "{audit}");
}
