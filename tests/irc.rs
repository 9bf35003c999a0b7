//! The IRC front door, spoken raw over TCP: registration (plain, CAP, SASL, PASS), channels as
//! rooms, messages across doors, moderation mapped onto IRC, the pipeline's filters and rate
//! limit, and bad input.

mod common;

use std::time::Duration;

use base64::Engine as _;
use chatpipe::Server;
use common::irc::IrcClient;
use common::web::WebClient;
use common::{TestServer, config_with_moderator, login_at, login_with_password_at, test_config};

fn sasl_plain(name: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{name}\0{password}"))
}

/// Registers `nick` with SASL PLAIN and the given capabilities.
async fn register_with_sasl(
    addr: std::net::SocketAddr,
    nick: &str,
    password: &str,
    caps: &str,
) -> IrcClient {
    let mut client = IrcClient::connect(addr).await;
    client.send("CAP LS 302").await;
    let ls = client.expect_contains(" CAP * LS ").await;
    assert!(ls.contains("sasl=PLAIN"), "{ls}");
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick}")).await;
    client.send(&format!("CAP REQ :sasl {caps}")).await;
    client.expect_contains(" CAP * ACK ").await;
    client.send("AUTHENTICATE PLAIN").await;
    client.expect("AUTHENTICATE +").await;
    client
        .send(&format!("AUTHENTICATE {}", sasl_plain(nick, password)))
        .await;
    client.expect_contains(" 900 * ").await;
    client.expect_contains(" 903 * ").await;
    client.send("CAP END").await;
    client.expect_welcome(nick).await;
    client
}

/// Registration without capabilities: the welcome burst with an honest ISUPPORT, a MOTD, the
/// join into the lobby; PING is answered, and the text users see the newcomer.
#[tokio::test]
async fn registration_without_cap() {
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut text = server.login("bob").await;
    let mut alice = IrcClient::connect(irc).await;
    alice.send("NICK alice").await;
    alice.send("USER alice 0 * :Alice A").await;
    alice
        .expect(":chatpipe 001 alice :Welcome to chatpipe, alice")
        .await;
    let mut burst = Vec::new();
    loop {
        let line = alice.next_line().await.unwrap();
        let done = line.contains(" 376 ");
        burst.push(line);
        if done {
            break;
        }
    }
    let burst = burst.join("\n");
    for token in [
        " 002 alice ",
        " 003 alice ",
        " 004 alice chatpipe ",
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=33",
        "CASEMAPPING=ascii",
        "PREFIX=(ov)@+",
        "CHANMODES=b,,,mnt",
        "LINELEN=512",
        " 375 alice ",
    ] {
        assert!(burst.contains(token), "{token} missing from\n{burst}");
    }
    alice.expect(":alice!alice@chatpipe JOIN #lobby").await;
    let names = alice.expect_contains(" 353 alice = #lobby :").await;
    assert!(names.contains("bob") && names.contains("alice"), "{names}");
    alice.expect_contains(" 366 alice #lobby ").await;
    text.expect("alice has joined the chat").await;

    alice.send("PING :token-1").await;
    alice.expect(":chatpipe PONG chatpipe :token-1").await;
    server.shutdown().await;
}

