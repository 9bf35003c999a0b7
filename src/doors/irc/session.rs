//! One IRC connection: registration (`CAP`, `PASS`, SASL `PLAIN`, `NICK`, `USER`), then IRC
//! commands turned into the chat lines the pipeline already understands.
//!
//! The session never touches room state. `PRIVMSG #games :hi` becomes the line `hi` for the room
//! `games`, `KICK #games bob :rude` the line `/kick bob rude`, and so on: every line an IRC client
//! sends passes the same rate limit, parser, filters and moderation as a text or web client's.
//! Questions the chat commands do not answer (`WHOIS`, `WHO`, `NAMES`, `MODE #room`, `ISON`…)
//! go the same way as a [`Body::Query`]: each costs against the client's rate limit and the hub
//! answers it in its turn among the chat events, so a flood of them is limited like any flood
//! and cannot hold up anyone's chat. The answer is written here, in numerics.
//!
//! What a command costs, in lines of the rate limit: one for each chat line it becomes
//! (`PRIVMSG #a,#b` two), one for a question or an answer given here (`WHO`, `MOTD`, `AWAY`…),
//! two for `NICK` (the question whether the nick is free, then the rename); and an answer costs
//! one more for every [`LINES_PER_COST`] lines it ran to, charged with the client's next
//! question (a single charge is at most the burst). `PING`, `PONG` and `QUIT` are free, and so
//! is a command refused at once for its form (a missing parameter, a bad target).
//!
//! Limits: a line is at most 512 bytes after its tags and 8,191 bytes of tags (`417` beyond);
//! the connection limits, handshake timeout, idle timeout (the server pings a quiet client
//! first), bad-line count and outbox bounds are the text protocol's. Nothing a client sends can
//! panic the session: every parameter is optional until checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::IrcDoor;
use super::message::{MAX_FRAME, Malformed, Message};
use super::output::{Cap, ClientOutput};
use super::render::{HOST, Lines, SERVER, channel, names_reply, prefix_of};
use crate::event::{Body, Client, ClientId, ClientInfo, Query, Role};
use crate::hub::{Outbox, RegisterError, RoomHub};
use crate::metrics::DropReason;
use crate::names::{validate_room_name, validate_username};
use crate::session::Sent;
use crate::session::connection;
use crate::session::idle::IdleAlarm;
use crate::session::line_codec::{Frame, clean_text};
use crate::session::line_reader::LineReader;
use crate::session::login;
use crate::session::{Admission, BadLines, MAX_NAME_ATTEMPTS, SessionShared, send, send_next};

/// The most targets of one `PRIVMSG`, `NOTICE` or `JOIN` (`TARGMAX`).
const MAX_TARGETS: usize = 4;

/// The most mode changes with a parameter in one `MODE` (`MODES`).
const MAX_MODES: usize = 4;

/// SASL data arrives in chunks of 400 base64 bytes; `PLAIN` never needs more than this.
const MAX_SASL: usize = 1200;

/// The longest away message kept (`AWAYLEN`).
const MAX_AWAY: usize = 200;

/// Lines of an answer that cost one more line of the rate limit (see the module documentation).
pub(crate) const LINES_PER_COST: u32 = 10;

/// chatpipe commands an IRC client may send as they are (`/quote APPROVE 17`): each becomes the
/// chat command of the same name.
const CHAT_COMMANDS: &[&str] = &[
    "APPROVE",
    "BANS",
    "DENY",
    "HELD",
    "HISTORY",
    "MODERATED",
    "MUTE",
    "MUTES",
    "PASSWORD",
    "REGISTER",
    "RELOAD",
    "REPORT",
    "REPORTS",
    "RESOLVE",
    "ROLE",
    "ROOM",
    "UNBAN",
    "UNMUTE",
    "UNREGISTER",
    "VOICE",
];

/// The future serving one IRC connection, given its two halves (plain TCP or TLS), until it
/// closes.
pub(crate) fn serve<R, W>(
    door: Arc<IrcDoor>,
    id: ClientId,
    read_half: R,
    write_half: W,
    addr: SocketAddr,
    admission: Admission,
) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let shared = door.shared.clone();
    let output = Arc::new(ClientOutput::default());
    let adapter = output.clone();
    let adapt: crate::session::writer::Adapt = Arc::new(move |line| adapter.adapt(line));
    let frames = LineReader::new(read_half, MAX_FRAME);
    connection::open(
        shared,
        id,
        (write_half, Some(adapt)),
        admission,
        move |outbox, sent| {
            let session = Session {
                door,
                id,
                addr,
                outbox,
                output,
                sent,
                owed: AtomicU32::new(0),
            };
            session.read_side(frames)
        },
    )
}

