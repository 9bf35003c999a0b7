//! What servers of one cluster say to each other, as JSON.
//!
//! Two kinds: [`RoomEvent`]s go through the JetStream stream (subjects
//! `chatpipe.room.<room>.line` and `.presence`), so every server sees them in one order;
//! [`NodeEvent`]s are plain NATS messages, to one server (`chatpipe.node.<node>`) or to all
//! (`chatpipe.all`), for what has no order to keep (a private message, a kick, a heartbeat).

use serde::{Deserialize, Serialize};

use crate::event::Role;
use crate::store::{Change, StoredAccount, StoredBan, StoredMute, StoredRoom};

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
    /// A server that has just started and subscribed: the others send their heartbeat at once
    /// rather than at their next tick. Presence events stored before a server started are
    /// replay to it and taken from heartbeats, so without this a member who joined elsewhere
    /// just before would be unknown there (no private messages, no `/who`) for up to a heartbeat
    /// interval.
    Hello {
        /// The server.
        node: String,
    },
}

/// A durable change every server of a cluster makes to its own store (its cache of the shared
/// state): accounts, roles, bans, mutes and room settings. Published to the `CHATPIPE_STATE`
/// stream by the server where it was made; each other server reads that stream with a durable
/// consumer of its own, so one that was down catches up when it is back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Shared {
    /// A new account.
    Register(StoredAccount),
    /// A new password.
    SetPassword {
        /// The account.
        name: String,
        /// Its new hash.
        password_hash: String,
    },
    /// An account deleted.
    Unregister {
        /// The account.
        name: String,
    },
    /// A new role.
    SetRole {
        /// The account.
        name: String,
        /// The role.
        role: Role,
    },
    /// A ban.
    Ban(StoredBan),
    /// A ban lifted.
    Unban {
        /// The name.
        name: String,
    },
    /// A mute.
    Mute(StoredMute),
    /// A mute lifted.
    Unmute {
        /// The name.
        name: String,
    },
    /// A room's settings.
    Room(StoredRoom),
}

impl Shared {
    /// The shared part of a store change; `None` for what stays with one server (history, the
    /// audit log, the moderation queue).
    pub fn of(change: &Change) -> Option<Shared> {
        Some(match change {
            Change::Register(account) => Shared::Register(account.clone()),
            Change::SetPassword {
                name,
                password_hash,
            } => Shared::SetPassword {
                name: name.clone(),
                password_hash: password_hash.clone(),
            },
            Change::Unregister { name } => Shared::Unregister { name: name.clone() },
            Change::SetRole { name, role } => Shared::SetRole {
                name: name.clone(),
                role: *role,
            },
            Change::Ban(ban) => Shared::Ban(ban.clone()),
            Change::Unban { name } => Shared::Unban { name: name.clone() },
            Change::Mute(mute) => Shared::Mute(mute.clone()),
            Change::Unmute { name } => Shared::Unmute { name: name.clone() },
            Change::Room(room) => Shared::Room(room.clone()),
            _ => return None,
        })
    }

    /// The store change that records it.
    pub fn change(&self) -> Change {
        match self.clone() {
            Shared::Register(account) => Change::Register(account),
            Shared::SetPassword {
                name,
                password_hash,
            } => Change::SetPassword {
                name,
                password_hash,
            },
            Shared::Unregister { name } => Change::Unregister { name },
            Shared::SetRole { name, role } => Change::SetRole { name, role },
            Shared::Ban(ban) => Change::Ban(ban),
            Shared::Unban { name } => Change::Unban { name },
            Shared::Mute(mute) => Change::Mute(mute),
            Shared::Unmute { name } => Change::Unmute { name },
            Shared::Room(room) => Change::Room(room),
        }
    }
}

/// A [`Shared`] change with the server it was made on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedChange {
    /// Where it was made (which skips it).
    pub node: String,
    /// What.
    pub change: Shared,
}
