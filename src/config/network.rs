//! The sections about reaching the server: `[server]` (the text door's listener and the limits
//! every connection has), `[web]`, `[irc]`, `[tls]`, `[admission]` with `[[accounts]]` (who may
//! connect and log in) and `[admin]` (the health and metrics listener).
//!
//! These structs only describe what the operator asked for; their values are checked together in
//! `Config::validate` (in `config/mod.rs`), which sees every section, because several checks
//! span two (a TLS listener needs `[tls]`, an outbox must hold one `max_line_bytes` line).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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

/// `[tls]`: the certificate and key (PEM) of the TLS listeners; reloaded on SIGHUP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
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