/// CAP negotiation holds registration until CAP END; unknown capabilities are refused whole;
/// SASL PLAIN logs a registered name in, and a wrong password fails with 904.
#[tokio::test]
async fn registration_with_cap_and_sasl() {
    let (server, irc) = TestServer::start_with_irc(Server::new(config_with_moderator())).await;

    let mut wrong = IrcClient::connect(irc).await;
    wrong.send("CAP LS 302").await;
    wrong.expect_contains(" CAP * LS ").await;
    wrong.send("CAP REQ :sasl no-such-cap").await;
    wrong.expect(":chatpipe CAP * NAK :sasl no-such-cap").await;
    wrong.send("NICK mod").await;
    wrong.send("USER mod 0 * :m").await;
    wrong.send("AUTHENTICATE PLAIN").await;
    wrong.expect("AUTHENTICATE +").await;
    wrong
        .send(&format!("AUTHENTICATE {}", sasl_plain("mod", "not-it")))
        .await;
    wrong.expect_contains(" 904 * ").await;
    // Still negotiating: nothing registered yet. Without a password the name is refused.
    wrong.send("CAP END").await;
    let refused = wrong.expect_contains(" 433 * mod ").await;
    assert!(refused.contains("is registered"), "{refused}");

    let mut moderator = register_with_sasl(irc, "mod", "modpass12", "server-time").await;
    moderator.send("CAP LIST").await;
    moderator
        .expect(":chatpipe CAP mod LIST :server-time sasl")
        .await;
    moderator.send("WHOIS mod").await;
    moderator
        .expect_contains(" 313 mod mod :is a chatpipe moderator")
        .await;
    server.shutdown().await;
}

/// PASS logs a registered name in; a wrong PASS is 464 and the connection closes.
#[tokio::test]
async fn registration_with_pass() {
    let (server, irc) = TestServer::start_with_irc(Server::new(config_with_moderator())).await;
    let mut wrong = IrcClient::connect(irc).await;
    wrong.send("PASS nope").await;
    wrong.send("NICK mod").await;
    wrong.send("USER mod 0 * :m").await;
    wrong.expect(":chatpipe 464 * :Password incorrect").await;
    wrong.expect_contains("ERROR :Closing link").await;
    wrong.expect_closed().await;

    let mut right = IrcClient::connect(irc).await;
    right.send("PASS modpass12").await;
    right.send("NICK mod").await;
    right.send("USER mod 0 * :m").await;
    right.expect_welcome("mod").await;
    server.shutdown().await;
}

/// A name taken on any door is taken here (433), and the reverse; bad nicks get 432.
#[tokio::test]
async fn nick_collisions_across_doors() {
    let (server, web, irc) = TestServer::start_with_doors(Server::new(test_config())).await;
    let mut text = server.login("alice").await;
    let _web = WebClient::login(web, "carol").await;

    let mut client = IrcClient::connect(irc).await;
    client.send("NICK ALICE").await;
    client.send("USER x 0 * :x").await;
    client
        .expect_contains(" 433 * ALICE :Nickname is already in use")
        .await;
    client.send("NICK server").await;
    client
        .expect_contains(" 432 * server :Erroneous nickname")
        .await;
    client.send("NICK bad!nick").await;
    client.expect_contains(" 432 * bad!nick ").await;
    client.send("NICK dave").await;
    client.expect_welcome("dave").await;
    // The refused nicks left nothing behind: dave's own line does not come back to him (no
    // echo-message), and alice's does.
    client.send("PRIVMSG #lobby :from dave").await;
    text.expect_contains("dave: from dave").await;
    text.send("from alice").await;
    let next = client.expect_contains(" PRIVMSG #lobby :").await;
    assert_eq!(next, ":alice!alice@chatpipe PRIVMSG #lobby :from alice");

    client.send("NICK carol").await;
    client
        .expect(":chatpipe 433 dave carol :Nickname is already in use")
        .await;
    text.send("/nick Dave").await;
    text.expect_contains("already taken").await;

    client.send("NICK dave2").await;
    client.expect(":dave!dave@chatpipe NICK dave2").await;
    text.expect_contains("dave is now known as dave2").await;
    server.shutdown().await;
}

