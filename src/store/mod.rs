//! The store: what must survive a restart (accounts, roles, bans, mutes, room settings, chat
//! history, the audit log), in an embedded SQLite database.
//!
//! One thread owns the connection (`worker`); everyone else talks to it through [`Store`], a
//! cheap handle over a bounded queue. The hub never waits on disk:
//! - chat history is queued with [`Store::record_history`], which never blocks (a full queue drops
//!   the line and counts it: history is best-effort), and written in batched transactions — one
//!   per [`HISTORY_WINDOW`] or [`MAX_HISTORY_BATCH`] lines, whichever comes first;
//! - a change that someone must be told about (a ban, a registration) goes with
//!   [`Store::write`] and a completion that runs once it is committed or has failed, so nobody is
//!   told "done" before it is on disk;
//! - queries ([`Store::read`], [`Store::account`]) answer through a completion or a future.
//!
//! Invariants: the database is opened by one chatpipe at a time (a lock file beside it); WAL
//! mode with `synchronous = FULL`, so a committed change survives a crash of the process or the
//! machine; every change of one request is one transaction; passwords never reach the store
//! (only Argon2 hashes do) and hashes never reach a log line.

mod changes;
mod file;
mod queries;
mod records;
mod schema;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use changes::Change;
pub use file::{backup, open_read_only};
use file::{configure, describe, lock_beside};
pub use records::{
    AuditEntry, HeldRecord, HistoryLine, LineKind, ReportRecord, Snapshot, StoredAccount,
    StoredBan, StoredMute, StoredRoom,
};
pub use schema::{SCHEMA_VERSION, SchemaError, create_at_version};

use crate::config::StorageConfig;
use crate::metrics::Metrics;

/// Jobs queued for the store thread. Full means the disk is far behind: history is dropped
/// (counted) and requests are answered "busy" rather than letting memory grow.
const QUEUE_CAPACITY: usize = 8192;

/// The longest a chat line waits before it is written: the history a crash may lose.
pub const HISTORY_WINDOW: Duration = Duration::from_millis(250);

/// The most history lines written in one transaction.
pub const MAX_HISTORY_BATCH: usize = 2000;

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or set up.
    #[error("{}: {cause}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why, in a few words.
        cause: String,
    },
    /// SQLite refused a statement (a full disk, a failing device…).
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The queue to the store thread is full.
    #[error("the store is busy; try again in a moment")]
    Busy,
    /// The store thread has stopped.
    #[error("the store has stopped")]
    Closed,
}

/// A completion: runs on the store thread once a job is done. Keep it short (hand the result
/// to a channel or an outbox).
pub type Done<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

/// The handle to the store thread. Cheap to clone; the thread stops once every handle is dropped
/// and the queue is drained (everything queued is written first).
#[derive(Clone)]
pub struct Store {
    jobs: SyncSender<worker::Job>,
    metrics: Arc<Metrics>,
    /// Where the database is (`:memory:` when nothing is kept).
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The thread behind a [`Store`]; [`StoreThread::join`] waits until everything queued is
/// written.
#[derive(Debug)]
pub struct StoreThread(std::thread::JoinHandle<()>);

impl StoreThread {
    /// Waits for the store thread to finish, which it does once every [`Store`] handle is gone
    /// and what they queued is written. Blocking: call it from a blocking context.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the store thread panicked; recent history may be lost");
        }
    }
}

