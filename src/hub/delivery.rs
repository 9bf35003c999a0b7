//! [`Delivery`]: what the hub says, before any front door puts it into words.
//!
//! The hub decides *what* happens (alice said this in games, bob left, you are muted) and each
//! front door decides how its clients see it: the text protocol as `alice: hi`, the web door as
//! a JSON object, IRC as a `PRIVMSG`. A door implements [`Render`]; the hub renders a delivery at
//! most once per door and puts the same shared buffer into the outbox of every recipient behind
//! that door, so fan-out stays one allocation per message per protocol.
//!
//! Doors are numbered ([`DoorId`]); the text protocol is always door 0, and its rendering
//! ([`crate::doors::text::TextRender`]) is byte for byte the wire protocol of version 1.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::event::Role;
use crate::store::LineKind;

/// Which front door a client came in by: an index into the hub's renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DoorId(pub u8);

impl DoorId {
    /// The text protocol over TCP.
    pub const TEXT: DoorId = DoorId(0);
}

/// How many doors a hub can serve.
pub const MAX_DOORS: usize = 4;

/// Whether a join or leave is about the whole chat (connecting, disconnecting) or one room
/// (`/join`, `/leave`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Connected or disconnected.
    Chat,
    /// Moved into or out of a room.
    Room,
}

/// Something a client is told.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// `name` joined `room`.
    Joined {
        /// The room.
        room: Arc<str>,
        /// Who.
        name: Arc<str>,
        /// Their role (for member lists).
        role: Role,
        /// Connecting, or moving.
        scope: Scope,
    },
    /// `name` left `room`.
    Left {
        /// The room.
        room: Arc<str>,
        /// Who.
        name: Arc<str>,
        /// Disconnecting, or moving.
        scope: Scope,
    },
    /// A chat line in a room.
    Message {
        /// The room.
        room: Arc<str>,
        /// Who said it.
        from: Arc<str>,
        /// What, after the filters.
        text: Arc<str>,
        /// Held for review and approved by a moderator.
        reviewed: bool,
    },
    /// An action (`/me`) in a room.
    Action {
        /// The room.
        room: Arc<str>,
        /// Who.
        from: Arc<str>,
        /// What they do.
        text: Arc<str>,
        /// Held for review and approved by a moderator.
        reviewed: bool,
    },
    /// A private message, to its recipient or (`outgoing`) back to its sender.
    Private {
        /// The sender.
        from: Arc<str>,
        /// The recipient.
        to: Arc<str>,
        /// The text.
        text: Arc<str>,
        /// True for the sender's copy.
        outgoing: bool,
    },
    /// `old` is now known as `new`, said in `room`.
    Renamed {
        /// The room told.
        room: Arc<str>,
        /// The old name.
        old: Arc<str>,
        /// The new one.
        new: Arc<str>,
    },
    /// A line of a room's history, replayed.
    History {
        /// The room.
        room: Arc<str>,
        /// Chat or action.
        kind: LineKind,
        /// Who said it.
        from: Arc<str>,
        /// What.
        text: Arc<str>,
        /// When.
        at: SystemTime,
    },
    /// A `SERVER:` line: an answer, a refusal, an announcement.
    Notice {
        /// The text (may have several lines).
        text: Arc<str>,
        /// A machine-readable reason, where there is one (`rate_limited`, `blocked`, `muted`…).
        code: Option<&'static str>,
        /// The room it is about, where it is about one.
        room: Option<Arc<str>>,
    },
    /// The members of a room: to a member joining it, and to everyone in it after a change that
    /// joins and leaves do not describe (a role granted). Doors that show member lists keep them
    /// up to date from `Joined`, `Left` and `Renamed` in between, so a join costs the room one
    /// small delivery, not a list each.
    Members {
        /// The room.
        room: Arc<str>,
        /// Names and roles, in join order.
        members: Arc<[(Arc<str>, Role)]>,
    },
    /// `name`'s role changed from `was` to `role`, told in `room`; `members` is the room's list
    /// after the change, for doors that show member lists whole.
    RoleChanged {
        /// The room told.
        room: Arc<str>,
        /// Whose role.
        name: Arc<str>,
        /// The role before.
        was: Role,
        /// The role now.
        role: Role,
        /// Names and roles after the change, in join order.
        members: Arc<[(Arc<str>, Role)]>,
    },
    /// The client is in: its name and role (doors that greet with state).
    Welcome {
        /// The name.
        name: Arc<str>,
        /// The role.
        role: Role,
        /// The rooms it is in.
        rooms: Vec<Arc<str>>,
    },
    /// The topic of a room: shown on joining it, asked for with `/topic`, or set by `by`.
    Topic {
        /// The room.
        room: Arc<str>,
        /// The topic, if it has one.
        topic: Option<Arc<str>>,
        /// Who set it just now; `None` when the topic is only being shown.
        by: Option<Arc<str>>,
    },
    /// The rooms there are, with member counts (`/rooms`).
    Rooms {
        /// Name and member count.
        rooms: Vec<(Arc<str>, usize)>,
    },
    /// To moderators: a line was held for review.
    Held(Arc<HeldView>),
    /// To moderators: a member reported another.
    Reported(Arc<ReportView>),
    /// To moderators: a held line or a report left the queue.
    QueueDone {
        /// `held` or `report`.
        what: &'static str,
        /// Its number.
        id: u64,
        /// `approved`, `denied`, `expired` or `resolved`.
        outcome: &'static str,
        /// Who decided (or `the moderation queue` for an expiry).
        by: Arc<str>,
    },
    /// To a moderator logging in on a door that shows it: everything waiting.
    Queue {
        /// The held lines, oldest first.
        held: Vec<Arc<HeldView>>,
        /// The open reports, oldest first.
        reports: Vec<Arc<ReportView>>,
    },
    /// To moderators: audit log entries (recent ones at login, then each as it is saved).
    Audit(Arc<[crate::store::AuditEntry]>),
}

