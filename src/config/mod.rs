//! Server configuration: one [`Config`] with a default for every setting.
//!
//! The configuration file (TOML) only overrides; every key is optional and an unknown key is an
//! error, reported with the file, line and column. Semantic checks (a zero outbox, a listen address
//! that does not parse) are collected and reported together, so an operator fixes a file in one go.
//!
//! Config is not runtime: these structs describe what the operator asked for; the server and the
//! stages build their runtime state from them.
//!
//! The sections are grouped by concern in this folder's files (`network`: listeners, doors,
//! admission and accounts; `storage`: the database and the cluster; `rooms`: rate limit, pipeline,
//! filters, rooms and moderation) and re-exported here, so every one is `config::X`. This file
//! keeps the whole [`Config`], its loading and the checks that span sections, and the error type.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod network;
mod rooms;
mod storage;

pub use network::{
    AccountConfig, AdminConfig, AdmissionConfig, ClientAddressHeader, IrcConfig, ServerConfig,
    TlsConfig, WebConfig,
};
pub use rooms::{
    FiltersConfig, ModerationConfig, PipelineConfig, RateLimitConfig, RateLimitPolicy, RoomsConfig,
};
pub use storage::{ClusterConfig, MIN_NAME_TTL, StorageConfig};

/// The most connections `[server] max_connections` may allow.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// The most lines `/history N` shows.
pub const MAX_HISTORY_REQUEST: usize = 200;