impl Session {
    /// The reading side: registration, then commands until the client goes.
    ///
    /// An `async` block rather than an `async fn`, so the session and its reader are not kept
    /// twice in every connection (see `doors::text::session::read_side`).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep its arguments twice"
    )]
    fn read_side<R: AsyncRead + Unpin>(
        mut self,
        mut frames: LineReader<R>,
    ) -> impl Future<Output = ()> {
        async move {
            let shared = self.door.shared.clone();
            let config = &shared.config;
            let (id, addr) = (self.id, self.addr);
            let session = &mut self;
            // Boxed: registration's state is needed once and should not stay in an idle session.
            let registration = Box::pin(tokio::time::timeout(
                config.handshake_timeout,
                session.register(&mut frames),
            ));
            let registered = tokio::select! {
                _ = shared.stop_reading.cancelled() => {
                    session.close(crate::protocol::SHUTTING_DOWN);
                    return;
                }
                result = registration => match result {
                    Ok(Ok(())) => true,
                    Ok(Err(farewell)) => {
                        tracing::info!(client = %id, peer = %addr, reason = %farewell, "IRC registration ended");
                        session.close(&farewell);
                        false
                    }
                    Err(_) => {
                        shared.metrics.handshake_failure("timeout");
                        session.close("Registration timed out");
                        false
                    }
                },
            };
            if registered {
                session.read_commands(&mut frames).await;
            }
        }
    }
}

/// One connection's state.
struct Session {
    door: Arc<IrcDoor>,
    id: ClientId,
    addr: SocketAddr,
    outbox: Outbox,
    output: Arc<ClientOutput>,
    /// The client, once registered with the hub, and what it has sent.
    sent: Arc<Sent>,
    /// What the answers written since the last question cost beyond it, charged with the next.
    owed: AtomicU32,
}

impl Drop for Session {
    /// However the reading side ends, the client's away message goes with it.
    fn drop(&mut self) {
        self.door.forget_away(self.id);
    }
}

/// What registration has gathered so far.
#[derive(Default)]
struct Registration {
    nick: Option<String>,
    user: bool,
    password: Option<String>,
    /// `CAP LS` or `REQ` was sent and `CAP END` not yet: registration waits.
    negotiating: bool,
    /// SASL `PLAIN` under way: the base64 gathered so far.
    sasl: Option<String>,
    /// The account SASL logged in.
    account: Option<(String, Role)>,
    failures: usize,
}

/// What an `AUTHENTICATE` line did.
enum SaslStep {
    /// Nothing to do yet (more data to come, or a reply already sent).
    Pending,
    /// The credentials to check: account name and password.
    Check(String, String),
}

impl Session {
    fn shared(&self) -> &SessionShared {
        &self.door.shared
    }

    /// The client's nick, or `*` before registration.
    fn nick(&self) -> Arc<str> {
        self.sent
            .client()
            .as_ref()
            .map_or_else(|| Arc::from("*"), |c| c.name())
    }

    /// Queues IRC lines for this client; a long answer costs more (see the module docs).
    fn reply(&self, build: impl FnOnce(&mut Lines, &str)) {
        let mut lines = Lines::default();
        build(&mut lines, &self.nick());
        let bytes = lines.into_bytes();
        let count = bytes.iter().filter(|&&b| b == b'\n').count();
        let extra = u32::try_from(count).unwrap_or(u32::MAX) / LINES_PER_COST;
        if extra > 0 {
            self.owed.fetch_add(extra, Ordering::Relaxed);
        }
        let _ = self.outbox.push(bytes);
    }

