//! What servers of one cluster say to each other, as JSON.
//!
//! Two kinds: [`RoomEvent`]s go through the JetStream stream (subjects
//! `chatpipe.room.<room>.line` and `.presence`), so every server sees them in one order;
//! [`NodeEvent`]s are plain NATS messages, to one server (`chatpipe.node.<node>`) or to all
//! (`chatpipe.all`), for what has no order to keep (a private message, a kick, a heartbeat).

use serde::{Deserialize, Serialize};

use crate::event::Role;

/// Something that happened in a room, in the room's order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum RoomEvent {
    /// A chat line or an action, after the sender's server's pipeline.
    Line {
        /// The server the sender is connected to.
        node: String,
        /// The sender.
        from: String,
        /// `true` for an action (`/me`).
        action: bool,
        /// The text, filtered.
        text: String,
        /// Held for review and approved.
        reviewed: bool,
    },
    /// A member of `node` joined the room.
    Joined {
        /// Its server.
        node: String,
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
        /// It connected (rather than moved between rooms).
        chat: bool,
    },
    /// A member of `node` left the room.
    Left {
        /// Its server.
        node: String,
        /// Its name.
        name: String,
        /// It disconnected (rather than moved between rooms).
        chat: bool,
    },
    /// A member of `node` is now called `new`.
    Renamed {
        /// Its server.
        node: String,
        /// The old name.
        old: String,
        /// The new name.
        new: String,
    },
}

/// A member as its server describes it in a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteMember {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The rooms it is in.
    pub rooms: Vec<String>,
}

/// A message between servers outside the rooms' order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A private message for a member of the receiving server.
    Private {
        /// The sender.
        from: String,
        /// The recipient.
        to: String,
        /// The text, filtered.
        text: String,
    },
    /// A moderator's kick, for whichever server holds `name`.
    Kick {
        /// Whom.
        name: String,
        /// The moderator.
        by: String,
        /// Why.
        reason: String,
    },
    /// A ban on a name, for every server: each records it, the one holding `name` expels it.
    Ban {
        /// Whom.
        name: String,
        /// The moderator.
        by: String,
        /// How long, in seconds; `None` until lifted.
        seconds: Option<u64>,
    },
    /// A mute, for whichever server holds `name`.
    Mute {
        /// Whom.
        name: String,
        /// The moderator.
        by: String,
        /// How long, in seconds.
        seconds: u64,
    },
    /// A server's members, every couple of seconds: the others' view of presence heals from
    /// these, and a server whose heartbeats stop is taken for dead.
    Heartbeat {
        /// The server.
        node: String,
        /// Everyone connected to it.
        members: Vec<RemoteMember>,
    },
}