/// JOIN (several at once), NAMES, TOPIC, LIST and PART, seen from IRC and from the text door.
#[tokio::test]
async fn join_part_names_topic() {
    let (server, irc) = TestServer::start_with_irc(Server::new(config_with_moderator())).await;
    let mut alice = IrcClient::register(irc, "alice").await;
    alice.send("JOIN #games,#Music").await;
    alice.expect(":alice!alice@chatpipe JOIN #games").await;
    alice.expect_contains(" 366 alice #games ").await;
    alice.expect(":alice!alice@chatpipe JOIN #music").await;
    alice.expect_contains(" 366 alice #music ").await;

    let mut bob = server.login("bob").await;
    bob.send("/join games").await;
    bob.expect_contains("You are now in games").await;
    alice.expect_contains(":bob!bob@chatpipe JOIN #games").await;
    alice.send("NAMES #games").await;
    let names = alice.expect_contains(" 353 alice = #games :").await;
    assert!(names.ends_with(":alice bob"), "{names}");
    alice
        .expect(":chatpipe 366 alice #games :End of /NAMES list")
        .await;

    let mut moderator = common::login_with_password_at(server.addr, "mod", "modpass12").await;
    alice.expect(":mod!mod@chatpipe JOIN #lobby").await;
    moderator.send("/join games").await;
    alice.expect_contains(":mod!mod@chatpipe JOIN #games").await;
    moderator.send("/topic Board games only").await;
    alice
        .expect(":mod!mod@chatpipe TOPIC #games :Board games only")
        .await;
    bob.expect_contains("mod set the topic of games: Board games only")
        .await;
    alice.send("TOPIC #games").await;
    alice
        .expect(":chatpipe 332 alice #games :Board games only")
        .await;
    alice.send("TOPIC #music").await;
    alice
        .expect(":chatpipe 331 alice #music :No topic is set")
        .await;
    alice.send("TOPIC #games :mine now").await;
    alice.expect_contains(" 482 alice #games ").await;

    alice.send("LIST").await;
    alice.expect_contains(" 321 alice ").await;
    alice.expect(":chatpipe 322 alice #games 3").await;
    alice.expect(":chatpipe 322 alice #lobby 1").await;
    alice.expect(":chatpipe 322 alice #music 1").await;
    alice.expect(":chatpipe 323 alice :End of /LIST").await;

    alice.send("PART #games").await;
    alice.expect(":alice!alice@chatpipe PART #games").await;
    bob.expect("alice has left the room").await;
    alice.send("JOIN #bad,room").await;
    alice.expect_contains(" 403 alice room ").await;
    server.shutdown().await;
}

/// Channel and private messages between an IRC and a text client, both ways; actions; no echo
/// without echo-message, and an echo with it.
#[tokio::test]
async fn channel_and_private_messages() {
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut bob = server.login("bob").await;
    let mut alice = IrcClient::register(irc, "alice").await;
    bob.expect("alice has joined the chat").await;

    alice.send("PRIVMSG #lobby :hello from irc").await;
    bob.expect("alice: hello from irc").await;
    alice.send("PRIVMSG #lobby :/not a command").await;
    bob.expect("alice: /not a command").await;
    alice.send("PRIVMSG #lobby :\u{1}ACTION waves\u{1}").await;
    bob.expect("* alice waves").await;
    bob.send("hi from text").await;
    // Her own lines did not come back: the next line is bob's.
    alice
        .expect(":bob!bob@chatpipe PRIVMSG #lobby :hi from text")
        .await;
    bob.send("/me nods").await;
    alice
        .expect(":bob!bob@chatpipe PRIVMSG #lobby :\u{1}ACTION nods\u{1}")
        .await;

    alice.send("PRIVMSG bob :psst").await;
    bob.expect_contains("alice").await;
    bob.send("/msg alice back at you").await;
    alice
        .expect(":bob!bob@chatpipe PRIVMSG alice :back at you")
        .await;

    let mut echo = IrcClient::connect(irc).await;
    echo.send("CAP REQ :echo-message server-time").await;
    echo.send("NICK erin").await;
    echo.send("USER erin 0 * :e").await;
    echo.send("CAP END").await;
    echo.expect_welcome("erin").await;
    echo.send("PRIVMSG #lobby :echoed").await;
    let line = echo.expect_contains("PRIVMSG #lobby :echoed").await;
    assert!(
        line.starts_with("@time=") && line.contains(" :erin!erin@chatpipe PRIVMSG"),
        "{line}"
    );
    alice
        .expect_contains(":erin!erin@chatpipe PRIVMSG #lobby :echoed")
        .await;
    server.shutdown().await;
}

