//! The database file: its lock, its pragmas, and opening it read-only or copying it.
//!
//! Invariants: a database is written by one chatpipe at a time (the lock file beside it, held
//! by the store thread for its life); a writable connection runs in WAL mode with
//! `synchronous = FULL` and the size cap from `[storage] max_size`; read-only opens take no lock
//! and refuse a file that is not a chatpipe database or is newer than this binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::schema::{self, SCHEMA_VERSION, SchemaError};
use crate::config::StorageConfig;

/// Takes the lock file beside `path`, so two chatpipes never write one database.
pub(super) fn lock_beside(path: &Path) -> Result<std::fs::File, String> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot create the lock file {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err("locked by another chatpipe (its lock file is held); stop it first".into())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock {}: {e}", lock_path.display()))
        }
    }
}

/// WAL with full synchronisation: a commit is durable when it returns. A size cap, if set.
pub(super) fn configure(conn: &Connection, config: &StorageConfig) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // Reading the version first makes SQLite look at the file: a file that is not a database
    // fails here, with "file is not a database".
    schema::version(conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if config.max_size > 0 {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (config.max_size as i64 / page_size.max(512)).max(16);
        conn.pragma_update(None, "max_page_count", pages)?;
    }
    Ok(())
}

/// SQLite's message for an error, without the wrapping rusqlite adds.
pub(super) fn describe(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

/// Opens an existing database read-only (for `chatpipe audit` and `chatpipe backup`), without
/// its lock: a running server may hold that.
///
/// # Errors
/// [`StoreError::Open`] when the file is missing or not a chatpipe database.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let fail = |cause: String| StoreError::Open {
        path: path.to_owned(),
        cause,
    };
    if !path.is_file() {
        return Err(fail("no such database file".into()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(describe(&e)))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| fail(describe(&e)))?;
    let version = schema::version(&conn).map_err(|e| fail(describe(&e)))?;
    if version == 0 {
        return Err(fail("not a chatpipe database (no schema)".into()));
    }
    if version > SCHEMA_VERSION {
        return Err(fail(SchemaError::TooNew { found: version }.to_string()));
    }
    Ok(conn)
}

/// Copies the database at `from` to `to` with SQLite's online backup: consistent even while a
/// server writes to it.
///
/// # Errors
/// When either file cannot be opened or the copy fails.
pub fn backup(from: &Path, to: &Path) -> Result<(), StoreError> {
    let source = open_read_only(from)?;
    if to.exists() {
        return Err(StoreError::Open {
            path: to.to_owned(),
            cause: "already exists; choose a new file".into(),
        });
    }
    let mut target = Connection::open(to).map_err(|e| StoreError::Open {
        path: to.to_owned(),
        cause: describe(&e),
    })?;
    let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
    backup.run_to_completion(256, Duration::from_millis(5), None)?;
    Ok(())
}
