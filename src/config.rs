//! Server configuration: one [`Config`] with a default for every setting.
//!
//! The configuration file (TOML) only overrides; every key is optional and an unknown key is an
//! error, reported with the file, line and column. Semantic checks (a zero outbox, a listen address
//! that does not parse) are collected and reported together, so an operator fixes a file in one go.
//!
//! Config is not runtime: these structs describe what the operator asked for; the server and the
//! stages build their runtime state from them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

/// `[tls]`: the certificate and key (PEM) of the TLS listeners; reloaded on SIGHUP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
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

/// `[web]`: the web page and the WebSocket at `/ws`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address of the web listener (the page at `/`, the WebSocket at `/ws`); `""` turns it off.
    pub listen: String,
    /// Further origins allowed to open `/ws` (such as `https://chat.example.org`); the page's
    /// own origin and localhost always are.
    pub origins: Vec<String>,
    /// Serve the page over HTTPS and the WebSocket as WSS, with `[tls] cert` and `key`.
    pub tls: bool,
    /// The one header a trusted proxy (`[admission] trusted_proxies`) names the client in; any
    /// other such header is the client's own writing and is ignored.
    pub client_address_header: ClientAddressHeader,
}

/// Which request header carries the client's address from a trusted proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAddressHeader {
    /// `X-Forwarded-For: client, proxy1, …` (what nginx's `$proxy_add_x_forwarded_for` sends).
    #[default]
    #[serde(rename = "x-forwarded-for", alias = "X-Forwarded-For")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1, …`.
    #[serde(rename = "forwarded", alias = "Forwarded")]
    Forwarded,
}

impl ClientAddressHeader {
    /// The header's name, lower case as `http` keeps names.
    pub fn name(self) -> &'static str {
        match self {
            ClientAddressHeader::XForwardedFor => "x-forwarded-for",
            ClientAddressHeader::Forwarded => "forwarded",
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8081".to_owned(),
            origins: Vec::new(),
            tls: false,
            client_address_header: ClientAddressHeader::default(),
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

/// `[irc]`: the IRC front door.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrcConfig {
    /// Address of the plain IRC listener (6667 is the convention); `""` turns it off.
    pub listen: String,
    /// Address of the IRC listener over TLS (6697 is the convention); `""` (the default) turns it
    /// off. Needs `[tls] cert` and `key`.
    pub listen_tls: String,
}

impl Default for IrcConfig {
    fn default() -> Self {
        IrcConfig {
            listen: "127.0.0.1:6667".to_owned(),
            listen_tls: String::new(),
        }
    }
}

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

/// `[admin]`: the HTTP listener for health and metrics, and the periodic status log line.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener; `""` turns it off.
    pub listen: String,
    /// How often a status line (connections, rooms, rates) is logged; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub log_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9090".to_owned(),
            log_interval: Duration::from_secs(60),
        }
    }
}

/// `[admission]`: who may connect, and how hard guessing passwords is.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Let in names without an account.
    pub allow_guests: bool,
    /// Addresses or CIDR blocks exempt from per-address limits and address bans.
    pub exempt: Vec<String>,
    /// Connections open at once from one address.
    pub per_address_connections: usize,
    /// New connections from one address per 10 minutes.
    pub per_address_new_per_10m: usize,
    /// Failed logins per name, and per address, before further attempts are refused.
    pub login_failures: u32,
    /// How long refused logins stay refused, and the window failures are counted in.
    #[serde(with = "humantime_serde")]
    pub login_lockout: Duration,
    /// Proxies (addresses or CIDR blocks) whose word on a client's address is taken: the PROXY
    /// header on the text and IRC doors, `[web] client_address_header` on the web door.
    pub trusted_proxies: Vec<String>,
    /// Refuse a connection from a trusted proxy that sends no PROXY header.
    pub require_proxy_header: bool,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            allow_guests: true,
            exempt: vec!["127.0.0.1".into(), "::1".into()],
            per_address_connections: 16,
            per_address_new_per_10m: 32,
            login_failures: 5,
            login_lockout: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            require_proxy_header: false,
        }
    }
}

/// One `[[accounts]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The username (case-insensitive, like every name).
    pub name: String,
    /// An Argon2 PHC string, as printed by `chatpipe hash-password`.
    pub password_hash: String,
    /// `user`, `moderator` or `admin`.
    #[serde(default)]
    pub role: crate::event::Role,
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

/// `[server]`: the listener and per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Address of the text protocol over TLS (with `[tls]`); `""` turns it off.
    pub listen_tls: String,
    /// Longest accepted line in bytes, without the line ending.
    pub max_line_bytes: usize,
    /// Most connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long a client may take to choose a username.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A client that sends no line for this long is warned, then disconnected; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Over-long or invalid lines within a minute after which the client is disconnected.
    pub max_bad_lines: usize,
    /// How long one write to a client may take before the client is dropped.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// How long a graceful shutdown may take before connections are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long the hub lets lines gather before waking the writers: longer means fewer, larger
    /// writes under load and a little more latency; `0s` wakes writers after every event.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How far apart a busy client's writes are kept: a client written to within this period
    /// gets its next write in a slot of its own within the next period (no sooner than
    /// `flush_interval`), so a busy room's writes are fewer and spread out rather than all at
    /// once; `0s` treats every client as quiet.
    #[serde(with = "humantime_serde")]
    pub busy_flush_interval: Duration,
    /// Most lines queued for a client whose socket is stuck: a client with more waiting, whose
    /// socket has taken no bytes for `stall_timeout`, is disconnected as too slow.
    pub outbox_lines: usize,
    /// Most bytes queued for a client whose socket is stuck (see `outbox_lines`).
    pub outbox_bytes: usize,
    /// How long a client's socket may take no bytes while its backlog is over the outbox bounds
    /// before it is disconnected as too slow.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            listen_tls: String::new(),
            max_line_bytes: 2048,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_bad_lines: 5,
            flush_interval: Duration::from_millis(2),
            busy_flush_interval: Duration::from_millis(9),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            outbox_lines: 1024,
            outbox_bytes: 1024 * 1024,
            stall_timeout: Duration::from_secs(2),
        }
    }
}

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
