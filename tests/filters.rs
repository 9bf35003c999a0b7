//! Filter files: rule kinds, actions, evasions, allow-lists, loading errors, reload and the
//! `test-filters` command.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chatpipe::filters::{
    FilterChain, FilterFile, FilterRules, FilterSet, Message, Outcome, load_dir,
};
use chatpipe::testing::{Fixture, describe, run_pipeline};
use chatpipe::{ClientId, ClientInfo, Config, PipelineBuilder, Role, Server};
use common::irc::IrcClient;
use common::web::WebClient;
use common::{TestServer, test_config};

/// Judges `text` with the filter described by `toml` (a user `alice` in `lobby` unless given).
fn judge_as(toml: &str, text: &str, role: Role, room: &str) -> (Outcome, Vec<(String, String)>) {
    let loaded = FilterFile::load(Path::new("/virtual/f.toml"), toml).expect("a valid filter");
    let chain = FilterChain::new(vec![loaded.filter]);
    let sender = ClientInfo {
        name: Arc::from("alice"),
        room: Arc::from(room),
        role,
    };
    let judged = chain.judge(&Message::new(
        text,
        &sender,
        ClientId(1),
        tokio::time::Instant::now(),
    ));
    (judged.outcome, judged.warnings)
}

fn judge(toml: &str, text: &str) -> Outcome {
    judge_as(toml, text, Role::User, "lobby").0
}

fn delivered(text: &str) -> Outcome {
    Outcome::Deliver(text.to_owned())
}

/// Words: whole-word, wildcards, and every evasion trick.
#[test]
fn words_resist_evasion() {
    let f = r#"action = "mask"
words = ["darn", "heck*"]"#;
    assert_eq!(judge(f, "darn it"), delivered("**** it"));
    assert_eq!(judge(f, "DaRn it"), delivered("**** it"), "case");
    assert_eq!(judge(f, "dаrn"), delivered("****"), "Cyrillic а");
    assert_eq!(judge(f, "d4rn"), delivered("****"), "substitution");
    assert_eq!(
        judge(f, "daaaarn"),
        delivered("*******"),
        "repeated letters"
    );
    assert_eq!(
        judge(f, "d.a.r.n"),
        delivered("*******"),
        "split by symbols"
    );
    assert_eq!(judge(f, "d a r n"), delivered("*******"), "split by spaces");
    assert_eq!(judge(f, "dárn"), delivered("****"), "accents");
    assert_eq!(judge(f, "ｄａｒｎ"), delivered("****"), "full width");
    assert_eq!(
        judge(f, "heckin good"),
        delivered("****** good"),
        "wildcard"
    );
    assert_eq!(
        judge(f, "darned darning"),
        delivered("darned darning"),
        "whole words only"
    );
}

/// Allowed phrases never match, even where a wildcard or pattern would.
#[test]
fn allow_list_wins() {
    let f = r#"action = "mask"
words = ["*cunt*"]
patterns = ['cock\w*']
allow = ["scunthorpe", "cockpit"]"#;
    assert_eq!(judge(f, "Scunthorpe"), delivered("Scunthorpe"));
    assert_eq!(judge(f, "the cockpit"), delivered("the cockpit"));
    assert_eq!(judge(f, "cocky"), delivered("*****"));
}

/// Patterns are case-insensitive regular expressions over the text as written.
#[test]
fn patterns_match() {
    let f = r#"action = "block"
patterns = ['\bfree\s+v-?bucks\b']"#;
    assert!(matches!(
        judge(f, "get FREE vbucks"),
        Outcome::Blocked { .. }
    ));
    assert_eq!(judge(f, "free bucks"), delivered("free bucks"));
}

/// Links: blocked unless on an allowed domain.
#[test]
fn links_rule() {
    let f = r#"action = "block"
message = "No links."
[links]
allow_domains = ["example.org"]"#;
    assert_eq!(
        judge(f, "go to http://spam.biz"),
        Outcome::Blocked {
            filter: "f".into(),
            notice: "No links.".into()
        }
    );
    assert_eq!(
        judge(f, "see docs.example.org/x"),
        delivered("see docs.example.org/x")
    );
}

