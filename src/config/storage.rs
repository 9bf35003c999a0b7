//! The sections about what outlives a connection: `[storage]` (the SQLite database) and
//! `[cluster]` (the NATS JetStream streams and names bucket several servers share).
//!
//! Defaults here are the bounds that keep the disk and the streams finite; the cross-section
//! checks (history kept against history asked for, a node name whenever `nats` is set) live in
//! `Config::validate` in `config/mod.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[storage]`: the embedded SQLite database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The database file, relative to the working directory; `""` keeps everything in memory
    /// (lost at exit).
    pub path: PathBuf,
    /// The most bytes the database may grow to (1 GiB by default); `0`: no limit but the
    /// disk's. At the cap the oldest chat history (across all rooms) is deleted to make room,
    /// so accounts, bans, mutes and the audit log can always be written.
    pub max_size: u64,
    /// Chat lines kept per room (for `/history` and replay after a restart); older ones are
    /// deleted as new ones are written.
    pub history_keep: usize,
    /// Chat lines kept in all, across rooms; past it the oldest are deleted (checked every
    /// minute), so room churn cannot fill the disk.
    pub history_max_lines: usize,
    /// Chat lines older than this are deleted (checked every minute).
    #[serde(with = "humantime_serde")]
    pub history_max_age: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("chatpipe.db"),
            max_size: 1 << 30,
            history_keep: 1000,
            history_max_lines: 1_000_000,
            history_max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// `[cluster]`: several chatpipe servers sharing rooms, names and moderation through NATS
/// JetStream. Without `nats` the server runs alone (the default).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server, such as `nats://127.0.0.1:4222`; `""` runs alone.
    pub nats: String,
    /// This server's name in the cluster, unique among its servers (letters, digits, `_`, `-`).
    pub node: String,
    /// Exit at start-up when NATS cannot be reached; `false` runs alone instead.
    pub required: bool,
    /// How long a claimed name lives in NATS without its server refreshing it (every 2 s): a
    /// dead server's names are free after this. At least 4 s. Applies when the cluster's names
    /// bucket is first made.
    #[serde(with = "humantime_serde")]
    pub name_ttl: Duration,
    /// Room events older than this are dropped from the room stream (`CHATPIPE_ROOMS`), which
    /// every server replays at start.
    #[serde(with = "humantime_serde")]
    pub rooms_max_age: Duration,
    /// The most bytes the room stream keeps; past it, the oldest events are dropped.
    pub rooms_max_bytes: u64,
    /// Shared-state changes (accounts, bans, mutes, room settings) older than this are dropped
    /// from `CHATPIPE_STATE`: a server that joins later starts from a copy of another's database.
    #[serde(with = "humantime_serde")]
    pub state_max_age: Duration,
    /// The most bytes the shared-state stream keeps; past it, the oldest changes are dropped.
    pub state_max_bytes: u64,
}

/// The shortest `[cluster] name_ttl`: two of the heartbeats that refresh the names.
pub const MIN_NAME_TTL: Duration = Duration::from_secs(4);

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: String::new(),
            node: String::new(),
            required: true,
            name_ttl: Duration::from_secs(15),
            rooms_max_age: Duration::from_secs(7 * 24 * 3600),
            rooms_max_bytes: 256 << 20,
            state_max_age: Duration::from_secs(365 * 24 * 3600),
            state_max_bytes: 64 << 20,
        }
    }
}
