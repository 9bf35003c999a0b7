//! The events that flow from sessions through the pipeline into the hub.
//!
//! A session turns every line it reads into an [`Event`] carrying the sending [`Client`], a
//! per-client sequence number and the time the line arrived. Stages rewrite the event's [`Body`]
//! as it moves along: a raw [`Body::Line`] becomes a [`Body::Chat`], a [`Body::Command`] or a
//! [`Body::Notice`] for the sender. Whatever leaves the last stage goes to the hub.
//!
//! Invariant: for one client, events enter the pipeline in `seq` order and every stage keeps that
//! order, so a client's `/quit` can never overtake the chat line it sent before.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

/// Identifies one connection for its whole life. Never reused while the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a client may do. Moderators and admins are exempt from some filters and may use the
/// moderation commands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary user or guest.
    #[default]
    User,
    /// May moderate rooms.
    Moderator,
    /// May do everything.
    Admin,
}

impl Role {
    /// The lower-case name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

/// The parts of a client's identity that change while it is connected.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The current username, as the client typed it.
    pub name: Arc<str>,
    /// The room the client is in: the one its lines go to when they name none (for a door
    /// where members sit in several rooms, the one joined last).
    pub room: Arc<str>,
    /// The client's role.
    pub role: Role,
}

/// One connected client as the pipeline and the hub see it.
///
/// Shared (`Arc<Client>`) by the session, every event it produces and the hub. The hub is the only
/// writer of [`ClientInfo`]; stages read it to judge a message (a filter exempt in one room needs
/// to know the room a line without a named room goes to). The mutex is held for a clone of three
/// fields, never across an `.await`.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    addr: SocketAddr,
    info: Mutex<ClientInfo>,
    /// The client's `/join`s and `/leave`s that have passed the filters but that the hub has not
    /// carried out yet. While there are any, [`ClientInfo::room`] may not be the room the
    /// client's next line goes to (see [`Client::room_change_pending`]).
    room_changes: AtomicUsize,
}

impl Client {
    /// A client with the given identity.
    pub fn new(id: ClientId, addr: SocketAddr, info: ClientInfo) -> Self {
        Client {
            id,
            addr,
            info: Mutex::new(info),
            room_changes: AtomicUsize::new(0),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the client's name, room and role.
    pub fn info(&self) -> ClientInfo {
        self.lock().clone()
    }

    /// The client's current name.
    pub fn name(&self) -> Arc<str> {
        self.lock().name.clone()
    }

    /// Changes the name, room or role. Only the hub calls this.
    pub(crate) fn update(&self, change: impl FnOnce(&mut ClientInfo)) {
        change(&mut self.lock());
    }

    /// Whether a `/join` or `/leave` of this client is on its way to the hub: then the room of
    /// its next line that names no room is not known until the hub has carried it out.
    pub fn room_change_pending(&self) -> bool {
        // Acquire pairs with the hub's Release in `room_change_done`: once this reads zero, the
        // room the hub set is what `info()` shows.
        self.room_changes.load(Ordering::Acquire) > 0
    }

    /// Counts a `/join` or `/leave` that passed the filters on its way to the hub.
    pub(crate) fn room_change_sent(&self) {
        self.room_changes.fetch_add(1, Ordering::AcqRel);
    }

    /// The hub carried out (or refused) a `/join` or `/leave`. Never below zero: a pipeline
    /// without the worker pool counts none.
    pub(crate) fn room_change_done(&self) {
        let _ = self
            .room_changes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn lock(&self) -> MutexGuard<'_, ClientInfo> {
        // A panic while holding this lock cannot leave ClientInfo half-written (every update is a
        // field assignment), so a poisoned lock is safe to use.
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One unit of work in the pipeline: something a client did.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who did it.
    pub client: Arc<Client>,
    /// Per-client sequence number, starting at 0 with the first line after the handshake.
    pub seq: u64,
    /// When the session read the line.
    pub received_at: Instant,
    /// The room the line is for, when the client said (a web client names the room of each
    /// line); `None`: the client's current room.
    pub room: Option<Arc<str>>,
    /// The worker pool left this line for the hub to filter: it names no room, and a `/join`
    /// or `/leave` before it had not reached the hub yet, so the room it goes to (which room
    /// rules such as `exempt_rooms` judge by) was not known (see
    /// [`Client::room_change_pending`]).
    pub filter_in_hub: bool,
    /// What happened.
    pub body: Body,
}

impl Event {
    /// An event received now, for the client's current room.
    pub fn new(client: Arc<Client>, seq: u64, body: Body) -> Event {
        Event {
            client,
            seq,
            received_at: Instant::now(),
            room: None,
            filter_in_hub: false,
            body,
        }
    }

    /// The same event with another body.
    pub fn with_body(self, body: Body) -> Event {
        Event { body, ..self }
    }
}

/// What an [`Event`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A raw line as read from the socket, before parsing.
    Line(String),
    /// A chat line for the sender's room.
    Chat(String),
    /// An action (`/me waves`), shown as `* NAME waves`.
    Action(String),
    /// A private message (`/msg NAME TEXT`); filtered like chat.
    Private {
        /// The recipient's name as typed.
        to: String,
        /// The text.
        text: String,
    },
    /// A command for the hub.
    Command(Command),
    /// A `SERVER:` line for the sender only (an error, a refusal, help text).
    Notice(String),
    /// A filter blocked the line; the sender is told this (a `SERVER:` line, with the code
    /// `blocked` where a door has codes).
    Blocked(String),
    /// The client is gone: end of stream, a broken connection or a write failure.
    Left(String),
    /// A filter asks the hub to act on the sender.
    Sanction(Sanction),
    /// A `SERVER:` line for the moderators online (a filter's warning).
    Alert(String),
    /// A question a front door asks the hub for the client (IRC's `WHOIS`, `WHO`, `NAMES`…):
    /// it goes the way of the client's lines, so it costs against the client's rate limit and
    /// the hub answers it in its turn among the chat events, never ahead of them.
    Query(Query),
    /// A filter held the line for a moderator's review.
    Held {
        /// The filter that held it.
        filter: String,
        /// Why, in a few words.
        reason: String,
        /// An action (`/me`) rather than a chat line.
        action: bool,
        /// The line as sent.
        text: String,
    },
}

/// A moderation action a filter asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanction {
    /// The filter that asked.
    pub filter: String,
    /// What to do.
    pub kind: SanctionKind,
    /// What the sender is told.
    pub notice: String,
}

/// What a [`Sanction`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanctionKind {
    /// The sender may not speak for this long.
    Mute(std::time::Duration),
    /// The sender is disconnected.
    Kick,
}

