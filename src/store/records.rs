//! What the store keeps, as plain values: the rows the hub loads at start-up and the changes it
//! asks the store to make.
//!
//! Times are wall-clock (`SystemTime`), because they must mean the same after a restart; the hub
//! turns them into its monotonic clock when it loads them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::Role;

/// A registered account.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAccount {
    /// The name as registered.
    pub name: String,
    /// The Argon2 PHC string.
    pub password_hash: String,
    /// The role it logs in with.
    pub role: Role,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash stays out of logs and panics, like the password.
        f.debug_struct("StoredAccount")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A ban on a name and perhaps an address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBan {
    /// The name as the moderator typed it.
    pub name: String,
    /// The address it was connected from, unless exempt or offline.
    pub addr: Option<std::net::IpAddr>,
    /// When it ends; `None`: when lifted.
    pub until: Option<SystemTime>,
    /// Why, as shown to the banned.
    pub reason: String,
}

/// A mute on a person: the name it was given to, the other names they have used since, and a
/// guest's address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredMute {
    /// The name muted.
    pub name: String,
    /// When it ends; `None`: when lifted.
    pub until: Option<SystemTime>,
    /// Why.
    pub reason: String,
    /// A guest's address when muted (unless exempt): a reconnect from it under any name is
    /// muted too. `None` for a registered member, whose account carries the mute.
    #[serde(default)]
    pub addr: Option<std::net::IpAddr>,
    /// Other names the person has used while muted (renamed, or reconnected from the address).
    #[serde(default)]
    pub also: Vec<String>,
}

/// A room's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredRoom {
    /// The room.
    pub name: String,
    /// Kept when empty (`/room keep`).
    pub permanent: bool,
    /// Only moderators and voiced members may speak.
    pub moderated: bool,
    /// The topic, if set.
    pub topic: Option<String>,
    /// Names (case-folded) with voice.
    pub voiced: Vec<String>,
}

/// What a history line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// `NAME: TEXT`.
    Chat,
    /// `* NAME ACTION`.
    Action,
}

impl LineKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LineKind::Chat => "chat",
            LineKind::Action => "action",
        }
    }

    pub(crate) fn parse(text: &str) -> LineKind {
        if text == "action" {
            LineKind::Action
        } else {
            LineKind::Chat
        }
    }
}

/// One line of a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// The room.
    pub room: String,
    /// When it was said.
    pub at: SystemTime,
    /// Chat or action.
    pub kind: LineKind,
    /// Who said it.
    pub sender: String,
    /// What, after the filters.
    pub text: String,
}

/// One audit log entry: a moderation action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When.
    pub at: SystemTime,
    /// Who acted: a moderator's name or `the NAME filter`.
    pub who: String,
    /// On whom (or which room).
    pub whom: String,
    /// What: `ban`, `unban`, `mute`, `kick`, `role`…
    pub what: String,
    /// Why, if said.
    pub why: String,
    /// Until when, for mutes and bans with an end.
    pub until: Option<SystemTime>,
}

/// A line held for a moderator's review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRecord {
    /// Its number, shown to moderators (`#17`).
    pub id: u64,
    /// When it was held.
    pub at: SystemTime,
    /// The room it was said in.
    pub room: String,
    /// Who said it.
    pub sender: String,
    /// The filter that held it.
    pub filter: String,
    /// Chat or action.
    pub kind: LineKind,
    /// The line as sent.
    pub text: String,
}

/// A member's report of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    /// Its number (`#3`).
    pub id: u64,
    /// When it was made.
    pub at: SystemTime,
    /// Who reported.
    pub reporter: String,
    /// Whom.
    pub reported: String,
    /// In which room.
    pub room: String,
    /// Why, as the reporter said.
    pub reason: String,
    /// The last lines the reported member said in that room, oldest first.
    pub context: Vec<String>,
}

/// Everything the hub loads when the server starts.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Registered accounts.
    pub accounts: Vec<StoredAccount>,
    /// Bans in force.
    pub bans: Vec<StoredBan>,
    /// Mutes in force.
    pub mutes: Vec<StoredMute>,
    /// Rooms with settings.
    pub rooms: Vec<StoredRoom>,
    /// The newest history lines of each room, oldest first (as many as `[rooms] history`).
    pub history: Vec<HistoryLine>,
    /// Lines waiting for a moderator, oldest first.
    pub held: Vec<HeldRecord>,
    /// Open reports, oldest first.
    pub reports: Vec<ReportRecord>,
    /// The highest held-line and report numbers ever given, so numbers are never reused.
    pub last_ids: (u64, u64),
}

/// Milliseconds since the Unix epoch, the form times take in the database.
pub(crate) fn to_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The inverse of [`to_millis`].
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
