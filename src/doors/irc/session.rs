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
//!
//! This file is the connection and what every command shares: the `Session` state, the reading
//! loop before and after registration, `command`, which checks a command's parameters, takes the
//! turn of the commands answered here and dispatches, and the helpers the other files use
//! (`reply`, `ask`, `turn`, `chat`, `room_of`). One-line commands (`PART`, `TOPIC`, `KICK`,
//! `LIST`, `QUIT`, `MOTD`, `VERSION`, `LUSERS`, the chatpipe commands) are written in the
//! dispatch itself; the rest live by concern beside it, each file an `impl Session` block:
//! `registration` (before the hub has the client, and `CAP`), `commands` (what becomes a chat
//! line), `queries` (questions answered in numerics) and `modes` (`MODE`, mapped onto
//! moderation).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};

use super::IrcDoor;
use super::message::{MAX_FRAME, Malformed, Message};
use super::output::ClientOutput;
use super::render::{Lines, SERVER};
use crate::event::{Body, ClientId, Query};
use crate::hub::{Outbox, RoomHub};
use crate::metrics::DropReason;
use crate::names::validate_room_name;
use crate::session::Sent;
use crate::session::connection;
use crate::session::idle::IdleAlarm;
use crate::session::line_codec::{Frame, clean_text};
use crate::session::line_reader::LineReader;
use crate::session::{Admission, BadLines, SessionShared, send, send_next};

/// The most targets of one `PRIVMSG`, `NOTICE` or `JOIN` (`TARGMAX`).
pub(super) const MAX_TARGETS: usize = 4;

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
pub(super) struct Session {
    pub(super) door: Arc<IrcDoor>,
    pub(super) id: ClientId,
    pub(super) addr: SocketAddr,
    pub(super) outbox: Outbox,
    pub(super) output: Arc<ClientOutput>,
    /// The client, once registered with the hub, and what it has sent.
    pub(super) sent: Arc<Sent>,
    /// What the answers written since the last question cost beyond it, charged with the next.
    owed: AtomicU32,
}

impl Drop for Session {
    /// However the reading side ends, the client's away message goes with it.
    fn drop(&mut self) {
        self.door.forget_away(self.id);
    }
}

impl Session {
    pub(super) fn shared(&self) -> &SessionShared {
        &self.door.shared
    }

    /// The client's nick, or `*` before registration.
    pub(super) fn nick(&self) -> Arc<str> {
        self.sent
            .client()
            .as_ref()
            .map_or_else(|| Arc::from("*"), |c| c.name())
    }

    /// Queues IRC lines for this client; a long answer costs more (see the module docs).
    pub(super) fn reply(&self, build: impl FnOnce(&mut Lines, &str)) {
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
    pub(super) async fn ask<T: Send + 'static>(
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
    pub(super) async fn turn(&self) -> bool {
        self.ask(|_| ()).await.is_some()
    }

    pub(super) fn numeric(&self, code: &str, params: &[&str], text: &str) {
        self.reply(|out, me| out.numeric(code, me, params, text));
    }

    pub(super) fn notice(&self, text: &str) {
        self.reply(|out, me| out.notice(me, text));
    }

    /// `ERROR :Closing link: why`, then closes the outbox.
    fn close(&self, why: &str) {
        let mut lines = Lines::default();
        lines.raw(&format!("ERROR :Closing link: {why}"));
        self.outbox.close(Some(lines.into_bytes()), false);
    }

    /// The answer to a `PING`, before registration or after.
    pub(super) fn pong(&self, message: &Message<'_>) {
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
    pub(super) async fn chat(&mut self, room: Option<&str>, line: String) -> bool {
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
    pub(super) fn room_of(&self, target: &str) -> Option<String> {
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
}
