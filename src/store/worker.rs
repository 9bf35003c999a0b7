//! The store thread: the one owner of the SQLite connection.
//!
//! It takes jobs from a bounded queue. History lines gather in memory and are written together
//! when the oldest has waited [`HISTORY_WINDOW`](super::HISTORY_WINDOW), when
//! [`MAX_HISTORY_BATCH`](super::MAX_HISTORY_BATCH) have gathered, before any other write (so the
//! order of writes follows the order of requests), and when the queue closes. Each write request
//! is one transaction; its completion runs after the commit or the failure. A failure is logged
//! with its cause and counted; the thread carries on.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Instant, SystemTime};

use rusqlite::{Connection, params};

use super::changes::{Change, apply_one};
use super::records::{HistoryLine, to_millis};
use super::{Done, HISTORY_WINDOW, MAX_HISTORY_BATCH, StoreError};
use crate::metrics::Metrics;

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