/// A moderator on IRC: +m silences users (404), +v gives voice, KICK disconnects (ERROR), +b
/// bans and lists; a user's MODE and KICK are refused with 482.
#[tokio::test]
async fn moderation_through_modes() {
    let (server, irc) = TestServer::start_with_irc(Server::new(config_with_moderator())).await;
    let mut moderator = register_with_sasl(irc, "mod", "modpass12", "").await;
    let mut user = IrcClient::register(irc, "ursula").await;
    moderator
        .expect(":ursula!ursula@chatpipe JOIN #lobby")
        .await;

    user.send("MODE #lobby +m").await;
    user.expect(":chatpipe 482 ursula #lobby :Permission denied")
        .await;
    user.send("KICK #lobby mod :bye").await;
    user.expect(":chatpipe 482 ursula #lobby :Permission denied")
        .await;

    moderator.send("MODE #lobby +m").await;
    user.expect_contains("NOTICE #lobby :lobby is now moderated by mod")
        .await;
    moderator.send("MODE #lobby").await;
    moderator.expect_contains(" 324 mod #lobby +mnt").await;
    user.send("PRIVMSG #lobby :can I talk").await;
    let refused = user.expect_contains(" 404 ursula #lobby :").await;
    assert!(refused.contains("moderated"), "{refused}");
    moderator.send("MODE #lobby +v ursula").await;
    user.expect_contains("ursula was given voice by mod").await;
    user.send("WHO #lobby").await;
    let who = user.expect_contains(" 352 ursula #lobby ursula ").await;
    assert!(who.contains(" H+ "), "{who}");
    user.send("PRIVMSG #lobby :now I can").await;
    moderator
        .expect_contains(":ursula!ursula@chatpipe PRIVMSG #lobby :now I can")
        .await;

    moderator.send("MODE #lobby +b ursula!*@*").await;
    user.expect_contains("ERROR :Closing link: You were banned")
        .await;
    user.expect_closed().await;
    moderator.send("MODE #lobby b").await;
    moderator
        .expect_contains(":chatpipe 367 mod #lobby ursula!*@*")
        .await;
    moderator
        .expect(":chatpipe 368 mod #lobby :End of channel ban list")
        .await;
    let mut again = IrcClient::connect(irc).await;
    again.send("NICK ursula").await;
    again.send("USER u 0 * :u").await;
    again.expect_contains(" 465 * ").await;

    let mut kicked = IrcClient::register(irc, "kim").await;
    moderator.expect(":kim!kim@chatpipe JOIN #lobby").await;
    moderator.send("KICK #lobby kim :too loud").await;
    kicked
        .expect_contains("ERROR :Closing link: You were kicked by mod: too loud")
        .await;
    kicked.expect_closed().await;
    moderator.expect(":kim!kim@chatpipe QUIT :Quit").await;
    server.shutdown().await;
}