/// Shouting: masked lines are lower-cased; short or mixed lines pass.
#[test]
fn shouting_rule() {
    let f = r#"action = "mask"
[shouting]
min_letters = 8"#;
    assert_eq!(judge(f, "STOP DOING THAT"), delivered("stop doing that"));
    assert_eq!(judge(f, "STOP"), delivered("STOP"));
}

/// Repetition: the third copy within the window is caught; "mask" blocks it.
#[test]
fn repetition_rule() {
    let f = r#"action = "mask"
[repetition]
window = "10s"
max_repeats = 2"#;
    let loaded = FilterFile::load(Path::new("/virtual/rep.toml"), f).unwrap();
    let chain = FilterChain::new(vec![loaded.filter]);
    let sender = ClientInfo {
        name: Arc::from("alice"),
        room: Arc::from("lobby"),
        role: Role::User,
    };
    let at = tokio::time::Instant::now();
    let outcomes: Vec<Outcome> = ["spam", "SPAM!", "s p a m"]
        .iter()
        .map(|text| {
            chain
                .judge(&Message::new(text, &sender, ClientId(7), at))
                .outcome
        })
        .collect();
    assert_eq!(outcomes[0], delivered("spam"));
    assert_eq!(outcomes[1], delivered("SPAM!"));
    assert!(
        matches!(outcomes[2], Outcome::Blocked { .. }),
        "{outcomes:?}"
    );
}

/// Every action, and exemptions by role and room.
#[test]
fn actions_and_exemptions() {
    let rule = "words = [\"darn\"]\nexempt_roles = [\"moderator\"]\nexempt_rooms = [\"pub\"]\n";
    let with = |action: &str| format!("action = \"{action}\"\nmute_for = \"5m\"\n{rule}");
    assert!(
        matches!(judge(&with("block"), "darn"), Outcome::Blocked { notice, .. } if notice.contains("blocked by the f filter"))
    );
    assert!(matches!(
        judge(&with("silent"), "darn"),
        Outcome::Silenced { .. }
    ));
    assert!(matches!(
        judge(&with("kick"), "darn"),
        Outcome::Kicked { .. }
    ));
    assert!(matches!(
        judge(&with("mute"), "darn"),
        Outcome::Muted { duration, .. } if duration == Duration::from_secs(300)
    ));
    let (outcome, warnings) = judge_as(&with("warn"), "darn", Role::User, "lobby");
    assert_eq!(outcome, delivered("darn"));
    assert_eq!(warnings, [("f".to_owned(), "listed word".to_owned())]);
    let (outcome, _) = judge_as(&with("block"), "darn", Role::Moderator, "lobby");
    assert_eq!(outcome, delivered("darn"), "role exemption");
    // Room exemptions judge the room a line goes to, not the sender's: this is checked through
    // each door, where the room is worked out, by `exempt_rooms_judge_the_room_a_line_is_sent_to_*`
    // and `exempt_rooms_never_exempt_a_private_message`. Here, the message's own room decides.
    let sender = ClientInfo {
        name: Arc::from("alice"),
        room: Arc::from("pub"),
        role: Role::User,
    };
    let loaded = FilterFile::load(Path::new("/virtual/f.toml"), &with("block")).unwrap();
    let chain = FilterChain::new(vec![loaded.filter]);
    let judged = |room| {
        let message = Message::new("darn", &sender, ClientId(1), tokio::time::Instant::now());
        chain.judge(&message.in_room(room)).outcome
    };
    assert_eq!(judged(Some("pub")), delivered("darn"), "room exemption");
    assert!(
        matches!(judged(Some("lobby")), Outcome::Blocked { .. }),
        "a sender in pub sending to lobby is judged for lobby"
    );
    assert!(
        matches!(judged(None), Outcome::Blocked { .. }),
        "a private message is in no room"
    );
}

/// A filters directory blocking `vbucks` everywhere but `trading`.
fn scam_filter() -> tempfile::TempDir {
    common::dir_with(&[(
        "25-scam.toml",
        "action = \"block\"\nmessage = \"That looks like a scam.\"\nwords = [\"vbucks\"]\nexempt_rooms = [\"trading\"]\n",
    )])
}