    /// Asks the hub `question` in the client's turn: through the pipeline behind the client's
    /// own lines, costing one line of its rate limit plus what earlier answers owe. `None` when
    /// it went unanswered: over the rate limit (the client has been told), or the server is
    /// stopping.
    async fn ask<T: Send + 'static>(
        &self,
        question: impl FnOnce(&RoomHub) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let cost = 1 + self.owed.swap(0, Ordering::Relaxed);
        let query = Query::new(cost, move |hub| {
            let _ = reply.send(question(hub));
        });
        let event = self.sent.event(Body::Query(query))?;
        if !send(self.shared(), event).await {
            return None;
        }
        // Dropped unanswered (rate limit, or the client left) closes the channel.
        answer.await.ok()
    }

    /// A turn for a command answered here without the hub's help: it costs like a question.
    async fn turn(&self) -> bool {
        self.ask(|_| ()).await.is_some()
    }

    fn numeric(&self, code: &str, params: &[&str], text: &str) {
        self.reply(|out, me| out.numeric(code, me, params, text));
    }

    fn notice(&self, text: &str) {
        self.reply(|out, me| out.notice(me, text));
    }

    /// `ERROR :Closing link: why`, then closes the outbox.
    fn close(&self, why: &str) {
        let mut lines = Lines::default();
        lines.raw(&format!("ERROR :Closing link: {why}"));
        self.outbox.close(Some(lines.into_bytes()), false);
    }

    /// Runs registration until the hub has taken the client; `Err` with the reason to close.
    async fn register<R: AsyncRead + Unpin>(
        &mut self,
        frames: &mut LineReader<R>,
    ) -> Result<(), String> {
        let mut state = Registration::default();
        loop {
            let line = match frames.next().await {
                None | Some(Err(_)) => return Err("connection closed".into()),
                Some(Ok(Frame::TooLong)) => {
                    self.numeric("417", &[], "Input line was too long");
                    continue;
                }
                Some(Ok(Frame::InvalidUtf8)) => {
                    self.notice("Invalid UTF-8; the line was discarded.");
                    continue;
                }
                Some(Ok(Frame::Line(line))) => line,
            };
            let message = match Message::parse(&line) {
                Ok(message) => message,
                Err(Malformed::Empty) => continue,
                Err(Malformed::TooLong) => {
                    self.numeric("417", &[], "Input line was too long");
                    continue;
                }
            };
            match message.command.as_str() {
                "CAP" => self.cap(&message, Some(&mut state.negotiating)),
                "PASS" => match message.param(0) {
                    Some(password) => state.password = Some(password.to_owned()),
                    None => self.numeric("461", &["PASS"], "Not enough parameters"),
                },
                "NICK" => match message.param(0) {
                    None | Some("") => self.numeric("431", &[], "No nickname given"),
                    Some(nick) => match validate_username(nick) {
                        Ok(()) => state.nick = Some(nick.to_owned()),
                        Err(problem) => {
                            self.shared().metrics.handshake_failure("invalid_name");
                            self.numeric("432", &[nick], &format!("Erroneous nickname: {problem}"));
                        }
                    },
                },
                "USER" if message.params.len() >= 4 => state.user = true,
                "USER" => self.numeric("461", &["USER"], "Not enough parameters"),
                "AUTHENTICATE" => {
                    if let SaslStep::Check(name, password) = self.authenticate(&message, &mut state)
                    {
                        self.check_sasl(&name, password, &mut state).await;
                    }
                }
                "PING" => self.pong(&message),
                "PONG" => {}
                "QUIT" => return Err("Quit".into()),
                _ => self.numeric("451", &[], "You have not registered"),
            }
            if state.negotiating || !state.user || state.sasl.is_some() {
                continue;
            }
            let Some(nick) = state.nick.take() else {
                continue;
            };
            match self.try_register(nick, &mut state).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    state.failures += 1;
                    if state.failures >= MAX_NAME_ATTEMPTS {
                        self.shared().metrics.handshake_failure("too_many_attempts");
                        return Err("Too many invalid nicknames or passwords".into());
                    }
                }
                Err(farewell) => return Err(farewell),
            }
        }
    }

    /// Logs `nick` in and asks the hub to take it: `Ok(false)` when the client may try another
    /// nick (it has been told why), `Err` when the connection should close.
    async fn try_register(
        &mut self,
        nick: String,
        state: &mut Registration,
    ) -> Result<bool, String> {
        let (name, role) = match state.account.clone() {
            Some(account) => account,
            None => match login::account(self.shared(), &nick).await {
                Err(refusal) => return Err(refusal.text),
                Ok(Some(account)) if state.password.is_none() => {
                    self.numeric(
                        "433",
                        &[&nick],
                        &format!(
                            "{} is registered: log in with SASL PLAIN or PASS, or choose another nickname",
                            account.name
                        ),
                    );
                    return Ok(false);
                }
                Ok(_) => {
                    let password = state.password.clone();
                    match login::log_in(self.shared(), &nick, password, self.addr).await {
                        Ok(login) => login,
                        Err(refusal) if refusal.code == "wrong_password" => {
                            self.numeric("464", &[], "Password incorrect");
                            return Err(refusal.text);
                        }
                        Err(refusal) => return Err(refusal.text),
                    }
                }
            },
        };
        let client = Arc::new(Client::new(
            self.id,
            self.addr,
            ClientInfo {
                name: Arc::from(name.as_str()),
                room: self.shared().default_room.clone(),
                role,
            },
        ));
        let registered = self
            .shared()
            .hub
            .register_at(self.door.door, client.clone(), self.outbox.clone())
            .await;
        match registered {
            Ok(()) => {
                // Before the client can send a line that could come back as an echo: the writer
                // needs to know whose lines are its own.
                self.output.registered(client.clone());
                tracing::info!(client = %self.id, name = %name, peer = %self.addr, "IRC client registered");
                self.sent.registered(client);
                Ok(true)
            }
            Err(RegisterError::ShuttingDown) => Err(crate::protocol::SHUTTING_DOWN.into()),
            Err(e @ RegisterError::Banned { .. }) => {
                self.shared().metrics.handshake_failure("banned");
                self.numeric("465", &[], &format!("You are banned: {e}"));
                Err(format!("Connection refused: {e}"))
            }
            Err(e @ RegisterError::NameTaken(_)) => {
                self.shared().metrics.handshake_failure("name_taken");
                self.numeric("433", &[&name], &format!("Nickname is already in use: {e}"));
                Ok(false)
            }
            Err(e @ RegisterError::ClusterUnavailable) => {
                self.notice(&e.to_string());
                Ok(false)
            }
        }
    }

    /// `CAP LS|LIST|REQ|END`. During registration, `negotiating` says whether to wait.
    fn cap(&self, message: &Message<'_>, negotiating: Option<&mut bool>) {
        let sub = message.param(0).unwrap_or("").to_ascii_uppercase();
        let wait = match sub.as_str() {
            "LS" => {
                let v302 = message.param(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
                let caps: Vec<&str> = Cap::ALL.into_iter().map(|c| c.advertised(v302)).collect();
                self.reply(|out, me| {
                    out.raw(&format!(":{SERVER} CAP {me} LS :{}", caps.join(" ")));
                });
                Some(true)
            }
            "LIST" => {
                let on = self.output.enabled().join(" ");
                self.reply(|out, me| out.raw(&format!(":{SERVER} CAP {me} LIST :{on}")));
                None
            }
            "REQ" => {
                let asked = message.param(1).unwrap_or("");
                let wanted: Option<Vec<(Cap, bool)>> = asked
                    .split_ascii_whitespace()
                    .map(|name| match name.strip_prefix('-') {
                        Some(name) => Cap::named(name).map(|cap| (cap, false)),
                        None => Cap::named(name).map(|cap| (cap, true)),
                    })
                    .collect();
                let verdict = match wanted {
                    Some(changes) if !changes.is_empty() => {
                        for (cap, on) in changes {
                            self.output.set(cap, on);
                        }
                        "ACK"
                    }
                    _ => "NAK",
                };
                self.reply(|out, me| out.raw(&format!(":{SERVER} CAP {me} {verdict} :{asked}")));
                Some(true)
            }
            "END" => Some(false),
            _ => {
                self.numeric("410", &[&sub], "Invalid CAP command");
                None
            }
        };
        if let (Some(negotiating), Some(wait)) = (negotiating, wait) {
            *negotiating = wait;
        }
    }

    /// One `AUTHENTICATE` line of SASL `PLAIN`.
    fn authenticate(&self, message: &Message<'_>, state: &mut Registration) -> SaslStep {
        let Some(data) = message.param(0) else {
            self.numeric("461", &["AUTHENTICATE"], "Not enough parameters");
            return SaslStep::Pending;
        };
        if state.account.is_some() {
            self.numeric("907", &[], "You have already authenticated using SASL");
            return SaslStep::Pending;
        }
        if data == "*" {
            state.sasl = None;
            self.numeric("906", &[], "SASL authentication aborted");
            return SaslStep::Pending;
        }
        let Some(gathered) = state.sasl.as_mut() else {
            if data.eq_ignore_ascii_case("PLAIN") {
                state.sasl = Some(String::new());
                self.reply(|out, _| out.raw("AUTHENTICATE +"));
            } else {
                self.numeric("908", &["PLAIN"], "are available SASL mechanisms");
                self.numeric("904", &[], "SASL authentication failed");
            }
            return SaslStep::Pending;
        };
        if data != "+" {
            gathered.push_str(data);
        }
        if gathered.len() > MAX_SASL {
            state.sasl = None;
            self.numeric("905", &[], "SASL message too long");
            return SaslStep::Pending;
        }
        if data.len() == 400 {
            return SaslStep::Pending;
        }
        let Some(gathered) = state.sasl.take() else {
            return SaslStep::Pending;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(gathered.as_bytes())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let mut parts = decoded.as_deref().unwrap_or("").splitn(3, '\0');
        let (authzid, authcid, password) = (parts.next(), parts.next(), parts.next());
        match (authzid, authcid, password) {
            (Some(authzid), Some(authcid), Some(password)) => {
                let name = if authcid.is_empty() { authzid } else { authcid };
                SaslStep::Check(name.to_owned(), password.to_owned())
            }
            _ => {
                self.numeric(
                    "904",
                    &[],
                    "SASL authentication failed: not PLAIN credentials",
                );
                SaslStep::Pending
            }
        }
    }

    /// Checks SASL credentials against the accounts: `900` and `903`, or `904`.
    async fn check_sasl(&self, name: &str, password: String, state: &mut Registration) {
        let shared = self.shared();
        let account = match login::account(shared, name).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                self.numeric("904", &[], "SASL authentication failed: no such account");
                return;
            }
            Err(refusal) => {
                self.numeric("904", &[], &refusal.text);
                return;
            }
        };
        if let Some(refusal) = login::throttled(shared, name, self.addr) {
            self.numeric("904", &[], &refusal.text);
            return;
        }
        if !login::check_password(shared, &account, self.addr, password).await {
            self.numeric("904", &[], "SASL authentication failed");
            return;
        }
        let who = format!("{0}!{0}@{HOST}", account.name);
        self.numeric(
            "900",
            &[&who, &account.name],
            &format!("You are now logged in as {}", account.name),
        );
        self.numeric("903", &[], "SASL authentication successful");
        state.account = Some((account.name.clone(), account.role));
    }

    fn pong(&self, message: &Message<'_>) {
        let token = message.param(0).unwrap_or(SERVER);
        self.reply(|out, _| out.raw(&format!(":{SERVER} PONG {SERVER} :{token}")));
    }

    /// Reads commands until the client goes or shutdown begins.
    async fn read_commands<R: AsyncRead + Unpin>(&mut self, frames: &mut LineReader<R>) {
        let shared = self.door.shared.clone();
        let config = &shared.config;
        let sent = self.sent.clone();
        let (idle, liveness) = (&*shared.idle, sent.liveness());
        idle.heard(liveness);
        let mut bad_lines = BadLines::new(config.max_bad_lines);
        let reason = loop {
            // No timer: the idle watch wakes this side when it is due.
            let frame = tokio::select! {
                _ = shared.stop_reading.cancelled() => return,
                next = idle.next_or_alarm(liveness, frames) => match next {
                    Ok(frame) => frame,
                    // A live client answers the ping, which resets the timer.
                    Err(IdleAlarm::Warn(_)) => {
                        self.reply(|out, _| out.raw(&format!("PING :{SERVER}")));
                        continue;
                    }
                    Err(IdleAlarm::Expired) => {
                        let why = format!(
                            "Ping timeout: idle for {}",
                            crate::hub::describe_duration(idle.timeout())
                        );
                        self.reply(|out, _| out.raw(&format!("ERROR :Closing link: {why}")));
                        break "idle".to_owned();
                    }
                },
            };
            idle.heard(liveness);
            let line = match frame {
                None => break "end of stream".to_owned(),
                Some(Err(error)) => break format!("read error: {error}"),
                Some(Ok(Frame::Line(line))) => line,
                Some(Ok(bad)) => {
                    if bad == Frame::TooLong {
                        shared.metrics.dropped(DropReason::TooLong, 1);
                        self.numeric("417", &[], "Input line was too long");
                    } else {
                        shared.metrics.dropped(DropReason::InvalidUtf8, 1);
                        self.notice("Invalid UTF-8; the line was discarded.");
                    }
                    if bad_lines.offend() {
                        self.reply(|out, _| {
                            out.raw("ERROR :Closing link: too many invalid lines");
                        });
                        break "too many invalid lines".to_owned();
                    }
                    continue;
                }
            };
            shared.metrics.lines_received.inc();
            let message = match Message::parse(&line) {
                Ok(message) => message,
                Err(Malformed::Empty) => continue,
                Err(Malformed::TooLong) => {
                    shared.metrics.dropped(DropReason::TooLong, 1);
                    self.numeric("417", &[], "Input line was too long");
                    continue;
                }
            };
            if !self.command(&message).await {
                return;
            }
        };
        send_next(&shared, &self.sent, Body::Left(reason)).await;
    }

    /// A chat line into the pipeline, for `room` (or the client's current room). False when the
    /// server is shutting down.
    async fn chat(&mut self, room: Option<&str>, line: String) -> bool {
        let Some(mut event) = self.sent.event(Body::Line(line)) else {
            return true;
        };
        event.room = room.map(Arc::from);
        send(self.shared(), event).await
    }

    /// Carries out one command. False when the session should end.
    async fn command(&mut self, message: &Message<'_>) -> bool {
        let command = message.command.as_str();
        let needs = match command {
            "PRIVMSG" | "NOTICE" | "KICK" => 2,
            "JOIN" | "PART" | "TOPIC" | "MODE" | "WHOIS" | "ISON" | "USERHOST" | "NICK" => 1,
            _ => 0,
        };
        if message.params.len() < needs {
            if command == "NICK" {
                self.numeric("431", &[], "No nickname given");
            } else if matches!(command, "PRIVMSG" | "NOTICE") && message.params.len() == 1 {
                self.numeric("412", &[], "No text to send");
            } else if matches!(command, "PRIVMSG" | "NOTICE") {
                self.numeric("411", &[], &format!("No recipient given ({command})"));
            } else {
                self.numeric("461", &[command], "Not enough parameters");
            }
            return true;
        }
        // Commands answered here, without the hub, still take their turn (see the module docs).
        let answered_here = matches!(
            command,
            "INVITE"
                | "AWAY"
                | "CAP"
                | "PASS"
                | "USER"
                | "AUTHENTICATE"
                | "MOTD"
                | "VERSION"
                | "HELP"
        );
        if answered_here && !self.turn().await {
            return true;
        }
        let param = |i: usize| message.param(i).unwrap_or("");
        match command {
            "PRIVMSG" | "NOTICE" => self.privmsg(command, param(0), param(1)).await,
            "JOIN" => self.join(param(0)).await,
            "PART" => {
                for target in param(0).split(',').take(MAX_TARGETS) {
                    if let Some(room) = self.room_of(target)
                        && !self.chat(Some(&room), "/leave".into()).await
                    {
                        return false;
                    }
                }
                true
            }
            "TOPIC" => match self.room_of(param(0)) {
                Some(room) => {
                    let line = match message.param(1).filter(|t| !t.is_empty()) {
                        Some(topic) => format!("/topic {}", clean_text(topic)),
                        None => "/topic".to_owned(),
                    };
                    self.chat(Some(&room), line).await
                }
                None => true,
            },
            "NAMES" => {
                self.names(message.param(0)).await;
                true
            }
            "LIST" => self.chat(None, "/rooms".into()).await,
            "WHO" => {
                self.who(message.param(0).unwrap_or("*")).await;
                true
            }
            "WHOIS" => {
                let nick = message.params.last().copied().unwrap_or("");
                self.whois(nick).await;
                true
            }
            "KICK" => {
                let Some(room) = self.room_of(param(0)) else {
                    return true;
                };
                let reason = clean_text(message.param(2).unwrap_or("")).into_owned();
                let line = format!("/kick {} {reason}", param(1));
                self.chat(Some(&room), line.trim_end().to_owned()).await
            }
            "MODE" => self.mode(message).await,
            "INVITE" => {
                self.numeric(
                    "518",
                    &[],
                    "INVITE is not supported: every room is open; ask them to JOIN it",
                );
                true
            }
            "AWAY" => {
                self.away(message.param(0));
                true
            }
            "NICK" => self.nick_change(param(0)).await,
            "QUIT" => self.chat(None, "/quit".into()).await,
            "PING" => {
                self.pong(message);
                true
            }
            "PONG" => true,
            "CAP" => {
                self.cap(message, None);
                true
            }
            "PASS" | "USER" => {
                self.numeric("462", &[], "You may not reregister");
                true
            }
            "AUTHENTICATE" => {
                self.numeric("907", &[], "You have already registered");
                true
            }
            "MOTD" => {
                self.reply(|out, me| self.door.render.motd(out, me));
                true
            }
            "VERSION" => {
                let version = format!("chatpipe-{}", env!("CARGO_PKG_VERSION"));
                self.numeric("351", &[&version, SERVER], "");
                true
            }
            "LUSERS" => {
                if let Some(count) = self.ask(|hub| hub.member_count()).await {
                    self.numeric("251", &[], &format!("There are {count} users on 1 server"));
                }
                true
            }
            "ISON" | "USERHOST" => {
                self.presence(command, &message.params).await;
                true
            }
            "HELP" => {
                self.help();
                true
            }
            other if CHAT_COMMANDS.contains(&other) => {
                let args = message.params.join(" ");
                let line = format!("/{} {}", other.to_ascii_lowercase(), clean_text(&args));
                self.chat(None, line.trim_end().to_owned()).await
            }
            other => {
                if self.turn().await {
                    self.numeric("421", &[other], "Unknown command");
                }
                true
            }
        }
    }

    /// `#room` as a room name, or `None` after telling the client why it is not one.
    fn room_of(&self, target: &str) -> Option<String> {
        let Some(name) = target.strip_prefix('#') else {
            self.numeric("403", &[target], "No such channel (channels start with #)");
            return None;
        };
        let room = name.to_ascii_lowercase();
        match validate_room_name(&room) {
            Ok(()) => Some(room),
            Err(problem) => {
                self.numeric(
                    "479",
                    &[target],
                    &format!("Illegal channel name: {problem}"),
                );
                None
            }
        }
    }

    /// `PRIVMSG` and `NOTICE` to rooms and nicks.
    async fn privmsg(&mut self, command: &str, targets: &str, text: &str) -> bool {
        if text.is_empty() {
            self.numeric("412", &[], "No text to send");
            return true;
        }
        let max = self.shared().config.max_line_bytes;
        // CTCP is framed by \x01, which cleaning would strip: look for it first.
        let action = text
            .strip_prefix("\u{1}ACTION ")
            .map(|a| clean_text(a.trim_end_matches('\u{1}')).into_owned());
        if action.is_none() && text.starts_with('\u{1}') {
            // Other CTCP (VERSION, PING…) is not relayed; a NOTICE is never answered.
            if command == "PRIVMSG" {
                self.notice("CTCP requests are not relayed here.");
            }
            return true;
        }
        let text = clean_text(text).into_owned();
        if text.len() > max {
            self.shared().metrics.dropped(DropReason::TooLong, 1);
            self.numeric(
                "417",
                &[],
                &format!("Line too long (the limit is {max} bytes of text); it was discarded"),
            );
            return true;
        }
        for target in targets.split(',').take(MAX_TARGETS) {
            let line = if target.starts_with('#') {
                let Some(room) = self.room_of(target) else {
                    continue;
                };
                let line = match &action {
                    Some(action) => format!("/me {action}"),
                    // A line that starts with `/` is text here, never a chat command.
                    None if text.starts_with('/') => format!("/{text}"),
                    None => text.clone(),
                };
                if !self.chat(Some(&room), line).await {
                    return false;
                }
                continue;
            } else if validate_username(target).is_err() {
                self.numeric("401", &[target], "No such nick/channel");
                continue;
            } else {
                match &action {
                    Some(action) => format!("/msg {target} * {} {action}", self.nick()),
                    None => format!("/msg {target} {text}"),
                }
            };
            if !self.chat(None, line).await {
                return false;
            }
        }
        true
    }

    async fn join(&mut self, targets: &str) -> bool {
        if targets == "0" {
            self.notice("JOIN 0 is not supported here; PART the channels one by one.");
            return true;
        }
        for target in targets.split(',').take(MAX_TARGETS) {
            if let Some(room) = self.room_of(target)
                && !self.chat(None, format!("/join {room}")).await
            {
                return false;
            }
        }
        true
    }

    /// `NAMES #room`: `353`s and `366`.
    async fn names(&self, target: Option<&str>) {
        let Some(room) = target
            .and_then(|t| t.split(',').next())
            .and_then(|t| self.room_of(t))
        else {
            self.numeric("366", &["*"], "End of /NAMES list");
            return;
        };
        let multi = self.output.has(Cap::MultiPrefix);
        let lookup = room.clone();
        let Some(summary) = self.ask(move |hub| hub.room_summary(&lookup)).await else {
            return;
        };
        let names: Vec<String> = summary
            .map(|s| s.members)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, role, voiced)| {
                let mark = match (role, voiced, multi) {
                    (Role::Moderator | Role::Admin, true, true) => "@+",
                    _ => prefix_of(role, voiced),
                };
                format!("{mark}{name}")
            })
            .collect();
        self.reply(|out, me| {
            if names.is_empty() {
                out.numeric("366", me, &[&channel(&room)], "End of /NAMES list");
            } else {
                names_reply(out, me, &room, &names);
            }
        });
    }

    /// `WHO #room` or `WHO nick`: `352`s and `315`.
    async fn who(&self, mask: &str) {
        let lookup = mask.to_owned();
        let away = self.door.away_names();
        /// One `352`: channel, nick, role, voice.
        type Row = (String, Arc<str>, Role, bool);
        let rows: Option<Vec<Row>> = self
            .ask(move |hub| match lookup.strip_prefix('#') {
                Some(room) => hub
                    .room_summary(&room.to_ascii_lowercase())
                    .map(|s| {
                        let shown = channel(&s.name);
                        s.members
                            .into_iter()
                            .map(|(name, role, voiced)| (shown.clone(), name, role, voiced))
                            .collect()
                    })
                    .unwrap_or_default(),
                None => hub
                    .member_summary(&lookup)
                    .map(|m| vec![("*".to_owned(), m.name, m.role, false)])
                    .unwrap_or_default(),
            })
            .await;
        let Some(rows) = rows else {
            return;
        };
        self.reply(|out, me| {
            for (room, name, role, voiced) in &rows {
                let here = if away.iter().any(|a| **a == **name) {
                    "G"
                } else {
                    "H"
                };
                let flags = format!("{here}{}", prefix_of(*role, *voiced));
                out.numeric(
                    "352",
                    me,
                    &[room, name, HOST, SERVER, name, &flags],
                    &format!("0 {name}"),
                );
            }
            out.numeric("315", me, &[mask], "End of /WHO list");
        });
    }

    /// `WHOIS nick`.
    async fn whois(&self, nick: &str) {
        let lookup = nick.to_owned();
        let Some(found) = self.ask(move |hub| hub.member_summary(&lookup)).await else {
            return;
        };
        let away = found.as_ref().and_then(|m| self.door.away_of(&m.name));
        self.reply(|out, me| {
            let Some(member) = found else {
                out.numeric("401", me, &[nick], "No such nick/channel");
                out.numeric("318", me, &[nick], "End of /WHOIS list");
                return;
            };
            let name: &str = &member.name;
            out.numeric("311", me, &[name, name, HOST, "*"], name);
            let mark = prefix_of(member.role, false);
            let rooms: Vec<String> = member
                .rooms
                .iter()
                .map(|r| format!("{mark}{}", channel(r)))
                .collect();
            if !rooms.is_empty() {
                out.numeric("319", me, &[name], &rooms.join(" "));
            }
            out.numeric("312", me, &[name, SERVER], "chatpipe");
            if member.role != Role::User {
                out.numeric(
                    "313",
                    me,
                    &[name],
                    &format!("is a chatpipe {}", member.role.as_str()),
                );
            }
            if let Some(away) = away {
                out.numeric("301", me, &[name], &away);
            }
            out.numeric(
                "317",
                me,
                &[name, "0", &connected_since(member.connected_for)],
                "seconds idle, signon time",
            );
            out.numeric("318", me, &[name], "End of /WHOIS list");
        });
    }

    /// `MODE`: a room's modes shown or changed (mapped onto moderation), or the client's own.
    async fn mode(&mut self, message: &Message<'_>) -> bool {
        let target = message.param(0).unwrap_or("");
        if !target.starts_with('#') {
            if !self.turn().await {
                return true;
            }
            if !target.eq_ignore_ascii_case(&self.nick()) {
                self.numeric("502", &[], "Cannot change mode for other users");
            } else if let Some(modes) = message.param(1) {
                // +i and +w change nothing here; anything else is unknown.
                if modes.chars().any(|c| !matches!(c, '+' | '-' | 'i' | 'w')) {
                    self.numeric("501", &[], "Unknown MODE flag");
                }
            } else {
                self.numeric("221", &["+"], "");
            }
            return true;
        }
        let Some(room) = self.room_of(target) else {
            return true;
        };
        let Some(modes) = message.param(1) else {
            let lookup = room.clone();
            let Some(moderated) = self
                .ask(move |hub| hub.room_summary(&lookup).map(|s| s.moderated))
                .await
            else {
                return true;
            };
            match moderated {
                Some(moderated) => {
                    let modes = if moderated { "+mnt" } else { "+nt" };
                    self.numeric("324", &[target, modes], "");
                }
                None => self.numeric("403", &[target], "No such channel"),
            }
            return true;
        };
        let mut args = message.params.iter().skip(2).copied();
        let mut adding = true;
        let mut changes = 0;
        for flag in modes.chars() {
            let line = match flag {
                '+' => {
                    adding = true;
                    continue;
                }
                '-' => {
                    adding = false;
                    continue;
                }
                'n' | 't' => continue,
                'm' => format!("/moderated {}", if adding { "on" } else { "off" }),
                'b' => match args.next() {
                    None => {
                        self.ban_list(target).await;
                        continue;
                    }
                    Some(mask) => {
                        let nick = mask.split('!').next().unwrap_or("");
                        if validate_username(nick).is_err() {
                            self.notice(&format!(
                                "Bans here are by nickname (nick!*@*); `{mask}` is not one."
                            ));
                            continue;
                        }
                        format!("/{} {nick}", if adding { "ban" } else { "unban" })
                    }
                },
                'v' | 'o' => {
                    let Some(nick) = args.next() else {
                        self.numeric("461", &["MODE"], "Not enough parameters");
                        continue;
                    };
                    match (flag, adding) {
                        ('v', true) => format!("/voice {nick}"),
                        ('v', false) => {
                            self.notice(
                                "Voice is taken away by turning moderation off and on (-m, +m).",
                            );
                            continue;
                        }
                        (_, true) => format!("/role {nick} moderator"),
                        (_, false) => format!("/role {nick} user"),
                    }
                }
                other => {
                    self.numeric("472", &[&other.to_string()], "is unknown mode char to me");
                    continue;
                }
            };
            changes += 1;
            if changes > MAX_MODES {
                break;
            }
            if !self.chat(Some(&room), line).await {
                return false;
            }
        }
        true
    }

    /// `MODE #room b`: `367`s and `368`. Bans are server-wide, so every room lists them all.
    async fn ban_list(&self, target: &str) {
        let Some(banned) = self.ask(|hub| hub.banned_names()).await else {
            return;
        };
        self.reply(|out, me| {
            for (name, reason) in &banned {
                out.numeric("367", me, &[target, &format!("{name}!*@*")], reason);
            }
            out.numeric("368", me, &[target], "End of channel ban list");
        });
    }

    fn away(&self, text: Option<&str>) {
        match text.filter(|t| !t.is_empty()) {
            Some(text) => {
                let text: String = clean_text(text).chars().take(MAX_AWAY).collect();
                if let Some(client) = self.sent.client() {
                    self.door.set_away(client, Some(text));
                }
                self.numeric("306", &[], "You have been marked as being away");
            }
            None => {
                if let Some(client) = self.sent.client() {
                    self.door.set_away(client, None);
                }
                self.numeric("305", &[], "You are no longer marked as being away");
            }
        }
    }

    /// `NICK new` after registration: refused at once when the form is wrong or the name is
    /// online; otherwise the hub decides (registered and banned names) and announces it.
    async fn nick_change(&mut self, new: &str) -> bool {
        if let Err(problem) = validate_username(new) {
            self.numeric("432", &[new], &format!("Erroneous nickname: {problem}"));
            return true;
        }
        let lookup = new.to_owned();
        let Some(holder) = self
            .ask(move |hub| hub.member_summary(&lookup).map(|m| m.name))
            .await
        else {
            return true;
        };
        if holder.is_some_and(|h| !h.eq_ignore_ascii_case(&self.nick())) {
            self.numeric("433", &[new], "Nickname is already in use");
            return true;
        }
        self.chat(None, format!("/nick {new}")).await
    }

    /// `ISON` (`303`) and `USERHOST` (`302`).
    async fn presence(&self, command: &str, nicks: &[&str]) {
        let asked: Vec<String> = nicks
            .iter()
            .flat_map(|n| n.split_ascii_whitespace())
            .take(MAX_TARGETS * 4)
            .map(str::to_owned)
            .collect();
        let online: Option<Vec<(Arc<str>, Role)>> = self
            .ask(move |hub| {
                asked
                    .iter()
                    .filter_map(|n| hub.member_summary(n))
                    .map(|m| (m.name, m.role))
                    .collect()
            })
            .await;
        let Some(online) = online else {
            return;
        };
        let away = self.door.away_names();
        if command == "ISON" {
            let names: Vec<&str> = online.iter().map(|(n, _)| &**n).collect();
            self.numeric("303", &[], &names.join(" "));
        } else {
            let replies: Vec<String> = online
                .iter()
                .map(|(name, role)| {
                    let op = if *role == Role::User { "" } else { "*" };
                    let here = if away.iter().any(|a| **a == **name) {
                        '-'
                    } else {
                        '+'
                    };
                    format!("{name}{op}={here}{name}@{HOST}")
                })
                .collect();
            self.numeric("302", &[], &replies.join(" "));
        }
    }

    fn help(&self) {
        self.reply(|out, me| {
            for line in [
                "chatpipe over IRC. Channels are rooms: JOIN #games, PART #games.",
                "Supported: PRIVMSG NOTICE JOIN PART TOPIC NAMES LIST WHO WHOIS KICK MODE NICK",
                "  AWAY QUIT PING ISON USERHOST MOTD VERSION LUSERS CAP AUTHENTICATE.",
                "Modes: +m/-m moderated, +v voice, +o/-o moderator role, +b/-b nick!*@* ban.",
                "chatpipe commands, sent as they are (/quote in most clients): HELD, APPROVE n,",
                "  DENY n [reason], REPORT nick [reason], REPORTS, RESOLVE n [note], HISTORY [n],",
                "  MUTE nick [10m], UNMUTE nick, BANS, MUTES, REGISTER password, ROLE nick role.",
            ] {
                out.notice(me, line);
            }
        });
    }
}

/// The signon time of a client connected for `connected_for`, in Unix seconds.
fn connected_since(connected_for: std::time::Duration) -> String {
    std::time::SystemTime::now()
        .checked_sub(connected_for)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
        .to_string()
}
