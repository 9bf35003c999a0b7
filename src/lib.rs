//! chatpipe: a line-based chat server in which every line flows through a pipeline of stream
//! stages before it reaches anyone.
//!
//! # Where a line goes
//!
//! ```text
//! TCP ─► server::session ─┐
//!        (handshake,       │
//! IRC ─► irc::session ─────┼─► pipeline::rate_limit ─► pipeline::parse ─► pipeline::worker_pool
//!        (NICK/USER/CAP)   │   (per client)            (commands/chat)    (filters, in parallel)
//! WS  ─► web::session ────┘                                                     │
//!        (hello, JSON)                                                          │
//!   TCP ◄─ server::writer ◄─┐  (IRC: + irc::output, per-client tags)            │
//!   WS  ◄─ web writer ◄─────┴─ hub::Outbox ◄─ hub::RoomHub ◄─ pipeline::merge ◄─┘
//!          (batched writes)    (bounded)      (rooms, fan-out; a   (per-sender order)
//!                                             Render per door)
//! ```
//!
//! Front doors: a door is a listener, a session that speaks its protocol and feeds the shared
//! pipeline, and a [`hub::Render`] that puts the hub's [`hub::Delivery`]s into its words. The text
//! protocol is `server::session` with [`hub::TextRender`]; the web door is [`web`] with
//! [`web::JsonRender`]; the IRC door is [`irc`] with [`irc::IrcRender`].
//!
//! # Layout
//! - [`config`]: the configuration file, with a default for every setting;
//! - [`event`]: [`Event`], [`Body`] and [`Client`], what flows through the pipeline;
//! - [`server`]: listener, admission limits, sessions and accounts, the login steps every door
//!   shares, line codec, one task per connection (`server::connection`), one task watching every
//!   connection for silence (`server::idle`), batched writers, TLS
//!   for the text protocol ([`server::tls`]), graceful shutdown ([`Server`]);
//! - [`pipeline`]: the [`Stage`] trait, the standard stages and [`PipelineBuilder`];
//! - [`filters`]: the [`Filter`](filters::Filter) trait, the live filter chain, and the rules
//!   loaded from the filters directory;
//! - [`hub`]: [`RoomHub`](hub::RoomHub), the owner of rooms, members, names and bans, with
//!   moderation; protocol-neutral deliveries and their renderers; client outboxes, and the
//!   write schedule that decides when each client's writer is woken;
//! - [`web`]: the web front door: the page and the WebSocket JSON protocol;
//! - [`irc`]: the IRC front door: registration, IRC commands as chat lines, numerics;
//! - [`metrics`]: the Prometheus metrics; `admin` (private) serves them with health and
//!   readiness over HTTP;
//! - [`cluster`]: several servers sharing rooms, names and moderation through NATS JetStream;
//! - [`store`]: the embedded SQLite database (accounts, bans, mutes, room settings, history, the
//!   audit log), owned by one thread the hub never waits on;
//! - [`protocol`]: the exact text of every line the server writes;
//! - [`names`]: username and room-name rules; `clock` (private): whole milliseconds since a
//!   start, for the idle watch and the write schedule;
//! - [`testing`]: stream fixtures to run a stage or the pipeline without sockets.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod admin;
mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod event;
pub mod filters;
pub mod hub;
pub mod irc;
pub mod metrics;
pub mod names;
pub mod pipeline;
pub mod protocol;
pub mod server;
pub mod store;
pub mod testing;
pub mod web;

pub use config::Config;
pub use error::{ConfigError, ServerError};
pub use event::{
    Body, Client, ClientId, ClientInfo, Command, Event, Role, Sanction, SanctionKind, Secret,
};
pub use pipeline::{EventStream, Pipeline, PipelineBuilder, Stage, StageContext};
pub use server::Server;
