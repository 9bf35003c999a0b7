//! The store thread: the one owner of the SQLite connection.
//!
//! It takes jobs from a bounded queue. History lines gather in memory and are written together
//! when the oldest has waited [`HISTORY_WINDOW`](super::HISTORY_WINDOW), when
//! [`MAX_HISTORY_BATCH`](super::MAX_HISTORY_BATCH) have gathered, before any other write (so the
//! order of writes follows the order of requests), and when the queue closes. Each write request
//! is one transaction; its completion runs after the commit or the failure. A failure is logged
//! with its cause and counted; the thread carries on.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};

use super::records::{
    AuditEntry, HeldRecord, HistoryLine, LineKind, ReportRecord, Snapshot, StoredAccount,
    StoredBan, StoredMute, StoredRoom, from_millis, to_millis,
};
use super::{Done, HISTORY_WINDOW, MAX_HISTORY_BATCH, StoreError};
use crate::event::Role;
use crate::metrics::Metrics;

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

pub(super) enum Job {
    History(HistoryLine),
    Write(Vec<Change>, Done<()>),
    Read(Box<dyn FnOnce(&Connection) + Send>),
}

/// How often history older than `[storage] history_max_age` is looked for.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The least history deleted to make room when the database is at `[storage] max_size`.
const MIN_MAKE_ROOM: i64 = 64;

/// How much history the database keeps: per room, in all, and by age.
#[derive(Debug, Clone, Copy)]
pub(super) struct HistoryBounds {
    /// Lines kept per room; older ones are deleted as new ones are written.
    pub(super) per_room: usize,
    /// Lines kept in all (`0`: no limit); the oldest go first, whatever their room.
    pub(super) total: usize,
    /// Lines older than this are deleted (zero: no limit).
    pub(super) max_age: std::time::Duration,
}

pub(super) struct Worker {
    conn: Connection,
    /// Held for the thread's life: the database's lock file.
    _lock: Option<std::fs::File>,
    metrics: Arc<Metrics>,
    bounds: HistoryBounds,
    /// History lines in the database (counted at start, then kept up to date), so the total
    /// bound is enforced without counting on every write.
    lines: usize,
    /// When history was last swept for age (`None`: not yet).
    swept: Option<Instant>,
    pending: Vec<HistoryLine>,
    /// When the oldest pending history line arrived.
    oldest: Option<Instant>,
}

/// Whether `error` is SQLite's "database or disk is full" (here: `max_page_count` reached).
fn is_full(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull
    )
}

impl Worker {
    pub(super) fn new(
        conn: Connection,
        lock: Option<std::fs::File>,
        metrics: Arc<Metrics>,
        bounds: HistoryBounds,
    ) -> Worker {
        let lines = conn
            .query_row("SELECT count(*) FROM history", [], |r| r.get::<_, i64>(0))
            .map_or(0, |n| usize::try_from(n).unwrap_or(0));
        let mut worker = Worker {
            conn,
            _lock: lock,
            metrics,
            bounds,
            lines,
            swept: None,
            pending: Vec::new(),
            oldest: None,
        };
        worker.sweep();
        worker
    }

    /// Deletes history past the age and total bounds (logging a failure: the next sweep tries
    /// again).
    fn sweep(&mut self) {
        let result = (|| -> rusqlite::Result<()> {
            let due = self.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
            if due && !self.bounds.max_age.is_zero() {
                self.swept = Some(Instant::now());
                let cutoff = SystemTime::now()
                    .checked_sub(self.bounds.max_age)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let gone = self.conn.execute(
                    "DELETE FROM history WHERE at < ?1",
                    params![to_millis(cutoff)],
                )?;
                self.lines = self.lines.saturating_sub(gone);
            }
            if self.bounds.total > 0 && self.lines > self.bounds.total {
                let over = i64::try_from(self.lines - self.bounds.total).unwrap_or(i64::MAX);
                let _ = self.delete_oldest(over)?;
            }
            Ok(())
        })();
        if let Err(error) = result {
            tracing::error!(%error, "old chat history could not be deleted");
            self.metrics.store_error("history");
        }
    }

    /// Deletes the `count` oldest history lines, whatever their room; how many went.
    fn delete_oldest(&mut self, count: i64) -> rusqlite::Result<usize> {
        let gone = self.conn.execute(
            "DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?1)",
            params![count],
        )?;
        self.lines = self.lines.saturating_sub(gone);
        Ok(gone)
    }