/// IRC: after `JOIN #trading` (an exempt room), a `PRIVMSG #lobby` is still judged for the
/// lobby and refused, while the same line to `#trading` is delivered. (The filters once judged
/// the room the sender joined last.)
#[tokio::test]
async fn exempt_rooms_judge_the_room_a_line_is_sent_to_irc() {
    let dir = scam_filter();
    let server = Server::new(test_config()).filters_dir(dir.path()).unwrap();
    let (server, irc) = TestServer::start_with_irc(server).await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;
    bob.expect("carol has joined the chat").await;
    carol.send("/join trading").await;
    carol.expect_contains("You are now in trading.").await;
    bob.expect("carol has left the room").await;
    let mut alice = IrcClient::register(irc, "alice").await;
    bob.expect("alice has joined the chat").await;
    alice.join("trading").await;
    carol.expect_contains("alice has joined the room").await;

    alice.send("PRIVMSG #lobby :buy vbucks").await;
    let refused = alice.expect_contains(" 404 alice #lobby :").await;
    assert!(refused.contains("That looks like a scam."), "{refused}");
    alice.send("PRIVMSG #trading :buy vbucks").await;
    carol.expect("alice: buy vbucks").await;
    alice.send("PRIVMSG #lobby :hello").await;
    // Lines reach bob in the order sent: had the first been delivered, it would come first.
    bob.expect("alice: hello").await;
    server.shutdown().await;
}

/// The web door: a line naming `lobby` from a member who joined `trading` last is judged for
/// the lobby.
#[tokio::test]
async fn exempt_rooms_judge_the_room_a_line_is_sent_to_web() {
    let dir = scam_filter();
    let server = Server::new(test_config()).filters_dir(dir.path()).unwrap();
    let (server, web) = TestServer::start_with_web(server).await;
    let mut bob = server.login("bob").await;
    let mut alice = WebClient::login(web, "alice").await;
    bob.expect("alice has joined the chat").await;
    alice.say(None, "/join trading").await;
    alice
        .expect_where("join trading", |v| {
            v["type"] == "joined" && v["room"] == "trading"
        })
        .await;

    alice.say(Some("lobby"), "buy vbucks").await;
    let refused = alice
        .expect_where("blocked", |v| v["code"] == "blocked")
        .await;
    assert_eq!(refused["text"], "That looks like a scam.");
    assert_eq!(refused["room"], "lobby");
    alice.say(Some("trading"), "buy vbucks").await;
    alice.expect_message("alice", "buy vbucks").await;
    alice.say(Some("lobby"), "hello").await;
    bob.expect("alice: hello").await;
    server.shutdown().await;
}

/// The text door, where a line names no room: `/join lobby` and a line pasted behind it (so the
/// line reaches the filters before the hub has moved its sender out of `trading`) are judged
/// for the lobby, every time.
#[tokio::test]
async fn exempt_rooms_judge_the_room_a_line_is_sent_to_text() {
    let dir = scam_filter();
    let server = Server::new(test_config()).filters_dir(dir.path()).unwrap();
    let server = TestServer::start(server).await;
    let mut bob = server.login("bob").await;
    let mut alice = server.login("alice").await;
    bob.expect("alice has joined the chat").await;
    alice.send("/join trading").await;
    alice.expect_contains("You are now in trading.").await;
    alice.send("vbucks for sale").await;
    alice.expect_contains("alice: vbucks for sale").await;

    for _ in 0..5 {
        alice
            .send_raw(b"/join lobby\nbuy vbucks\n/join trading\n")
            .await;
        alice.expect_contains("You are now in lobby.").await;
        alice.expect_contains("That looks like a scam.").await;
        alice.expect_contains("You are now in trading.").await;
    }
    alice.send("/join lobby").await;
    alice.expect_contains("You are now in lobby.").await;
    alice.send("done").await;
    loop {
        let line = bob.next_line().await.expect("bob's connection is open");
        assert!(!line.contains("vbucks"), "reached the lobby: {line}");
        if line == "alice: done" {
            break;
        }
    }
    server.shutdown().await;
}