/// A held line as moderators see it.
#[derive(Debug, Clone)]
pub struct HeldView {
    /// Its number.
    pub id: u64,
    /// The room it was said in.
    pub room: Arc<str>,
    /// Who said it.
    pub from: Arc<str>,
    /// The filter that held it.
    pub filter: String,
    /// Why, in a few words.
    pub reason: String,
    /// Chat or action.
    pub kind: LineKind,
    /// The line as sent.
    pub text: Arc<str>,
    /// When it was held.
    pub at: SystemTime,
}

impl HeldView {
    /// The line that tells a moderator about it.
    pub fn alert(&self) -> String {
        format!(
            "[held #{}] {} in {} ({}): {}",
            self.id, self.from, self.room, self.filter, self.text
        )
    }
}

/// A report as moderators see it.
#[derive(Debug, Clone)]
pub struct ReportView {
    /// Its number.
    pub id: u64,
    /// Who reported.
    pub reporter: Arc<str>,
    /// Whom.
    pub reported: Arc<str>,
    /// In which room.
    pub room: Arc<str>,
    /// Why.
    pub reason: String,
    /// The last lines the reported member said there.
    pub context: Vec<String>,
    /// When.
    pub at: SystemTime,
}

impl ReportView {
    /// The line that tells a moderator about it.
    pub fn alert(&self) -> String {
        format!(
            "[report #{}] {} reported {} in {}: {} ({} lines; /reports shows them)",
            self.id,
            self.reporter,
            self.reported,
            self.room,
            if self.reason.is_empty() {
                "no reason given"
            } else {
                &self.reason
            },
            self.context.len()
        )
    }
}

impl Delivery {
    /// How a [`Delivery::Topic`] reads as a `SERVER:` line.
    pub fn topic_text(room: &str, topic: Option<&str>, by: Option<&str>) -> String {
        match (topic, by) {
            (Some(topic), Some(by)) => format!("{by} set the topic of {room}: {topic}"),
            (Some(topic), None) => format!("Topic for {room}: {topic}"),
            (None, _) => format!("{room} has no topic."),
        }
    }

    /// A `SERVER:` line with a machine-readable code, about `room`.
    pub fn room_coded(code: &'static str, room: &Arc<str>, text: &str) -> Delivery {
        Delivery::Notice {
            text: Arc::from(text),
            code: Some(code),
            room: Some(room.clone()),
        }
    }

    /// A `SERVER:` line without a code.
    pub fn notice(text: &str) -> Delivery {
        Delivery::Notice {
            text: Arc::from(text),
            code: None,
            room: None,
        }
    }

    /// A `SERVER:` line with a machine-readable code.
    pub fn coded(code: &'static str, text: &str) -> Delivery {
        Delivery::Notice {
            text: Arc::from(text),
            code: Some(code),
            room: None,
        }
    }

    /// A `SERVER:` line about `room`.
    pub fn room_notice(room: &Arc<str>, text: &str) -> Delivery {
        Delivery::Notice {
            text: Arc::from(text),
            code: None,
            room: Some(room.clone()),
        }
    }
}

/// How one front door puts deliveries into words.
pub trait Render: Send + Sync + 'static {
    /// The bytes a client of this door receives for `delivery` (one outbox entry), or `None`
    /// when this door does not show it.
    fn render(&self, delivery: &Delivery) -> Option<Bytes>;

    /// The bytes for `delivery` sent to one client only, known as `to`: doors whose replies
    /// name their recipient (IRC's numerics) override this; the rest render as for everyone.
    fn render_to(&self, delivery: &Delivery, to: &str) -> Option<Bytes> {
        let _ = to;
        self.render(delivery)
    }

    /// Whether `/join` adds a room (web, IRC) rather than moving to it (the text protocol).
    fn joins_add(&self) -> bool {
        false
    }

    /// Whether this door's clients want [`Delivery::Members`] on every change of a room's
    /// members. The hub builds the list only for rooms where someone does.
    fn shows_members(&self) -> bool {
        false
    }

    /// Whether this door's clients are told of a member leaving the chat, or of a new name,
    /// once for every room they share with that member (the web page keeps a list per room),
    /// rather than once (an IRC `QUIT` or `NICK` applies to every channel, and the text
    /// protocol's line names no room: twice would be the same line twice).
    fn presence_per_room(&self) -> bool {
        false
    }
}

/// One recipient's way to be told things from outside the hub (the store thread answering
/// `/history`, an account task): its outbox and its door's renderer.
#[derive(Clone)]
pub struct Recipient {
    /// The client's outbox.
    pub outbox: crate::hub::Outbox,
    /// Its door's renderer.
    pub render: Arc<dyn Render>,
    /// Its name when the hub made this (for doors whose replies name the recipient).
    pub name: Arc<str>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient").finish_non_exhaustive()
    }
}

impl Recipient {
    /// Renders and queues `delivery`; false when the outbox refused it.
    pub fn deliver(&self, delivery: &Delivery) -> bool {
        match self.render.render_to(delivery, &self.name) {
            Some(bytes) => self.outbox.push(bytes).is_ok(),
            None => true,
        }
    }

    /// A `SERVER:` line.
    pub fn tell(&self, text: &str) -> bool {
        self.deliver(&Delivery::notice(text))
    }
}