    /// At `[storage] max_size`: deletes the oldest tenth of the history (at least a few
    /// lines), so the write that found the database full can be made. False when there was no
    /// history to delete.
    fn make_room(&mut self) -> bool {
        let count = i64::try_from(self.lines / 10)
            .unwrap_or(i64::MAX)
            .max(MIN_MAKE_ROOM);
        match self.delete_oldest(count) {
            Ok(0) => false,
            Ok(deleted) => {
                tracing::warn!(
                    deleted,
                    "the database is at [storage] max_size: the oldest chat history was deleted to make room"
                );
                true
            }
            Err(error) => {
                tracing::error!(%error, "the database is full and no history could be deleted");
                false
            }
        }
    }

    pub(super) fn run(mut self, queue: Receiver<Job>) {
        loop {
            let job = match self.oldest {
                None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(oldest) => {
                    let deadline = oldest + HISTORY_WINDOW;
                    queue.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            match job {
                Ok(Job::History(line)) => {
                    self.oldest.get_or_insert_with(Instant::now);
                    self.pending.push(line);
                    if self.pending.len() >= MAX_HISTORY_BATCH {
                        self.flush_history();
                    }
                }
                Ok(Job::Write(changes, done)) => {
                    self.flush_history();
                    let result = self.apply(&changes);
                    if let Err(error) = &result {
                        tracing::error!(%error, "a change could not be saved");
                        self.metrics.store_error("write");
                    }
                    done(result);
                }
                Ok(Job::Read(query)) => {
                    self.flush_history();
                    query(&self.conn);
                }
                Err(RecvTimeoutError::Timeout) => self.flush_history(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_history();
                    tracing::info!("store closed; everything queued is written");
                    return;
                }
            }
        }
    }

    /// Writes the pending history lines in one transaction and trims each room's history.
    fn flush_history(&mut self) {
        self.oldest = None;
        if self.pending.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending);
        let count = lines.len();
        if let Err(error) = self.write_history_making_room(&lines) {
            tracing::error!(%error, lines = count, "chat history could not be saved");
            self.metrics.store_error("history");
        }
        self.sweep();
    }

    /// Writes `lines`; at `[storage] max_size`, deletes the oldest history until they fit, and
    /// if even an empty history leaves no room, keeps the newest lines that fit.
    fn write_history_making_room(&mut self, mut lines: &[HistoryLine]) -> rusqlite::Result<()> {
        loop {
            match self.write_history(lines) {
                Err(error) if is_full(&error) => {
                    if self.make_room() {
                        continue;
                    }
                    if lines.len() > 1 {
                        lines = &lines[lines.len() / 2..];
                        continue;
                    }
                    return Err(error);
                }
                result => return result,
            }
        }
    }

    fn write_history(&mut self, lines: &[HistoryLine]) -> rusqlite::Result<()> {
        let keep = i64::try_from(self.bounds.per_room).unwrap_or(i64::MAX);
        let mut written = 0usize;
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO history (room, at, kind, sender, text) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for line in lines {
                written += insert.execute(params![
                    line.room,
                    to_millis(line.at),
                    line.kind.as_str(),
                    line.sender,
                    line.text
                ])?;
            }
            let rooms: HashSet<&str> = lines.iter().map(|l| l.room.as_str()).collect();
            let mut trim = tx.prepare_cached(
                "DELETE FROM history WHERE room = ?1 AND id <= \
                 (SELECT id FROM history WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?;
            let mut trimmed = 0usize;
            for room in rooms {
                trimmed += trim.execute(params![room, keep])?;
            }
            written = written.saturating_sub(trimmed);
        }
        tx.commit()?;
        self.lines += written;
        Ok(())
    }

    /// Makes `changes` in one transaction; at `[storage] max_size`, history is deleted to make
    /// room first, so accounts, bans, mutes and the audit log are written while there is any
    /// history left to give up.
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        loop {
            match self.apply_once(changes) {
                Err(error) if is_full(&error) && self.make_room() => continue,
                result => return Ok(result?),
            }
        }
    }

    fn apply_once(&mut self, changes: &[Change]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for change in changes {
            apply_one(&tx, change)?;
        }
        tx.commit()
    }
}

fn apply_one(tx: &rusqlite::Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
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