/// A role granted or taken while its member is online shows in the channels it is in as
/// `MODE +o` / `-o` from the server; moderators and admins are both operators, so a change
/// between the two shows nothing.
#[tokio::test]
async fn a_role_change_shows_as_a_channel_mode() {
    let mut config = test_config();
    config.accounts.push(chatpipe::config::AccountConfig {
        name: "root".into(),
        password_hash: chatpipe::passwords::hash_password("rootpass12").unwrap(),
        role: chatpipe::Role::Admin,
    });
    let (server, irc) = TestServer::start_with_irc(Server::new(config)).await;
    let mut watcher = IrcClient::register(irc, "watcher").await;
    let mut carol = login_at(server.addr, "carol").await;
    watcher.expect(":carol!carol@chatpipe JOIN #lobby").await;
    carol.send("/register carolpass1").await;
    carol
        .expect("SERVER: carol is now registered to you: from now on, log in with your password.")
        .await;
    let mut root = login_with_password_at(server.addr, "root", "rootpass12").await;
    watcher.expect(":root!root@chatpipe JOIN #lobby").await;

    root.send("/role carol moderator").await;
    root.expect("SERVER: carol is now a moderator.").await;
    watcher.expect(":chatpipe MODE #lobby +o carol").await;
    root.send("/role carol admin").await;
    root.expect("SERVER: carol is now an admin.").await;
    root.send("/role carol user").await;
    root.expect("SERVER: carol is now a user.").await;
    // The very next line: the change to admin showed nothing.
    watcher.expect(":chatpipe MODE #lobby -o carol").await;
    watcher.send("NAMES #lobby").await;
    let names = watcher.expect_contains(" 353 watcher = #lobby :").await;
    assert!(
        names.contains(" carol") && !names.contains("@carol"),
        "{names}"
    );
    server.shutdown().await;
}

/// The pipeline applies: a blocked line gets 404 with the filter's reason, a masked one is
/// delivered masked, and over the rate limit a NOTICE says so.
#[tokio::test]
async fn filters_and_the_rate_limit_apply() {
    let dir = common::dir_with(&[
        ("10-mask.toml", "action = \"mask\"\nwords = [\"darn\"]\n"),
        (
            "20-block.toml",
            "action = \"block\"\nmessage = \"no spam\"\nwords = [\"spam\"]\n",
        ),
    ]);
    let mut config = test_config();
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 3;
    let server = Server::new(config).filters_dir(dir.path()).unwrap();
    let (server, irc) = TestServer::start_with_irc(server).await;
    let mut alice = IrcClient::register(irc, "alice").await;
    let mut bob = IrcClient::register(irc, "bob").await;
    alice.expect(":bob!bob@chatpipe JOIN #lobby").await;

    bob.send("PRIVMSG #lobby :darn it").await;
    alice
        .expect(":bob!bob@chatpipe PRIVMSG #lobby :**** it")
        .await;
    bob.send("PRIVMSG #lobby :buy spam").await;
    let blocked = bob.expect_contains(" 404 bob #lobby :").await;
    assert!(blocked.contains("no spam"), "{blocked}");
    for n in 0..6 {
        bob.send(&format!("PRIVMSG #lobby :line {n}")).await;
    }
    bob.expect_contains(":chatpipe NOTICE bob :Rate limit exceeded")
        .await;
    server.shutdown().await;
}

/// Bad input gets a clear answer and loses nothing: an over-long line (417), invalid UTF-8,
/// unknown commands (421), missing parameters (461), garbage; then QUIT closes with ERROR.
#[tokio::test]
async fn bad_input_and_quit() {
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut early = IrcClient::connect(irc).await;
    early.send("JOIN #lobby").await;
    early
        .expect(":chatpipe 451 * :You have not registered")
        .await;

    let mut bob = server.login("bob").await;
    let mut alice = IrcClient::register(irc, "alice").await;
    bob.expect("alice has joined the chat").await;
    alice
        .send(&format!("PRIVMSG #lobby :{}", "x".repeat(600)))
        .await;
    alice.expect_contains(" 417 alice :").await;
    alice
        .send(&format!("@{} PRIVMSG #lobby :tagged", "t".repeat(9000)))
        .await;
    alice.expect_contains(" 417 alice :").await;
    alice.send_raw(b"PRIVMSG #lobby :\xff\xfe\r\n").await;
    alice.expect_contains("Invalid UTF-8").await;
    alice.send("FROBNICATE now").await;
    alice
        .expect(":chatpipe 421 alice FROBNICATE :Unknown command")
        .await;
    alice.send("KICK #lobby").await;
    alice
        .expect(":chatpipe 461 alice KICK :Not enough parameters")
        .await;
    alice.send("PRIVMSG").await;
    alice.expect_contains(" 411 alice ").await;
    alice.send("PRIVMSG #lobby").await;
    alice.expect_contains(" 412 alice ").await;
    alice.send(":only-a-prefix").await;
    alice.send("   ").await;
    alice.send("MODE #lobby +z").await;
    alice.expect_contains(" 472 alice z ").await;
    alice.send("PRIVMSG #lobby :still here").await;
    bob.expect("alice: still here").await;

    // Half a line, then the rest: one line.
    alice.send_raw(b"PRIVMSG #lobby :half ").await;
    alice.send_raw(b"and half\r\n").await;
    bob.expect("alice: half and half").await;

    alice.send("QUIT :bye now").await;
    alice.expect_contains("ERROR :Closing link: Goodbye!").await;
    alice.expect_closed().await;
    bob.expect("alice has left the chat").await;
    server.shutdown().await;
}