/// A private message is in no room: being in an exempt room does not exempt it.
#[tokio::test]
async fn exempt_rooms_never_exempt_a_private_message() {
    let dir = scam_filter();
    let server = Server::new(test_config()).filters_dir(dir.path()).unwrap();
    let server = TestServer::start(server).await;
    let mut bob = server.login("bob").await;
    let mut alice = server.login("alice").await;
    bob.expect("alice has joined the chat").await;
    alice.send("/join trading").await;
    alice.expect_contains("You are now in trading.").await;
    bob.expect("alice has left the room").await;

    alice.send("/msg bob buy vbucks").await;
    alice
        .expect_contains("SERVER: That looks like a scam.")
        .await;
    alice.send("/msg bob hello").await;
    bob.expect("[PM from alice] hello").await;
    server.shutdown().await;
}

/// Errors in several files are all reported, each with file, line and column.
#[test]
fn load_errors_name_file_line_and_column() {
    let dir = common::dir_with(&[
        ("a.toml", "action = \"mask\"\nwords = [\"ok\"]\nbogus = 1\n"),
        (
            "b.toml",
            "action = \"mute\"\npatterns = [\"fine\", \"(unclosed\"]\n",
        ),
        ("c.toml", "words_file = \"missing.txt\"\n"),
    ]);
    let errors = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        errors.contains("a.toml:3:1:") && errors.contains("bogus"),
        "{errors}"
    );
    assert!(
        errors.contains("b.toml:1:10:") && errors.contains("mute_for"),
        "{errors}"
    );
    assert!(
        errors.contains("b.toml:2:21:") && errors.contains("bad pattern"),
        "{errors}"
    );
    assert!(
        errors.contains("c.toml:1:14:") && errors.contains("missing.txt"),
        "{errors}"
    );
}

/// Files apply in name order; disabled files are loaded (and tested) but do not run.
#[test]
fn files_apply_in_name_order_and_can_be_disabled() {
    let dir = common::dir_with(&[
        ("20-b.toml", "action = \"mask\"\nwords = [\"b\"]\n"),
        ("10-a.toml", "action = \"mask\"\nwords = [\"a\"]\n"),
        (
            "30-c.toml",
            "enabled = false\naction = \"mask\"\nwords = [\"c\"]\n",
        ),
    ]);
    let set = FilterSet::new();
    let rules = FilterRules::load(dir.path(), set.clone()).unwrap();
    assert_eq!(rules.reload().unwrap(), ["10-a", "20-b"]);
    assert_eq!(set.current().names(), ["10-a", "20-b"]);
}

/// A reload swaps the rules; a broken directory keeps the old rules running.
#[tokio::test]
async fn reload_swaps_rules_and_survives_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("words.toml");
    std::fs::write(&file, "action = \"mask\"\nwords = [\"darn\"]\n").unwrap();
    let server = Server::new(test_config()).filters_dir(dir.path()).unwrap();
    let rules = server.filter_rules().unwrap();
    let server = TestServer::start(server).await;
    let mut alice = server.login("alice").await;

    alice.send("darn heck").await;
    alice.expect("alice: **** heck").await;

    std::fs::write(&file, "action = \"mask\"\nwords = [\"heck\"]\n").unwrap();
    rules.reload().unwrap();
    alice.send("darn heck").await;
    alice.expect("alice: darn ****").await;

    std::fs::write(&file, "action = \"mask\"\nwords = [\"heck\"\n").unwrap();
    let errors = rules.reload().unwrap_err().to_string();
    assert!(errors.contains("words.toml:2:"), "{errors}");
    alice.send("darn heck").await;
    alice.expect("alice: darn ****").await;
    server.shutdown().await;
}

