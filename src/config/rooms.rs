//! The sections about what happens to a line once it is in: `[rate_limit]`, `[pipeline]` (the
//! filter workers), `[filters]` (the filter files), `[rooms]` and `[moderation]` (held lines and
//! reports).
//!
//! As with every section, a missing key takes the `Default` below and an unknown key is an error;
//! checks that need another section (history kept against `[rooms] history`) are in
//! `Config::validate` in `config/mod.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// What the rate limiter does with a line over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitPolicy {
    /// Drop the line and tell the sender.
    #[default]
    Reject,
    /// Hold the sender's lines back until the limit allows them, up to `burst` held lines, then
    /// reject (IRC servers call this "fakelag").
    Delay,
}

/// `[rate_limit]`: lines per client.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained lines per second per client; `0` turns rate limiting off.
    pub per_second: u32,
    /// Lines a client may send at once after being quiet.
    pub burst: u32,
    /// `reject` or `delay`.
    pub policy: RateLimitPolicy,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 5,
            burst: 10,
            policy: RateLimitPolicy::Reject,
        }
    }
}

/// `[pipeline]`: the worker pool.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Filter workers; `0` means one per core.
    pub workers: usize,
}

impl PipelineConfig {
    /// The worker count with `0` resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// `[filters]`: where the filter files are and whether to watch them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FiltersConfig {
    /// The directory of filter files (`--filters` overrides).
    pub dir: PathBuf,
    /// Reload automatically when a file in the directory changes (SIGHUP always reloads).
    pub watch: bool,
    /// How often the directory is checked for changes when `watch` is on.
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
}

impl Default for FiltersConfig {
    fn default() -> Self {
        FiltersConfig {
            dir: PathBuf::from("filters"),
            watch: false,
            watch_interval: Duration::from_secs(2),
        }
    }
}

/// `[rooms]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// The room every client starts in.
    pub default: String,
    /// Chat lines replayed to a client joining a room; `0` turns history off.
    pub history: usize,
    /// Most rooms at once; `/join` of a new room beyond it is refused.
    pub max_rooms: usize,
    /// Rooms kept when empty (the default room always is).
    pub permanent: Vec<String>,
    /// Rooms one member of the web or IRC door may be in at once (the text protocol's members
    /// are in one).
    pub max_joined: usize,
    /// In a room with more members than this, joins and leaves are not announced to its text
    /// members one by one (as large IRC channels hide them); member lists (web, IRC) still
    /// follow every change. `0` announces every join and leave.
    pub quiet_above: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            default: "lobby".to_owned(),
            history: 20,
            max_rooms: 1000,
            permanent: Vec::new(),
            max_joined: 20,
            quiet_above: 200,
        }
    }
}

/// `[moderation]`: lines held for review, and members' reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationConfig {
    /// How long a held line waits for a moderator before it expires (as denied).
    #[serde(with = "humantime_serde")]
    pub hold_for: Duration,
    /// Reports one member may make in an hour. A member is their account if they logged in to
    /// one, else their address, an `[admission] exempt` one too (so neither `/nick` nor a
    /// reconnect starts a new count).
    pub reports_per_hour: usize,
    /// Reports one member (counted as for `reports_per_hour`) may have open at once; past it a
    /// report is refused with a line saying so until a moderator resolves one.
    pub open_reports_per_member: usize,
    /// Reports open at once, from everyone; past it a report is refused with a line saying the
    /// queue is full, until a moderator resolves one.
    pub max_open_reports: usize,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            hold_for: Duration::from_secs(24 * 3600),
            reports_per_hour: 10,
            open_reports_per_member: 5,
            max_open_reports: 500,
        }
    }
}