/// A member sharing three channels with someone hears their new name and their quit once, as
/// IRC clients expect (a `NICK` or `QUIT` applies to every channel), not once per channel.
#[tokio::test]
async fn a_nick_change_and_a_quit_come_once_however_many_channels_are_shared() {
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut alice = IrcClient::register(irc, "alice").await;
    let mut carol = IrcClient::register(irc, "carol").await;
    for room in ["games", "music"] {
        alice.join(room).await;
        carol.join(room).await;
        alice
            .expect_contains(&format!(":carol!carol@chatpipe JOIN #{room}"))
            .await;
    }
    carol.send("NICK caroline").await;
    carol.expect(":carol!carol@chatpipe NICK caroline").await;
    carol.send("QUIT :bye").await;
    carol.expect_closed().await;
    // A round trip after both, then count what came before it.
    alice.send("PING :marker").await;
    let mut seen = Vec::new();
    loop {
        let line = alice.next_line().await.expect("alice is still connected");
        if line.contains("PONG") && line.ends_with(":marker") {
            break;
        }
        seen.push(line);
    }
    let count = |what: &str| seen.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count(":carol!carol@chatpipe NICK caroline"), 1, "{seen:?}");
    assert_eq!(count(":caroline!caroline@chatpipe QUIT"), 1, "{seen:?}");
    server.shutdown().await;
}

/// A quiet client is pinged; one that answers stays, one that does not is closed.
#[tokio::test]
async fn idle_clients_are_pinged_then_closed() {
    let mut config = test_config();
    config.server.idle_timeout = Duration::from_secs(2);
    let (server, irc) = TestServer::start_with_irc(Server::new(config)).await;
    let mut quiet = IrcClient::register(irc, "quiet").await;
    quiet.expect("PING :chatpipe").await;
    quiet.send("PONG :chatpipe").await;
    // Answered: pinged again rather than closed.
    quiet.expect("PING :chatpipe").await;
    quiet
        .expect_contains("ERROR :Closing link: Ping timeout")
        .await;
    quiet.expect_closed().await;
    server.shutdown().await;
}

/// IRC moderators work the moderation queue: held lines reach them as notices, APPROVE
/// delivers with the reviewed tag (to clients with message-tags), DENY tells the sender.
#[tokio::test]
async fn moderators_approve_and_deny_over_irc() {
    let dir = common::dir_with(&[("20-hold.toml", "action = \"hold\"\nwords = [\"darn\"]\n")]);
    let server = Server::new(config_with_moderator())
        .filters_dir(dir.path())
        .unwrap();
    let (server, irc) = TestServer::start_with_irc(server).await;
    let mut moderator = register_with_sasl(irc, "mod", "modpass12", "message-tags").await;
    let mut alice = IrcClient::register(irc, "alice").await;
    let mut bob = server.login("bob").await;

    alice.send("PRIVMSG #lobby :darn this").await;
    alice
        .expect_contains("NOTICE alice :Your message is held for review")
        .await;
    let held = moderator
        .expect_contains("NOTICE mod :[held #1] alice in lobby")
        .await;
    assert!(held.ends_with("darn this"), "{held}");
    moderator.send("HELD").await;
    moderator.expect_contains("#1").await;
    moderator.send("APPROVE 1").await;
    let approved = moderator
        .expect_contains(":alice!alice@chatpipe PRIVMSG #lobby :darn this")
        .await;
    assert!(approved.contains(";chatpipe/reviewed "), "{approved}");
    bob.expect_contains("alice: darn this").await;

    alice.send("PRIVMSG #lobby :darn again").await;
    moderator.expect_contains("[held #2]").await;
    moderator.send("DENY 2 :not today").await;
    alice.expect_contains("not today").await;

    alice.send("APPROVE 2").await;
    alice.expect_contains("Permission denied").await;
    server.shutdown().await;
}

