//! chatpipe: a line-based chat server in which every line flows through a pipeline of stream
//! stages before it reaches anyone.
//!
//! # Where a line goes
//!
//! ```text
//! net::listener ─► doors::text::session ─┐
//! (admission,      (handshake)            │
//!  TLS, PROXY) ─► doors::irc::session ────┼─► pipeline::rate_limit ─► pipeline::parse ─► pipeline::worker_pool
//!                  (NICK/USER/CAP/SASL)   │   (per client)            (commands/chat)    (filters, in parallel)
//! HTTP, WS ──────► doors::web::session ───┘                                                     │
//!                  (hello, JSON)                                                                │
//!   TCP ◄─ session::writer ◄─┐  (IRC: + doors::irc::output, per-client tags)                    │
//!   WS  ◄─ web writer ◄──────┴─ hub::Outbox ◄─ hub::RoomHub ◄─────────────── pipeline::merge ◄──┘
//!          (batched writes)     (bounded)      (rooms, fan-out; a Render     (per-sender order)
//!                                              per door)
//! ```
//!
//! # Layout: one folder per concept
//!
//! [`doors`]: the front doors, one folder each. A door is a listener, a session that speaks its
//! protocol and feeds the shared pipeline, and a [`hub::Render`] that puts the hub's
//! [`hub::Delivery`]s into its words: [`doors::text`] (the line protocol, with
//! [`doors::text::TextRender`]), [`doors::web`] (the page and the WebSocket JSON protocol, with
//! [`doors::web::JsonRender`]), [`doors::irc`] (registration and SASL, IRC commands as chat lines,
//! numerics, with [`doors::irc::IrcRender`]). A door imports what lies below it, never another
//! door; nothing below imports a door.
//!
//! [`session`]: what every door's session shares: `session::SessionShared`, the one task per
//! connection (`session::connection`), the login steps and their throttle ([`session::accounts`]),
//! the idle watch that looks at every connection for silence (`session::idle`), the line reader
//! and codec ([`session::line_codec`]), the batched writer, bad-line counting.
//!
//! [`net`]: the network edge, before any door speaks: the accept loop, per-address admission
//! limits ([`net::admission`]), TLS ([`net::tls`]), the PROXY protocol header.
//!
//! [`server`]: the assembly ([`Server`]): doors on their listeners, the pipeline, the hub, the
//! store and the cluster, and the order of a graceful shutdown.
//!
//! [`pipeline`]: the [`Stage`] trait, the standard stages and [`PipelineBuilder`].
//! [`filters`]: the [`Filter`](filters::Filter) trait, the live filter chain, and the rules loaded
//! from the filters directory.
//!
//! [`hub`]: [`RoomHub`](hub::RoomHub), the owner of rooms, members, names and bans, with
//! moderation; protocol-neutral deliveries and the [`hub::Render`] trait the doors implement;
//! client outboxes, and the write schedule that decides when each client's writer is woken.
//!
//! [`store`]: the embedded SQLite database (accounts, bans, mutes, room settings, history, the
//! audit log), owned by one thread the hub never waits on. [`cluster`]: several servers sharing
//! rooms, names and moderation through NATS JetStream.
//!
//! Shared ground, used by several of the above and owned by none: [`config`], the configuration
//! file, with a default for every setting and its own error type; [`event`]: [`Event`], [`Body`]
//! and [`Client`], what flows through the pipeline; [`protocol`], the exact text of every notice
//! the server writes (the hub and the pipeline word their notices with it too); [`names`],
//! username and room-name rules; [`passwords`], Argon2 password hashes; [`addresses`], address
//! ranges and lists (exemptions, trusted proxies, bans); [`metrics`], the Prometheus metrics,
//! which `admin` (private) serves with health and readiness over HTTP; `clock` (private), whole
//! milliseconds since a start, for the idle watch and the write schedule; [`error`], the
//! top-level error types re-exported; [`testing`], stream fixtures to run a stage or the pipeline
//! without sockets.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod addresses;
mod admin;
mod clock;
pub mod cluster;
pub mod config;
pub mod doors;
pub mod error;
pub mod event;
pub mod filters;
pub mod hub;
pub mod metrics;
pub mod names;
pub mod net;
pub mod passwords;
pub mod pipeline;
pub mod protocol;
pub mod server;
pub mod session;
pub mod store;
pub mod testing;

pub use config::Config;
pub use error::{ConfigError, ServerError};
pub use event::{
    Body, Client, ClientId, ClientInfo, Command, Event, Role, Sanction, SanctionKind, Secret,
};
pub use pipeline::{EventStream, Pipeline, PipelineBuilder, Stage, StageContext};
pub use server::Server;