impl Store {
    /// Opens (creating or upgrading) the database `config.path`, or an in-memory one when the
    /// path is `""`; loads what the hub needs at start-up (with `history` lines per room); and
    /// starts the store thread.
    ///
    /// # Errors
    /// [`StoreError::Open`] naming the file and the cause: locked by another chatpipe, not a
    /// database, made by a newer chatpipe, a directory, no permission…
    pub fn open(
        config: &StorageConfig,
        history: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, Snapshot, StoreThread), StoreError> {
        let (conn, lock, path) = if config.path.as_os_str().is_empty() {
            let conn = Connection::open_in_memory()?;
            (conn, None, PathBuf::from(":memory:"))
        } else {
            let path = config.path.clone();
            let fail = |cause: String| StoreError::Open {
                path: path.clone(),
                cause,
            };
            if path.is_dir() {
                return Err(fail("is a directory, not a database file".into()));
            }
            let lock = lock_beside(&path).map_err(fail)?;
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
            .map_err(|e| fail(e.to_string()))?;
            (conn, Some(lock), path)
        };
        let fail = |cause: String| StoreError::Open {
            path: path.clone(),
            cause,
        };
        let mut conn = conn;
        configure(&conn, config).map_err(|e| fail(describe(&e)))?;
        let from = schema::migrate(&mut conn).map_err(|e| match e {
            SchemaError::Sqlite(e) => fail(describe(&e)),
            too_new => fail(too_new.to_string()),
        })?;
        if from != 0 && from != SCHEMA_VERSION {
            tracing::info!(path = %path.display(), from, to = SCHEMA_VERSION, "database upgraded");
        }
        let snapshot = queries::load_snapshot(&conn, history).map_err(|e| fail(describe(&e)))?;
        let (jobs, queue) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let bounds = worker::HistoryBounds {
            per_room: config.history_keep,
            total: config.history_max_lines,
            max_age: config.history_max_age,
        };
        let thread = worker::Worker::new(conn, lock, metrics.clone(), bounds);
        let handle = std::thread::Builder::new()
            .name("chatpipe-store".into())
            .spawn(move || thread.run(queue))
            .map_err(|e| fail(format!("cannot start the store thread: {e}")))?;
        tracing::info!(path = %path.display(), schema = SCHEMA_VERSION, "store opened");
        let store = Store {
            jobs,
            metrics,
            path: Arc::new(path),
        };
        Ok((store, snapshot, StoreThread(handle)))
    }

    /// The database file (`:memory:` when nothing is kept on disk).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a chat line for the room's history without waiting. False (and counted) when the
    /// queue is full: history is best-effort.
    pub fn record_history(&self, line: HistoryLine) -> bool {
        match self.jobs.try_send(worker::Job::History(line)) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.store_error("history_dropped");
                false
            }
        }
    }

    /// Makes `changes` in one transaction, then calls `done` on the store thread (and only
    /// there, so `done` may block briefly). Never waits.
    ///
    /// # Errors
    /// [`StoreError::Busy`] or [`StoreError::Closed`] when the job could not be queued; `done` is
    /// then dropped without being called.
    pub fn write(&self, changes: Vec<Change>, done: Done<()>) -> Result<(), StoreError> {
        self.send(worker::Job::Write(changes, done))
    }

    /// Makes `changes` in one transaction and waits for the commit.
    ///
    /// # Errors
    /// Why the changes were not made.
    pub async fn write_and_wait(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.write(
            changes,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Runs `query` on the store thread, then `done` with its result (on the store thread).
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        done: Done<T>,
    ) -> Result<(), StoreError> {
        let job = worker::Job::Read(Box::new(move |conn: &Connection| {
            done(query(conn).map_err(StoreError::from));
        }));
        self.send(job)
    }

    /// The newest `count` history lines of `room`, oldest first, delivered to `done`.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn history(
        &self,
        room: &str,
        count: usize,
        done: Done<Vec<HistoryLine>>,
    ) -> Result<(), StoreError> {
        let room = room.to_owned();
        self.read(
            move |conn| queries::recent_history(conn, &room, count, 0),
            done,
        )
    }

    /// The newest `count` lines `sender` said in `room`, oldest first, delivered to `done`.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn lines_by(
        &self,
        room: &str,
        sender: &str,
        count: usize,
        done: Done<Vec<HistoryLine>>,
    ) -> Result<(), StoreError> {
        let (room, sender) = (room.to_owned(), sender.to_owned());
        self.read(
            move |conn| queries::lines_by(conn, &room, &sender, count),
            done,
        )
    }

    /// The newest `count` audit log entries, oldest first, delivered to `done`.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub fn recent_audit(
        &self,
        count: usize,
        done: Done<Vec<AuditEntry>>,
    ) -> Result<(), StoreError> {
        self.read(move |conn| queries::recent_audit(conn, count), done)
    }

    /// The registered account called `name` (any case), if there is one.
    ///
    /// # Errors
    /// When the store cannot answer.
    pub async fn account(&self, name: &str) -> Result<Option<StoredAccount>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = name.to_ascii_lowercase();
        self.read(
            move |conn| queries::account(conn, &key),
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    fn send(&self, job: worker::Job) -> Result<(), StoreError> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.metrics.store_error("busy");
                Err(StoreError::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }
}