/// A real IRC client from Debian, `ii`, joins a room and exchanges lines with a text client and
/// a web client. Listed as `ignored` without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_ii), ignore = "needs the IRC client ii: apt-get install ii")]
async fn a_real_irc_client_chats_with_text_and_web_clients() {
    let Some(ii) = common::required_tool("ii", "CHATPIPE_REQUIRE_CLIENTS", "apt-get install ii")
    else {
        return;
    };
    let (server, web, irc) = TestServer::start_with_doors(Server::new(test_config())).await;
    let mut bob = server.login("bob").await;
    let mut carol = WebClient::login(web, "carol").await;
    bob.expect("carol has joined the chat").await;

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(ii)
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &irc.port().to_string(),
            "-n",
            "iggy",
        ])
        .arg("-i")
        .arg(dir.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    bob.expect("iggy has joined the chat").await;
    carol
        .expect_where("iggy's join", |m| {
            m["type"] == "joined" && m["name"] == "iggy"
        })
        .await;

    // ii keeps a directory per server and channel: `in` is a FIFO to write to, `out` its log.
    let server_dir = dir.path().join("127.0.0.1");
    let lobby = server_dir.join("#lobby");
    common::wait_until("ii has the lobby's FIFO", || lobby.join("in").exists()).await;
    write_fifo(&server_dir.join("in"), "/j #games").await;
    let games = server_dir.join("#games");
    common::wait_until("ii has joined #games", || games.join("in").exists()).await;
    bob.send("/join games").await;
    bob.expect_contains("You are now in games").await;
    carol.say(None, "/join games").await;
    carol
        .expect_where("carol in games", |m| {
            m["type"] == "joined" && m["name"] == "carol" && m["room"] == "games"
        })
        .await;
    write_fifo(&games.join("in"), "hello from ii").await;
    bob.expect_contains("iggy: hello from ii").await;
    carol.expect_message("iggy", "hello from ii").await;

    bob.send("hi iggy, from nc").await;
    carol.say(Some("games"), "hi iggy, from the web").await;
    let log = games.join("out");
    let has = |needle: &str| std::fs::read_to_string(&log).is_ok_and(|text| text.contains(needle));
    common::wait_until("ii shows bob's line", || has("<bob> hi iggy, from nc")).await;
    common::wait_until("ii shows carol's line", || {
        has("<carol> hi iggy, from the web")
    })
    .await;

    child.kill().await.unwrap();
    bob.expect_contains("iggy has left the chat").await;
    server.shutdown().await;
}

/// Writes one line into one of ii's FIFOs.
async fn write_fifo(path: &std::path::Path, line: &str) {
    let (path, line) = (path.to_owned(), format!("{line}\n"));
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        fifo.write_all(line.as_bytes()).unwrap();
    })
    .await
    .unwrap();
}

