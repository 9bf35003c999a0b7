//! The database schema and its migrations, tracked with `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a database from version `i` to `i + 1`. Opening a database applies every
//! missing migration in one transaction, so an upgrade either happens whole or not at all. A
//! database with a version above the newest this build knows was made by a newer chatpipe and is
//! refused: this build would not know what its tables mean.

use rusqlite::Connection;

/// Version 1: accounts, bans, mutes, room settings, history and the audit log.
const V1: &str = "
CREATE TABLE accounts (
    name_key      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user',
    created_at    INTEGER NOT NULL
);
CREATE TABLE bans (
    name_key   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    addr       TEXT,
    until      INTEGER,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE mutes (
    name_key TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    until    INTEGER,
    reason   TEXT NOT NULL
);
CREATE TABLE rooms (
    name      TEXT PRIMARY KEY,
    permanent INTEGER NOT NULL DEFAULT 0,
    moderated INTEGER NOT NULL DEFAULT 0,
    topic     TEXT
);
CREATE TABLE voiced (
    room     TEXT NOT NULL,
    name_key TEXT NOT NULL,
    PRIMARY KEY (room, name_key)
);
CREATE TABLE history (
    id     INTEGER PRIMARY KEY,
    room   TEXT NOT NULL,
    at     INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    sender TEXT NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX history_by_room ON history (room, id);
CREATE TABLE audit (
    id    INTEGER PRIMARY KEY,
    at    INTEGER NOT NULL,
    who   TEXT NOT NULL,
    whom  TEXT NOT NULL,
    what  TEXT NOT NULL,
    why   TEXT NOT NULL,
    until INTEGER
);
";

/// Version 2: the moderation queue (held lines, reports) and a time index on the audit log for
/// `chatpipe audit --since`.
const V2: &str = "
CREATE TABLE held (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    room      TEXT NOT NULL,
    sender    TEXT NOT NULL,
    filter    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    text      TEXT NOT NULL
);
CREATE TABLE reports (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    reporter    TEXT NOT NULL,
    reported    TEXT NOT NULL,
    room        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    context     TEXT NOT NULL,
    resolved_at INTEGER,
    resolved_by TEXT,
    note        TEXT
);
CREATE INDEX audit_by_time ON audit (at);
";

/// Version 3: a mute follows the person. Mutes keep a guest's address and the other names the
/// person has used while muted (space-separated), so neither a rename nor a reconnect sheds it.
/// Rows from older databases get no address and no other names: they hold by name, as before.
const V3: &str = "
ALTER TABLE mutes ADD COLUMN addr TEXT;
ALTER TABLE mutes ADD COLUMN also TEXT NOT NULL DEFAULT '';
";

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why a database's schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Made by a newer chatpipe.
    #[error(
        "the database has schema version {found}, newer than this chatpipe knows ({SCHEMA_VERSION}); use a newer chatpipe or restore a backup"
    )]
    TooNew {
        /// The version in the file.
        found: u32,
    },
    /// SQLite refused: not a database, corrupt, read-only…
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// The schema version of `conn`.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings `conn` to [`SCHEMA_VERSION`] in one transaction. Returns the version it had.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, SchemaError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::TooNew { found });
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    let tx = conn.transaction()?;
    for migration in &MIGRATIONS[found as usize..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(found)
}

/// Creates a database at exactly `version` (for tests of upgrades from older files).
#[doc(hidden)]
pub fn create_at_version(conn: &mut Connection, version: u32) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for migration in &MIGRATIONS[..version as usize] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_database_is_upgraded_whole() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_at_version(&mut conn, 1).unwrap();
        conn.execute(
            "INSERT INTO audit (at, who, whom, what, why) VALUES (1, 'mod', 'eve', 'ban', '')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 1);
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION);
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        // Every table and index a new database has, defined the same way, and the queue empty.
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(schema(&conn), schema(&fresh));
        let held: i64 = conn
            .query_row("SELECT count(*) FROM held", [], |r| r.get(0))
            .unwrap();
        assert_eq!(held, 0);
    }

    /// Every table and index of `conn`: (name, the SQL that made it), by name.
    fn schema(conn: &Connection) -> Vec<(String, String)> {
        let mut statement = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master \
                 WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        let schema: Vec<(String, String)> = rows.map(Result::unwrap).collect();
        assert!(schema.iter().any(|(name, _)| name == "held"), "{schema:?}");
        schema
    }

    /// A mute saved by a version-2 database still holds after the upgrade, by its name, with
    /// no address and no other names.
    #[test]
    fn old_mutes_survive_the_upgrade() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_at_version(&mut conn, 2).unwrap();
        conn.execute(
            "INSERT INTO mutes (name_key, name, until, reason) VALUES ('troll', 'Troll', NULL, 'spam')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 2);
        let (addr, also): (Option<String>, String) = conn
            .query_row(
                "SELECT addr, also FROM mutes WHERE name_key = 'troll'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((addr, also.as_str()), (None, ""));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this chatpipe knows"), "{err}");
    }
}