/// Reloading over and over during a flood loses and duplicates nothing, and each line is judged
/// wholly by one rule set: the set is two files that change together, so a line judged by half
/// of the old set and half of the new would show it. Both sets must have judged some lines,
/// which proves reloads happened during the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_racing_a_flood_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let write_set = |first: &str, second: &str| {
        std::fs::write(
            dir.path().join("10-a.toml"),
            format!("action = \"mask\"\nwords = [\"{first}\"]\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("20-b.toml"),
            format!("action = \"mask\"\nwords = [\"{second}\"]\n"),
        )
        .unwrap();
    };
    write_set("alpha", "gamma");
    let mut config = Config::default();
    config.rate_limit.per_second = 0;
    config.pipeline.workers = 2;
    let builder = PipelineBuilder::standard(&config);
    let rules = FilterRules::load(dir.path(), builder.filters().clone()).unwrap();
    let pipeline = builder.build().unwrap();

    const LINES: usize = 20_000;
    let mut text = String::new();
    for n in 0..LINES {
        text.push_str(&format!("user{}> {n} alpha beta gamma delta\n", n % 7));
    }
    let fixture = Fixture::parse(&text).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloader = {
        let done = done.clone();
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let (first, second) = if i % 2 == 0 {
                    ("beta", "delta")
                } else {
                    ("alpha", "gamma")
                };
                for (file, word) in [("10-a.toml", first), ("20-b.toml", second)] {
                    std::fs::write(
                        dir.join(file),
                        format!("action = \"mask\"\nwords = [\"{word}\"]\n"),
                    )
                    .unwrap();
                }
                rules.reload().unwrap();
                i += 1;
            }
            i
        })
    };
    let out = run_pipeline(pipeline, fixture.stream()).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reloads = reloader.await.unwrap();
    assert!(reloads > 0);
    assert_eq!(out.len(), LINES, "nothing lost or duplicated");
    let (mut old_set, mut new_set) = (0, 0);
    let mut numbers: Vec<usize> = out
        .iter()
        .map(|e| {
            let line = describe(e);
            let text = line.split_once(": ").unwrap().1;
            if text.ends_with(" ***** beta ***** delta") {
                old_set += 1;
            } else if text.ends_with(" alpha **** gamma *****") {
                new_set += 1;
            } else {
                panic!("judged by a mix of rule sets: {text}");
            }
            text.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(
        old_set > 0 && new_set > 0,
        "no reload took effect during the flood ({old_set} old, {new_set} new)"
    );
    numbers.sort_unstable();
    assert_eq!(numbers, (0..LINES).collect::<Vec<_>>());
}

/// Mute and kick actions over TCP: a muted sender is refused until the mute ends; a kicked one
/// is disconnected with the filter's message and the room is told.
#[tokio::test]
async fn mute_and_kick_over_tcp() {
    let dir = common::dir_with(&[
        (
            "mute.toml",
            "action = \"mute\"\nmute_for = \"1h\"\nwords = [\"darn\"]\n",
        ),
        (
            "kick.toml",
            "action = \"kick\"\nmessage = \"Bye, spammer.\"\nwords = [\"spamspam\"]\n",
        ),
    ]);
    let server = Server::new(test_config()).filters_dir(dir.path()).unwrap();
    let server = TestServer::start(server).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect("bob has joined the chat").await;

    bob.send("darn").await;
    bob.expect_contains("You have been muted for 1h by the mute filter")
        .await;
    bob.send("sorry").await;
    bob.expect_contains("You are muted for another").await;
    alice
        .expect("SERVER: bob was muted by the mute filter for 1h")
        .await;

    let mut carol = server.login("carol").await;
    alice.expect("carol has joined the chat").await;
    carol.send("spamspam").await;
    carol
        .expect("SERVER: You were kicked by the kick filter: Bye, spammer.")
        .await;
    carol.expect_eof().await;
    alice.expect("carol has left the chat").await;
    alice
        .expect("SERVER: carol was kicked by the kick filter: Bye, spammer.")
        .await;
    alice.send("quiet now").await;
    alice.expect("alice: quiet now").await;
    server.shutdown().await;
}

/// The shipped filters pass their own fixture tests through the real command.
#[test]
fn test_filters_command_passes_on_shipped_filters() {
    let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/filters"));
    let (status, stdout) = test_filters_command(shipped);
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// Runs `chatpipe test-filters DIR`; its exit status and standard output.
fn test_filters_command(dir: &Path) -> (std::process::ExitStatus, String) {
    let cwd = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chatpipe"))
        .args(["test-filters", dir.to_str().unwrap()])
        .current_dir(cwd.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status, stdout)
}

/// A failing fixture is printed as expected vs actual, and the command exits non-zero.
#[test]
fn test_filters_command_reports_failures() {
    let dir = common::dir_with(&[(
        "x.toml",
        "action = \"mask\"\nwords = [\"darn\"]\n\n[[test]]\ninput = \"darn\"\nexpect = \"darn\"\n",
    )]);
    let (status, stdout) = test_filters_command(dir.path());
    assert_eq!(status.code(), Some(1));
    assert!(stdout.contains("x.toml:4:"), "{stdout}");
    assert!(stdout.contains("expected: \"darn\""), "{stdout}");
    assert!(stdout.contains("actual:   \"****\""), "{stdout}");
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

/// A failing chain test names the filter whose verdict won and its file: here another file's
/// block beats the lower-casing the test expects.
#[test]
fn a_failing_chain_test_names_the_filter_that_decided() {
    let dir = common::dir_with(&[
        (
            "25-no-caps.toml",
            "action = \"block\"\n[shouting]\nmin_letters = 12\nmax_caps_ratio = 0.7\n",
        ),
        (
            "30-shouting.toml",
            "action = \"mask\"\n[shouting]\nmin_letters = 12\nmax_caps_ratio = 0.7\n\n[[chain_test]]\ninput = \"WHY IS NOBODY ANSWERING ME\"\nexpect = \"why is nobody answering me\"\n",
        ),
    ]);
    let (status, stdout) = test_filters_command(dir.path());
    assert_eq!(status.code(), Some(1), "{stdout}");
    let path = dir.path().join("25-no-caps.toml");
    let decided = format!("decided:  blocked by 25-no-caps ({})", path.display());
    assert!(stdout.contains(&decided), "{stdout}");
}

/// The complete example of docs/filters.md, installed beside the shipped filters, passes every
/// fixture test of the directory, its own and the shipped chain tests alike. The example is
/// read from the docs, so they cannot drift: every code block that starts with `# filters/NAME`
/// for a file the shipped directory lacks is installed as that file.
#[test]
fn docs_example_works_beside_the_shipped_filters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/filters.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root.join("filters")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut installed = Vec::new();
    for block in docs.split("```").skip(1).step_by(2) {
        let body = block.split_once('\n').map_or("", |(_, body)| body);
        let Some(name) = body
            .lines()
            .next()
            .and_then(|first| first.strip_prefix("# filters/"))
        else {
            continue;
        };
        let target = dir.path().join(name.trim());
        if !target.exists() {
            std::fs::write(&target, body).unwrap();
            installed.push(name.trim().to_owned());
        }
    }
    installed.sort();
    assert_eq!(installed, ["25-gaming-spam.toml", "scam-words.txt"]);
    let (status, stdout) = test_filters_command(dir.path());
    assert!(status.success(), "{stdout}");
    assert!(
        stdout.contains("25-gaming-spam.toml: 6 tests, 1 chain tests"),
        "{stdout}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// A mask in an earlier file does not hide a later file's block: every filter judges the line as
/// sent, the most severe verdict wins, and `[[chain_test]]`s check the whole chain (they fail
/// here if the block is hidden, and a disabled filter takes no part in them).
#[test]
fn chain_tests_see_a_block_behind_an_earlier_mask() {
    let dir = common::dir_with(&[
        (
            "20-profanity.toml",
            "action = \"mask\"\nwords = [\"shit*\"]\n",
        ),
        (
            "25-crypto-scams.toml",
            "action = \"block\"\nwords = [\"shitcoin*\"]\n\n[[chain_test]]\ninput = \"shitcoins everywhere\"\nexpect = \"blocked\"\n\n[[chain_test]]\ninput = \"oh shit\"\nexpect = \"oh ****\"\n",
        ),
        (
            "30-off.toml",
            "enabled = false\naction = \"kick\"\nwords = [\"oh\"]\n",
        ),
    ]);
    let (status, stdout) = test_filters_command(dir.path());
    assert!(status.success(), "{stdout}");
    assert!(
        stdout.contains("25-crypto-scams.toml: 0 tests, 2 chain tests"),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");

    // The same files judging a real message through a server's chain.
    let filters = load_dir(dir.path()).unwrap();
    let chain = FilterChain::new(
        filters
            .into_iter()
            .filter(|f| f.enabled)
            .map(|f| f.filter as Arc<dyn chatpipe::filters::Filter>)
            .collect(),
    );
    let sender = ClientInfo {
        name: "alice".into(),
        room: "lobby".into(),
        role: Role::User,
    };
    let message = Message::new(
        "shitcoins everywhere",
        &sender,
        ClientId(1),
        tokio::time::Instant::now(),
    );
    assert_eq!(chain.judge(&message).outcome.as_expectation(), "blocked");
}

/// With `[filters] watch`, editing a file reloads the rules without a signal.
#[tokio::test]
async fn watch_reloads_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.toml");
    std::fs::write(&file, "action = \"mask\"\nwords = [\"darn\"]\n").unwrap();
    let mut config = test_config();
    config.filters.watch = true;
    config.filters.watch_interval = Duration::from_millis(20);
    let server = Server::new(config).filters_dir(dir.path()).unwrap();
    let server = TestServer::start(server).await;
    let mut alice = server.login("alice").await;
    alice.send("darn heck").await;
    alice.expect("alice: **** heck").await;
    // A different length, so the change shows even where modification times are coarse.
    std::fs::write(&file, "action = \"mask\"\nwords = [\"heck\", \"gosh\"]\n").unwrap();
    // Wait for the watcher: send until the new rule shows, with the usual line timeout each.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        alice.send("darn heck").await;
        let line = alice.next_line().await.unwrap();
        if line == "alice: darn ****" {
            break;
        }
        assert_eq!(line, "alice: **** heck");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

/// SIGHUP makes the real binary reload its filters directory (`./filters` of the temporary
/// directory it runs in).
#[test]
fn sighup_reloads_the_binary() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let filters = dir.path().join("filters");
    std::fs::create_dir(&filters).unwrap();
    std::fs::write(
        filters.join("w.toml"),
        "action = \"mask\"\nwords = [\"darn\"]\n",
    )
    .unwrap();
    let server = common::binary::start(dir.path(), &[]);
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut read_line = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    };
    assert!(read_line().contains("username"));
    writer.write_all(b"alice\ndarn heck\n").unwrap();
    assert_eq!(read_line(), "alice has joined the chat");
    assert_eq!(read_line(), "SERVER: Type /help for the list of commands.");
    assert_eq!(read_line(), "alice: **** heck");

    std::fs::write(
        filters.join("w.toml"),
        "action = \"mask\"\nwords = [\"heck\"]\n",
    )
    .unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.expect_log("filters reloaded");
    writer.write_all(b"darn heck\n").unwrap();
    assert_eq!(read_line(), "alice: darn ****");
    // Dropping `server` kills the process and waits for it.
}

#[path = "../examples/evasion.rs"]
#[allow(dead_code, unreachable_pub)]
mod evasion;

/// On the evasion corpus (the one `examples/evasion` compares with rustrict), the shipped
/// profanity filter catches every evasion and flags no innocent line.
#[test]
fn evasion_corpus_all_caught_nothing_innocent_flagged() {
    let chain = evasion::profanity_chain();
    let cases = evasion::corpus();
    assert!(cases.iter().filter(|c| c.bad).count() >= 40);
    assert!(cases.iter().filter(|c| !c.bad).count() >= 60);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|case| evasion::chatpipe_flags(&chain, &case.text) != case.bad)
        .map(|case| {
            format!(
                "{} {:?}",
                if case.bad { "missed" } else { "flagged" },
                case.text
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A filter file may say `action = "hold"`, and its fixtures expect `"held"`.
#[test]
fn hold_action_and_held_fixtures() {
    let dir = common::dir_with(&[(
        "review.toml",
        "action = \"hold\"\nwords = [\"darn\"]\n\n[[test]]\ninput = \"darn it\"\nexpect = \"held\"\n\n[[test]]\ninput = \"fine\"\nexpect = \"fine\"\n",
    )]);
    let (status, stdout) = test_filters_command(dir.path());
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}
