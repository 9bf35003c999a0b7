//! The changes a write request makes, and how each is applied inside its transaction.
//!
//! [`Change`] is the vocabulary of durable edits (accounts, roles, bans, mutes, rooms, reports,
//! the audit log); [`apply_one`] turns one into SQL. Invariants: it runs only on the store
//! thread, inside the request's transaction (so a request's changes commit together or not at
//! all), and names are matched by their lowercase key.

use std::time::SystemTime;

use rusqlite::params;

use super::records::{
    AuditEntry, HeldRecord, ReportRecord, StoredAccount, StoredBan, StoredMute, StoredRoom,
    to_millis,
};
use crate::event::Role;

/// One change to make. A request's changes are made in one transaction.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new account; fails if the name is registered already.
    Register(StoredAccount),
    /// A new password hash for an account.
    SetPassword {
        /// The account.
        name: String,
        /// The new Argon2 PHC string.
        password_hash: String,
    },
    /// Deletes an account.
    Unregister {
        /// The account.
        name: String,
    },
    /// A new role for an account.
    SetRole {
        /// The account.
        name: String,
        /// The role.
        role: Role,
    },
    /// Adds or replaces the ban on a name.
    Ban(StoredBan),
    /// Lifts the ban on a name.
    Unban {
        /// The name.
        name: String,
    },
    /// Adds or replaces the mute on a name.
    Mute(StoredMute),
    /// Lifts the mute on a name.
    Unmute {
        /// The name.
        name: String,
    },
    /// Saves a room's settings (voiced names included), or forgets them when it has none left.
    Room(StoredRoom),
    /// An audit log entry.
    Audit(AuditEntry),
    /// A line held for review.
    Hold(HeldRecord),
    /// A held line decided (approved, denied or expired): it leaves the queue.
    Release {
        /// Its number.
        id: u64,
    },
    /// A new report.
    Report(ReportRecord),
    /// A report resolved.
    Resolve {
        /// Its number.
        id: u64,
        /// Who resolved it.
        by: String,
        /// Their note.
        note: String,
    },
}

/// Applies one change inside the request's transaction.
pub(super) fn apply_one(tx: &rusqlite::Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    let key = |name: &str| name.to_ascii_lowercase();
    let until = |at: Option<SystemTime>| at.map(to_millis);
    match change {
        Change::Register(account) => {
            tx.execute(
                "INSERT INTO accounts (name_key, name, password_hash, role, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key(&account.name),
                    account.name,
                    account.password_hash,
                    account.role.as_str(),
                    to_millis(SystemTime::now())
                ],
            )?;
        }
        Change::SetPassword {
            name,
            password_hash,
        } => {
            tx.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE name_key = ?1",
                params![key(name), password_hash],
            )?;
        }
        Change::Unregister { name } => {
            tx.execute(
                "DELETE FROM accounts WHERE name_key = ?1",
                params![key(name)],
            )?;
        }
        Change::SetRole { name, role } => {
            tx.execute(
                "UPDATE accounts SET role = ?2 WHERE name_key = ?1",
                params![key(name), role.as_str()],
            )?;
        }
        Change::Ban(ban) => {
            tx.execute(
                "INSERT OR REPLACE INTO bans (name_key, name, addr, until, reason, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key(&ban.name),
                    ban.name,
                    ban.addr.map(|a| a.to_string()),
                    until(ban.until),
                    ban.reason,
                    to_millis(SystemTime::now())
                ],
            )?;
        }
        Change::Unban { name } => {
            tx.execute("DELETE FROM bans WHERE name_key = ?1", params![key(name)])?;
        }
        Change::Mute(mute) => {
            tx.execute(
                "INSERT OR REPLACE INTO mutes (name_key, name, until, reason, addr, also) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key(&mute.name),
                    mute.name,
                    until(mute.until),
                    mute.reason,
                    mute.addr.map(|a| a.to_string()),
                    mute.also.join(" ")
                ],
            )?;
        }
        Change::Unmute { name } => {
            tx.execute("DELETE FROM mutes WHERE name_key = ?1", params![key(name)])?;
        }
        Change::Room(room) => {
            tx.execute("DELETE FROM voiced WHERE room = ?1", params![room.name])?;
            let empty = !room.permanent && !room.moderated && room.topic.is_none();
            if empty && room.voiced.is_empty() {
                tx.execute("DELETE FROM rooms WHERE name = ?1", params![room.name])?;
                return Ok(());
            }
            tx.execute(
                "INSERT OR REPLACE INTO rooms (name, permanent, moderated, topic) VALUES (?1, ?2, ?3, ?4)",
                params![room.name, room.permanent, room.moderated, room.topic],
            )?;
            for name in &room.voiced {
                tx.execute(
                    "INSERT OR IGNORE INTO voiced (room, name_key) VALUES (?1, ?2)",
                    params![room.name, key(name)],
                )?;
            }
        }
        Change::Hold(held) => {
            tx.execute(
                "INSERT INTO held (id, at, room, sender, filter, kind, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    i64::try_from(held.id).unwrap_or(i64::MAX),
                    to_millis(held.at),
                    held.room,
                    held.sender,
                    held.filter,
                    held.kind.as_str(),
                    held.text
                ],
            )?;
        }
        Change::Release { id } => {
            tx.execute(
                "DELETE FROM held WHERE id = ?1",
                params![i64::try_from(*id).unwrap_or(i64::MAX)],
            )?;
        }
        Change::Report(report) => {
            tx.execute(
                "INSERT INTO reports (id, at, reporter, reported, room, reason, context) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    i64::try_from(report.id).unwrap_or(i64::MAX),
                    to_millis(report.at),
                    report.reporter,
                    report.reported,
                    report.room,
                    report.reason,
                    report.context.join("\n")
                ],
            )?;
        }
        Change::Resolve { id, by, note } => {
            tx.execute(
                "UPDATE reports SET resolved_at = ?2, resolved_by = ?3, note = ?4 WHERE id = ?1",
                params![
                    i64::try_from(*id).unwrap_or(i64::MAX),
                    to_millis(SystemTime::now()),
                    by,
                    note
                ],
            )?;
        }
        Change::Audit(entry) => {
            tx.execute(
                "INSERT INTO audit (at, who, whom, what, why, until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    to_millis(entry.at),
                    entry.who,
                    entry.whom,
                    entry.what,
                    entry.why,
                    until(entry.until)
                ],
            )?;
        }
    }
    Ok(())
}