/// The longest line `[server] max_line_bytes` may allow.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener, connection limits, timeouts and buffers.
    pub server: ServerConfig,
    /// Per-client rate limiting of lines.
    pub rate_limit: RateLimitConfig,
    /// The stage pipeline.
    pub pipeline: PipelineConfig,
    /// Rooms.
    pub rooms: RoomsConfig,
    /// The filters directory.
    pub filters: FiltersConfig,
    /// Who may connect and log in.
    pub admission: AdmissionConfig,
    /// Registered users.
    pub accounts: Vec<AccountConfig>,
    /// Health, metrics and the periodic status line.
    pub admin: AdminConfig,
    /// The database that keeps accounts, bans, mutes, room settings, history and the audit log.
    pub storage: StorageConfig,
    /// The web front door: the page and its WebSocket.
    pub web: WebConfig,
    /// The IRC front door.
    pub irc: IrcConfig,
    /// Several servers sharing rooms through NATS JetStream.
    pub cluster: ClusterConfig,
    /// The moderation queue and reports.
    pub moderation: ModerationConfig,
    /// The certificate and key for TLS listeners.
    pub tls: TlsConfig,
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, and the line and column where the file is at fault.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for syntax errors, unknown keys and wrongly typed values;
    /// [`ConfigError::Invalid`] listing every semantic problem.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::parse(path, text, &e))?;
        config.validate(path)?;
        Ok(config)
    }

    /// The listen address, parsed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it is not `IP:PORT`.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| ConfigError::Invalid {
                path: PathBuf::from("[server] listen"),
                problems: vec![format!(
                    "`{}` is not an address such as 127.0.0.1:8080",
                    self.server.listen
                )],
            })
    }

    /// Every duration setting with its lower and upper bound. The upper bounds keep each one far
    /// from overflowing the clock arithmetic it feeds (a timer, a deadline), and reject values
    /// that can only be typos.
    fn durations(&self) -> [(&'static str, Duration, Duration, Duration); 11] {
        const ZERO: Duration = Duration::ZERO;
        const MS: Duration = Duration::from_millis(1);
        const SECOND: Duration = Duration::from_secs(1);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let s = &self.server;
        [
            ("[server] handshake_timeout", s.handshake_timeout, MS, HOUR),
            ("[server] idle_timeout", s.idle_timeout, ZERO, 7 * DAY),
            ("[server] write_timeout", s.write_timeout, MS, HOUR),
            ("[server] shutdown_grace", s.shutdown_grace, ZERO, HOUR),
            ("[server] flush_interval", s.flush_interval, ZERO, SECOND),
            (
                "[server] busy_flush_interval",
                s.busy_flush_interval,
                ZERO,
                SECOND,
            ),
            ("[server] stall_timeout", s.stall_timeout, MS, HOUR),
            (
                "[filters] watch_interval",
                self.filters.watch_interval,
                MS,
                DAY,
            ),
            (
                "[admission] login_lockout",
                self.admission.login_lockout,
                ZERO,
                30 * DAY,
            ),
            (
                "[admin] log_interval",
                self.admin.log_interval,
                ZERO,
                7 * DAY,
            ),
            (
                "[moderation] hold_for",
                self.moderation.hold_for,
                SECOND,
                30 * DAY,
            ),
        ]
    }

    /// Checks values that parse but make no sense, collecting every problem.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let s = &self.server;
        let listeners = [
            ("[admin] listen", &self.admin.listen, "127.0.0.1:9090"),
            ("[web] listen", &self.web.listen, "127.0.0.1:8081"),
            ("[irc] listen", &self.irc.listen, "127.0.0.1:6667"),
            ("[server] listen_tls", &s.listen_tls, "0.0.0.0:8443"),
            ("[irc] listen_tls", &self.irc.listen_tls, "0.0.0.0:6697"),
        ];
        for (key, addr, example) in listeners {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                problems.push(format!(
                    "{key}: `{addr}` is not an address such as {example} (or \"\" for off)"
                ));
            }
        }
        let no_certificate =
            self.tls.cert.as_os_str().is_empty() || self.tls.key.as_os_str().is_empty();
        let web_tls = if self.web.tls { "on" } else { "" };
        for (key, addr) in [
            ("[server] listen_tls", &s.listen_tls),
            ("[irc] listen_tls", &self.irc.listen_tls),
            ("[web] tls", &web_tls.to_owned()),
        ] {
            if !addr.is_empty() && no_certificate {
                problems.push(format!(
                    "{key} needs [tls] cert and key (`chatpipe gen-cert` makes a pair to try)"
                ));
            }
        }
        for origin in &self.web.origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                problems.push(format!(
                    "[web] origins: `{origin}` is not an origin such as https://chat.example.org"
                ));
            }
        }
        if s.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "[server] listen: `{}` is not an address such as 127.0.0.1:8080",
                s.listen
            ));
        }
        let positive = [
            ("[server] max_line_bytes", s.max_line_bytes),
            ("[server] max_connections", s.max_connections),
            ("[server] outbox_lines", s.outbox_lines),
            ("[server] outbox_bytes", s.outbox_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        if s.max_connections > MAX_CONNECTIONS {
            problems.push(format!(
                "[server] max_connections: at most {MAX_CONNECTIONS}"
            ));
        }
        if s.max_line_bytes > MAX_LINE_BYTES {
            problems.push(format!("[server] max_line_bytes: at most {MAX_LINE_BYTES}"));
        }
        for (key, value, min, max) in self.durations() {
            if value < min {
                problems.push(format!(
                    "{key}: must be at least {}",
                    humantime::format_duration(min)
                ));
            }
            if value > max {
                problems.push(format!(
                    "{key}: must be at most {} (got {})",
                    humantime::format_duration(max),
                    humantime::format_duration(value)
                ));
            }
        }
        if s.outbox_bytes < s.max_line_bytes.saturating_add(64) {
            problems.push(format!(
                "[server] outbox_bytes: must hold at least one full line ({} bytes)",
                s.max_line_bytes.saturating_add(64)
            ));
        }
        let r = &self.rate_limit;
        if r.per_second > 0 && r.burst == 0 {
            problems.push("[rate_limit] burst: must be at least 1 when per_second > 0".into());
        }
        for room in std::iter::once(&self.rooms.default).chain(&self.rooms.permanent) {
            if crate::names::validate_room_name(room).is_err() {
                problems.push(format!(
                    "[rooms]: `{room}` is not a room name (1-32 of a-z 0-9 _ -)"
                ));
            }
        }
        if self.admission.per_address_connections == 0
            || self.admission.per_address_new_per_10m == 0
        {
            problems.push("[admission] per-address limits must be at least 1".into());
        }
        if s.max_bad_lines == 0 {
            problems.push("[server] max_bad_lines: must be at least 1".into());
        }
        if self.storage.history_keep < self.rooms.history.max(MAX_HISTORY_REQUEST) {
            problems.push(format!(
                "[storage] history_keep: must be at least {} (the larger of [rooms] history and what /history may ask for)",
                self.rooms.history.max(MAX_HISTORY_REQUEST)
            ));
        }
        if self.rooms.max_joined == 0 {
            problems.push("[rooms] max_joined: must be at least 1".into());
        }
        if self.rooms.max_rooms == 0 {
            problems.push("[rooms] max_rooms: must be at least 1".into());
        }
        if !self.cluster.nats.is_empty()
            && crate::names::validate_username(&self.cluster.node).is_err()
        {
            problems.push(format!(
                "[cluster] node: `{}` is not a node name (1-32 letters, digits, '_' or '-'), and it must be set with nats",
                self.cluster.node
            ));
        }
        if self.cluster.name_ttl < MIN_NAME_TTL {
            problems.push(format!(
                "[cluster] name_ttl: must be at least {}s (names are refreshed every 2 s)",
                MIN_NAME_TTL.as_secs()
            ));
        }
        let lists = [
            ("exempt", &self.admission.exempt),
            ("trusted_proxies", &self.admission.trusted_proxies),
        ];
        for (key, entries) in lists {
            for entry in entries {
                if entry.parse::<crate::addresses::AddressRange>().is_err() {
                    problems.push(format!(
                        "[admission] {key}: `{entry}` is not an address or CIDR block"
                    ));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for account in &self.accounts {
            if crate::names::validate_username(&account.name).is_err() {
                problems.push(format!(
                    "[[accounts]] `{}`: not a valid username",
                    account.name
                ));
            }
            if !seen.insert(account.name.to_ascii_lowercase()) {
                problems.push(format!("[[accounts]] `{}`: listed twice", account.name));
            }
            if let Err(e) = crate::passwords::check_hash(&account.password_hash) {
                problems.push(format!(
                    "[[accounts]] `{}`: password_hash is not an Argon2 PHC string ({e}); make one with `chatpipe hash-password`",
                    account.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }
}

/// The 1-based line and column of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A configuration or filter file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the expected shape.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The file parsed, but some values make no sense.
    #[error("{}: {}", path.display(), problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
}

impl ConfigError {
    /// Turns a TOML error into a [`ConfigError::Parse`] with line and column.
    pub(crate) fn parse(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
        let (line, column, message) = toml_error_position(text, err);
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// Line, column and message of a TOML error in `text`; configuration and filter files report
/// their syntax errors the same way.
pub(crate) fn toml_error_position(text: &str, err: &toml::de::Error) -> (usize, usize, String) {
    let (line, column) = err.span().map_or((1, 1), |span| line_col(text, span.start));
    (line, column, err.message().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("chatpipe.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.max_line_bytes, 2048);
        assert_eq!(c.rate_limit.per_second, 5);
        assert_eq!(c.rooms.default, "lobby");
    }

    #[test]
    fn durations_and_overrides_parse() {
        let c =
            parse("[server]\nhandshake_timeout = \"500ms\"\nshutdown_grace = \"2m\"\n").unwrap();
        assert_eq!(c.server.handshake_timeout, Duration::from_millis(500));
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(120));
    }

    #[test]
    fn the_client_address_header_is_one_of_two() {
        assert_eq!(
            parse("").unwrap().web.client_address_header,
            ClientAddressHeader::XForwardedFor
        );
        let c = parse("[web]\nclient_address_header = \"forwarded\"\n").unwrap();
        assert_eq!(c.web.client_address_header, ClientAddressHeader::Forwarded);
        let err = parse("[web]\nclient_address_header = \"x-real-ip\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("chatpipe.toml:2:"), "{text}");
        assert!(
            text.contains("x-forwarded-for") && text.contains("forwarded"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("chatpipe.toml:3:1:"), "{text}");
        assert!(text.contains("lisen"), "{text}");
    }

    #[test]
    fn bad_value_is_reported_with_position() {
        let err = parse("[rate_limit]\npolicy = \"sometimes\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("chatpipe.toml:2:10:"), "{text}");
    }

    #[test]
    fn durations_and_counts_have_upper_bounds() {
        let err = parse(
            "[server]\nflush_interval = \"10000000y\"\nidle_timeout = \"400d\"\nmax_connections = 3000000000000000000\nwrite_timeout = \"0s\"\n[admin]\nlog_interval = \"100y\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "[server] flush_interval: must be at most 1s",
            "[server] idle_timeout: must be at most 7days",
            "[server] max_connections: at most 1000000",
            "[server] write_timeout: must be at least 1ms",
            "[admin] log_interval: must be at most",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
    }

    #[test]
    fn every_semantic_problem_is_collected() {
        let err = parse("[server]\nlisten = \"nowhere\"\noutbox_lines = 0\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen"), "{text}");
        assert!(text.contains("outbox_lines"), "{text}");
    }
}