/// The audit log, newest last, filtered by time and actor.
///
/// # Errors
/// When the query fails.
pub fn audit_log(
    conn: &Connection,
    since: Option<std::time::SystemTime>,
    who: Option<&str>,
) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(queries::audit_log(conn, since, who)?)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::event::Role;

    fn open_in_memory(history: usize, keep: usize) -> (Store, Snapshot, StoreThread) {
        let config = StorageConfig {
            path: PathBuf::new(),
            max_size: 0,
            history_keep: keep,
            ..StorageConfig::default()
        };
        Store::open(&config, history, Metrics::new()).unwrap()
    }

    fn line(room: &str, n: usize) -> HistoryLine {
        HistoryLine {
            room: room.into(),
            at: SystemTime::now(),
            kind: LineKind::Chat,
            sender: "alice".into(),
            text: format!("line {n}"),
        }
    }

    #[tokio::test]
    async fn changes_are_committed_and_read_back() {
        let (store, snapshot, thread) = open_in_memory(20, 100);
        assert!(snapshot.accounts.is_empty());
        let account = StoredAccount {
            name: "Carol".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            role: Role::User,
        };
        store
            .write_and_wait(vec![
                Change::Register(account.clone()),
                Change::SetRole {
                    name: "carol".into(),
                    role: Role::Moderator,
                },
            ])
            .await
            .unwrap();
        let read = store.account("CAROL").await.unwrap().unwrap();
        assert_eq!(read.name, "Carol");
        assert_eq!(read.role, Role::Moderator);
        // Registering a taken name fails, and the failure changes nothing.
        let twice = store
            .write_and_wait(vec![
                Change::Unregister {
                    name: "nobody".into(),
                },
                Change::Register(account),
            ])
            .await;
        assert!(twice.is_err());
        assert!(store.account("carol").await.unwrap().is_some());
        assert!(
            !format!("{read:?}").contains("argon2"),
            "Debug hides the hash"
        );
        drop(store);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn history_is_batched_trimmed_and_read_newest_last() {
        let (store, _, thread) = open_in_memory(20, 300);
        for n in 0..1000 {
            assert!(store.record_history(line("lobby", n)));
        }
        store.record_history(line("games", 0));
        let (tx, rx) = tokio::sync::oneshot::channel();
        store
            .history(
                "lobby",
                200,
                Box::new(move |lines| {
                    let _ = tx.send(lines);
                }),
            )
            .unwrap();
        let lines = rx.await.unwrap().unwrap();
        assert_eq!(lines.len(), 200);
        assert_eq!(lines.first().unwrap().text, "line 800");
        assert_eq!(lines.last().unwrap().text, "line 999");
        let (tx, rx) = tokio::sync::oneshot::channel();
        store
            .read(
                |conn| {
                    conn.query_row(
                        "SELECT count(*) FROM history WHERE room = 'lobby'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                },
                Box::new(move |count| {
                    let _ = tx.send(count);
                }),
            )
            .unwrap();
        assert_eq!(rx.await.unwrap().unwrap(), 300, "trimmed to history_keep");
        drop(store);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_audit_log_filters_by_time_and_actor() {
        let (store, _, thread) = open_in_memory(0, 200);
        let entry = |who: &str, ago: u64| {
            Change::Audit(AuditEntry {
                at: SystemTime::now() - Duration::from_secs(ago),
                who: who.into(),
                whom: "eve".into(),
                what: "ban".into(),
                why: String::new(),
                until: None,
            })
        };
        store
            .write_and_wait(vec![
                entry("mod", 7200),
                entry("root", 60),
                entry("mod", 10),
            ])
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        store
            .read(
                |conn| {
                    let since = SystemTime::now() - Duration::from_secs(3600);
                    Ok((
                        queries::audit_log(conn, Some(since), None)?,
                        queries::audit_log(conn, None, Some("MOD"))?,
                    ))
                },
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .unwrap();
        let (recent, by_mod) = rx.await.unwrap().unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(by_mod.len(), 2);
        drop(store);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
    }

    /// Runs `query` on the store thread, after everything queued before it.
    async fn query<T: Send + 'static>(
        store: &Store,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        store
            .read(
                query,
                Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            )
            .unwrap();
        rx.await.unwrap().unwrap()
    }

    /// Queues `line`, waiting while the queue is full.
    async fn record(store: &Store, line: HistoryLine) {
        while !store.record_history(line.clone()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn opened(config: StorageConfig) -> (Store, Snapshot, StoreThread) {
        Store::open(&config, 0, Metrics::new()).unwrap()
    }

    async fn close(store: Store, thread: StoreThread) {
        drop(store);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
    }

    /// Room churn cannot grow the history past `history_max_lines`: the oldest lines go first,
    /// whatever their room (each room alone stays under `history_keep`).
    #[tokio::test]
    async fn history_is_bounded_in_all_across_rooms() {
        let (store, _, thread) = opened(StorageConfig {
            path: PathBuf::new(),
            history_max_lines: 100,
            ..StorageConfig::default()
        });
        for n in 0..300 {
            record(&store, line(&format!("room{}", n / 5), n)).await;
        }
        let (count, oldest) = query(&store, |conn| {
            conn.query_row("SELECT count(*), min(text) FROM history", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
        })
        .await;
        assert_eq!(count, 100, "the total bound");
        assert_eq!(oldest, "line 200", "the oldest went first");
        close(store, thread).await;
    }

    /// Lines older than `history_max_age` are deleted (at the latest when the database is
    /// opened, then every minute).
    #[tokio::test]
    async fn history_is_bounded_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            path: dir.path().join("age.db"),
            history_max_age: Duration::from_secs(24 * 3600),
            ..StorageConfig::default()
        };
        let (store, _, thread) = opened(config.clone());
        let mut old = line("lobby", 1);
        old.at = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        record(&store, old).await;
        record(&store, line("lobby", 2)).await;
        close(store, thread).await;
        let (store, _, thread) = opened(config);
        let texts = query(&store, |conn| {
            conn.prepare("SELECT text FROM history")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .await;
        assert_eq!(texts, ["line 2"]);
        close(store, thread).await;
    }

    /// At `max_size`, the oldest history is deleted to make room: history goes on being
    /// written, and so do moderation changes.
    #[tokio::test]
    async fn at_the_size_cap_history_makes_room_for_moderation() {
        let max_size = 256 * 1024;
        let (store, _, thread) = opened(StorageConfig {
            path: PathBuf::new(),
            max_size,
            ..StorageConfig::default()
        });
        let text = "x".repeat(1000);
        // Several times what fits, over rooms of their own (as a guest cycling room names).
        for n in 0..1000 {
            let mut churn = line(&format!("room{n}"), n);
            churn.text = format!("{n:04} {text}");
            record(&store, churn).await;
        }
        let ban = Change::Ban(StoredBan {
            name: "eve".into(),
            addr: None,
            until: None,
            reason: "banned by mod".into(),
        });
        store.write_and_wait(vec![ban]).await.unwrap();
        let (count, newest, pages) = query(&store, |conn| {
            let (count, newest) =
                conn.query_row("SELECT count(*), max(text) FROM history", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            Ok((count, newest, pages))
        })
        .await;
        assert!(count > 0 && count < 1000, "{count} lines kept");
        assert!(newest.starts_with("0999 "), "the newest line was written");
        assert!(pages * 4096 <= max_size as i64, "{pages} pages");
        close(store, thread).await;
    }
}