/// A command that the hub carries out. Commands answered without the hub (such as `/help`) never
/// become one of these; the parse stage turns them into a [`Body::Notice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/quit`: leave the chat.
    Quit,
    /// `/nick NEW`: change the username.
    Nick(String),
    /// `/who`: list the members of the sender's room.
    Who,
    /// `/join ROOM` (already case-folded).
    Join(String),
    /// `/leave`: back to the default room.
    Leave,
    /// `/rooms`: list rooms and member counts.
    Rooms,
    /// `/kick NAME [reason]`.
    Kick {
        /// Whom.
        name: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `/mute NAME [duration] [reason]`.
    Mute {
        /// Whom.
        name: String,
        /// How long; the default when `None`.
        duration: Option<std::time::Duration>,
        /// Why, if given: shown to the person, in `/mutes` and in the audit log.
        reason: Option<String>,
    },
    /// `/unmute NAME`.
    Unmute(String),
    /// `/ban NAME [duration] [reason]`.
    Ban {
        /// Whom.
        name: String,
        /// How long; until `/unban` when `None`.
        duration: Option<std::time::Duration>,
        /// Why, if given: shown to the person, in `/bans` and in the audit log.
        reason: Option<String>,
    },
    /// `/unban NAME`.
    Unban(String),
    /// `/reload`: re-read the filters directory.
    Reload,
    /// `/moderated on|off` for the sender's room.
    Moderated(bool),
    /// `/voice NAME`: may speak in the sender's moderated room.
    Voice(String),
    /// `/bans`: list the bans in force.
    Bans,
    /// `/mutes`: list the members muted now.
    Mutes,
    /// `/topic` (show) or `/topic TEXT` (set; moderators).
    Topic(Option<String>),
    /// `/room keep` (true) or `/room drop`: whether the sender's room stays when empty.
    KeepRoom(bool),
    /// `/history [N]`: the newest N lines of the sender's room.
    History(usize),
    /// `/register PASSWORD`: the sender's name becomes a registered account.
    Register(Secret),
    /// `/password OLD NEW`.
    Password {
        /// The current password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// `/unregister PASSWORD`.
    Unregister(Secret),
    /// `/held [PAGE]`: the lines waiting for review, one page (from 1) at a time.
    Held(usize),
    /// `/approve ID`.
    Approve(u64),
    /// `/deny ID [reason]`.
    Deny {
        /// Which held line.
        id: u64,
        /// Why, told to the sender.
        reason: Option<String>,
    },
    /// `/report NAME [reason]`.
    Report {
        /// Whom.
        name: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/reports [PAGE]`: the open reports, one page (from 1) at a time.
    Reports(usize),
    /// `/resolve ID [note]`.
    Resolve {
        /// Which report.
        id: u64,
        /// The moderator's note.
        note: Option<String>,
    },
    /// `/role NAME ROLE` (admins).
    Role {
        /// Whose.
        name: String,
        /// The new role.
        role: Role,
    },
}

/// What [`Query`] runs on the hub's task.
type Ask = Box<dyn FnOnce(&crate::hub::RoomHub) + Send>;

/// A read-only question for the hub, carried by [`Body::Query`].
///
/// The question runs at most once, when the hub reaches it; a query the pipeline drops (over the
/// rate limit) or the hub skips (its client has gone) is never run, and whoever waits for its
/// answer sees its reply channel close. Clones share the one question (events are cloned for
/// alerts), and two queries are equal only when they are the same question.
#[derive(Clone)]
pub struct Query {
    ask: Arc<Mutex<Option<Ask>>>,
    cost: u32,
}

impl Query {
    /// A question costing `cost` lines of the client's rate limit (at least one).
    pub(crate) fn new(cost: u32, ask: impl FnOnce(&crate::hub::RoomHub) + Send + 'static) -> Query {
        Query {
            ask: Arc::new(Mutex::new(Some(Box::new(ask)))),
            cost: cost.max(1),
        }
    }

    /// How many lines of the client's rate limit it costs.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Runs the question on `hub`, the first time only.
    pub(crate) fn answer(&self, hub: &crate::hub::RoomHub) {
        // The lock is held only to take the question out, never while it runs.
        let ask = self.ask.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ask) = ask {
            ask(hub);
        }
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Query) -> bool {
        Arc::ptr_eq(&self.ask, &other.ask)
    }
}

impl Eq for Query {}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Query(cost {})", self.cost)
    }
}

/// A password on its way to being hashed or checked. Its `Debug` shows nothing, so it cannot
/// reach a log line or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Secret {
        Secret(password.into())
    }

    /// The password itself, for hashing or verifying.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