/// Lines until (and with) the first that contains `needle`.
async fn lines_until(client: &mut IrcClient, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client
            .next_line()
            .await
            .unwrap_or_else(|| panic!("closed before {needle:?}; got {lines:#?}"));
        let done = line.contains(needle);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// A flood of queries is rate limited like a flood of lines: 500 `WHOIS` sent at once with a
/// burst of 5 get a few answers and the rate limit notice, not 500 answers.
#[tokio::test]
async fn a_whois_flood_is_rate_limited() {
    let mut config = test_config();
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 5;
    let (server, irc) = TestServer::start_with_irc(Server::new(config)).await;
    let _bob = IrcClient::register(irc, "bob").await;
    let mut eve = IrcClient::register(irc, "eve").await;
    let flood: String = (0..500).map(|_| "WHOIS bob\r\n").collect();
    eve.send_raw(flood.as_bytes()).await;
    // PING is free and answered in order after every WHOIS before it.
    eve.send("PING :flood-done").await;
    let lines = lines_until(&mut eve, "flood-done").await;
    let answered = lines.iter().filter(|l| l.contains(" 318 eve bob ")).count();
    assert!(
        lines.iter().any(|l| l.contains("Rate limit exceeded")),
        "no rate limit notice in {} lines",
        lines.len()
    );
    // The burst, and one more for each second the flood took to read.
    assert!(
        (1..250).contains(&answered),
        "{answered} of 500 WHOIS answered"
    );
    server.shutdown().await;
}

/// Queries wait their turn among the chat lines: while four clients flood `WHO #lobby` (no rate
/// limit), a line said in another room reaches its other member before the flooders are done.
#[tokio::test]
async fn a_who_flood_does_not_hold_up_chat() {
    const FLOOD: usize = 1000;
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut ann = IrcClient::register(irc, "ann").await;
    let mut ben = IrcClient::register(irc, "ben").await;
    ann.join("games").await;
    ben.join("games").await;
    ann.expect_contains(":ben!ben@chatpipe JOIN #games").await;
    let mut flooders = Vec::new();
    for n in 0..4 {
        flooders.push(IrcClient::register(irc, &format!("who{n}")).await);
    }
    let flood: String = (0..FLOOD).map(|_| "WHO #lobby\r\n").collect();
    for flooder in &mut flooders {
        flooder.send_raw(flood.as_bytes()).await;
    }
    // Mid-flood: the first answers are in.
    flooders[0].expect_contains(" 315 who0 #lobby ").await;
    ann.send("PRIVMSG #games :still here").await;
    ben.expect_contains(":ann!ann@chatpipe PRIVMSG #games :still here")
        .await;
    // Only now count the flood's answers: the line came before the last of them.
    let mut answers = 1;
    while answers < FLOOD {
        flooders[0].expect_contains(" 315 who0 #lobby ").await;
        answers += 1;
    }
    server.shutdown().await;
}

/// Without `echo-message` a client does not see its own lines come back live, but a room's
/// replayed history is news to it: on rejoining it gets its own lines with the others'.
#[tokio::test]
async fn history_replay_includes_the_clients_own_lines() {
    let (server, irc) = TestServer::start_with_irc(Server::new(test_config())).await;
    let mut alice = IrcClient::register(irc, "alice").await;
    let mut bob = IrcClient::register(irc, "bob").await;
    alice.join("games").await;
    bob.join("games").await;
    alice.expect_contains(":bob!bob@chatpipe JOIN #games").await;
    alice.send("PRIVMSG #games :mine").await;
    bob.expect(":alice!alice@chatpipe PRIVMSG #games :mine")
        .await;
    bob.send("PRIVMSG #games :theirs").await;
    alice
        .expect(":bob!bob@chatpipe PRIVMSG #games :theirs")
        .await;
    alice.send("PART #games").await;
    alice.expect(":alice!alice@chatpipe PART #games").await;
    alice.send("JOIN #games").await;
    let lines = lines_until(&mut alice, "End of history").await;
    let said: Vec<&String> = lines.iter().filter(|l| l.contains(" PRIVMSG ")).collect();
    assert_eq!(
        said,
        [
            ":alice!alice@chatpipe PRIVMSG #games :mine",
            ":bob!bob@chatpipe PRIVMSG #games :theirs"
        ],
        "{lines:#?}"
    );
    server.shutdown().await;
}
