//! The store's queries: reading accounts, the start-up snapshot, history and the audit log.
//!
//! Plain functions over a [`Connection`], run on the store thread (through a read job) or on a
//! read-only connection (`chatpipe audit`). Invariants: they only read, except
//! [`load_snapshot`], which deletes expired bans and mutes as it loads; every list comes back
//! oldest first.

use std::net::IpAddr;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, params};

use super::records::{
    AuditEntry, HeldRecord, HistoryLine, LineKind, ReportRecord, Snapshot, StoredAccount,
    StoredBan, StoredMute, StoredRoom, from_millis, to_millis,
};
use crate::event::Role;

fn role(text: &str) -> Role {
    match text {
        "admin" => Role::Admin,
        "moderator" => Role::Moderator,
        _ => Role::User,
    }
}

/// The account with name key `key`, if registered.
pub(super) fn account(conn: &Connection, key: &str) -> rusqlite::Result<Option<StoredAccount>> {
    conn.query_row(
        "SELECT name, password_hash, role FROM accounts WHERE name_key = ?1",
        params![key],
        |row| {
            Ok(StoredAccount {
                name: row.get(0)?,
                password_hash: row.get(1)?,
                role: role(&row.get::<_, String>(2)?),
            })
        },
    )
    .optional()
}

/// What the hub needs at start-up; expired bans and mutes are left out (and deleted).
pub(super) fn load_snapshot(conn: &Connection, history: usize) -> rusqlite::Result<Snapshot> {
    let now = to_millis(SystemTime::now());
    conn.execute(
        "DELETE FROM bans WHERE until IS NOT NULL AND until <= ?1",
        params![now],
    )?;
    conn.execute(
        "DELETE FROM mutes WHERE until IS NOT NULL AND until <= ?1",
        params![now],
    )?;
    let accounts = conn
        .prepare("SELECT name, password_hash, role FROM accounts ORDER BY name_key")?
        .query_map([], |row| {
            Ok(StoredAccount {
                name: row.get(0)?,
                password_hash: row.get(1)?,
                role: role(&row.get::<_, String>(2)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let bans = conn
        .prepare("SELECT name, addr, until, reason FROM bans ORDER BY created_at")?
        .query_map([], |row| {
            Ok(StoredBan {
                name: row.get(0)?,
                addr: row
                    .get::<_, Option<String>>(1)?
                    .and_then(|a| a.parse::<IpAddr>().ok()),
                until: row.get::<_, Option<i64>>(2)?.map(from_millis),
                reason: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mutes = conn
        .prepare("SELECT name, until, reason, addr, also FROM mutes")?
        .query_map([], |row| {
            Ok(StoredMute {
                name: row.get(0)?,
                until: row.get::<_, Option<i64>>(1)?.map(from_millis),
                reason: row.get(2)?,
                addr: row
                    .get::<_, Option<String>>(3)?
                    .and_then(|a| a.parse::<IpAddr>().ok()),
                also: row
                    .get::<_, String>(4)?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut rooms: Vec<StoredRoom> = conn
        .prepare("SELECT name, permanent, moderated, topic FROM rooms ORDER BY name")?
        .query_map([], |row| {
            Ok(StoredRoom {
                name: row.get(0)?,
                permanent: row.get(1)?,
                moderated: row.get(2)?,
                topic: row.get(3)?,
                voiced: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut voiced =
        conn.prepare("SELECT name_key FROM voiced WHERE room = ?1 ORDER BY name_key")?;
    for room in &mut rooms {
        room.voiced = voiced
            .query_map(params![room.name], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
    }
    let history = if history == 0 {
        Vec::new()
    } else {
        let keep = i64::try_from(history).unwrap_or(i64::MAX);
        conn.prepare(
            "SELECT room, at, kind, sender, text FROM (
                SELECT *, row_number() OVER (PARTITION BY room ORDER BY id DESC) AS age FROM history
             ) WHERE age <= ?1 ORDER BY room, id",
        )?
        .query_map(params![keep], history_line)?
        .collect::<rusqlite::Result<_>>()?
    };
    let held = conn
        .prepare("SELECT id, at, room, sender, filter, kind, text FROM held ORDER BY id")?
        .query_map([], |row| {
            Ok(HeldRecord {
                id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                at: from_millis(row.get(1)?),
                room: row.get(2)?,
                sender: row.get(3)?,
                filter: row.get(4)?,
                kind: LineKind::parse(&row.get::<_, String>(5)?),
                text: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let reports = conn
        .prepare(
            "SELECT id, at, reporter, reported, room, reason, context FROM reports \
             WHERE resolved_at IS NULL ORDER BY id",
        )?
        .query_map([], |row| {
            Ok(ReportRecord {
                id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                at: from_millis(row.get(1)?),
                reporter: row.get(2)?,
                reported: row.get(3)?,
                room: row.get(4)?,
                reason: row.get(5)?,
                context: row
                    .get::<_, String>(6)?
                    .lines()
                    .map(str::to_owned)
                    .filter(|l| !l.is_empty())
                    .collect(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let last = |table: &str| -> rusqlite::Result<u64> {
        let max: Option<i64> =
            conn.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0))?;
        Ok(max.and_then(|m| u64::try_from(m).ok()).unwrap_or(0))
    };
    // Held lines leave the table when decided, so the audit log remembers the highest number.
    let audit_held: Option<i64> = conn.query_row(
        "SELECT max(CAST(substr(whom_id, 2) AS INTEGER)) FROM (SELECT why AS whom_id FROM audit WHERE what IN ('approve', 'deny', 'expire') AND why LIKE '#%')",
        [],
        |r| r.get(0),
    )?;
    let last_held = last("held")?.max(audit_held.and_then(|m| u64::try_from(m).ok()).unwrap_or(0));
    Ok(Snapshot {
        accounts,
        bans,
        mutes,
        rooms,
        history,
        held,
        reports,
        last_ids: (last_held, last("reports")?),
    })
}

fn history_line(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryLine> {
    Ok(HistoryLine {
        room: row.get(0)?,
        at: from_millis(row.get(1)?),
        kind: LineKind::parse(&row.get::<_, String>(2)?),
        sender: row.get(3)?,
        text: row.get(4)?,
    })
}

/// The newest `count` lines of `room`, oldest first, skipping the newest `skip`.
pub(super) fn recent_history(
    conn: &Connection,
    room: &str,
    count: usize,
    skip: usize,
) -> rusqlite::Result<Vec<HistoryLine>> {
    let mut lines: Vec<HistoryLine> = conn
        .prepare_cached(
            "SELECT room, at, kind, sender, text FROM history WHERE room = ?1 \
             ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?
        .query_map(
            params![
                room,
                i64::try_from(count).unwrap_or(i64::MAX),
                i64::try_from(skip).unwrap_or(i64::MAX)
            ],
            history_line,
        )?
        .collect::<rusqlite::Result<_>>()?;
    lines.reverse();
    Ok(lines)
}

/// The newest `count` lines `sender` said in `room`, oldest first.
pub(super) fn lines_by(
    conn: &Connection,
    room: &str,
    sender: &str,
    count: usize,
) -> rusqlite::Result<Vec<HistoryLine>> {
    let mut lines: Vec<HistoryLine> = conn
        .prepare_cached(
            "SELECT room, at, kind, sender, text FROM history \
             WHERE room = ?1 AND lower(sender) = lower(?2) ORDER BY id DESC LIMIT ?3",
        )?
        .query_map(
            params![room, sender, i64::try_from(count).unwrap_or(i64::MAX)],
            history_line,
        )?
        .collect::<rusqlite::Result<_>>()?;
    lines.reverse();
    Ok(lines)
}

/// The newest `count` audit entries, oldest first.
pub(super) fn recent_audit(conn: &Connection, count: usize) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut entries: Vec<AuditEntry> = conn
        .prepare_cached(
            "SELECT at, who, whom, what, why, until FROM audit ORDER BY id DESC LIMIT ?1",
        )?
        .query_map(
            params![i64::try_from(count).unwrap_or(i64::MAX)],
            audit_entry,
        )?
        .collect::<rusqlite::Result<_>>()?;
    entries.reverse();
    Ok(entries)
}

/// The audit log, oldest first.
pub(super) fn audit_log(
    conn: &Connection,
    since: Option<SystemTime>,
    who: Option<&str>,
) -> rusqlite::Result<Vec<AuditEntry>> {
    let since = since.map_or(i64::MIN, to_millis);
    conn.prepare(
        "SELECT at, who, whom, what, why, until FROM audit \
         WHERE at >= ?1 AND (?2 IS NULL OR lower(who) = lower(?2)) ORDER BY id",
    )?
    .query_map(params![since, who], audit_entry)?
    .collect()
}

/// An audit row (`at, who, whom, what, why, until`).
fn audit_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: from_millis(row.get(0)?),
        who: row.get(1)?,
        whom: row.get(2)?,
        what: row.get(3)?,
        why: row.get(4)?,
        until: row.get::<_, Option<i64>>(5)?.map(from_millis),
    })
}
