//! chatpipe: a line-based chat server in which every line flows through a pipeline of stream
//! stages before it reaches anyone.
//!
//! # Where a line goes
//!
//! ```text
//! TCP ─► server::session ─► pipeline::rate_limit ─► pipeline::parse ─► pipeline::worker_pool
//!        (handshake,         (per client)            (commands/chat)    (filters, in parallel)
//!         line codec)                                                         │
//!   TCP ◄─ server::writer ◄─ hub::Outbox ◄─ hub::RoomHub ◄─ pipeline::merge ◄─┘
//!          (batched writes)  (bounded)      (rooms, fan-out) (per-sender order)
//! ```
//!
//! # Layout
//! - [`config`]: the configuration file, with a default for every setting;
//! - [`event`]: [`Event`], [`Body`] and [`Client`], what flows through the pipeline;
//! - [`server`]: listener, admission limits, sessions and accounts, line codec, batched writers,
//!   graceful shutdown ([`Server`]);
//! - [`pipeline`]: the [`Stage`] trait, the standard stages and [`PipelineBuilder`];
//! - [`filters`]: the [`Filter`](filters::Filter) trait, the live filter chain, and the rules
//!   loaded from the filters directory;
//! - [`hub`]: [`RoomHub`](hub::RoomHub), the owner of rooms, members, names and bans, with
//!   moderation, and client outboxes;
//! - [`metrics`]: the Prometheus metrics; `admin` (private) serves them with health and
//!   readiness over HTTP;
//! - [`store`]: the embedded SQLite database (accounts, bans, mutes, room settings, history, the
//!   audit log), owned by one thread the hub never waits on;
//! - [`protocol`]: the exact text of every line the server writes;
//! - [`names`]: username and room-name rules;
//! - [`testing`]: stream fixtures to run a stage or the pipeline without sockets.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod admin;
pub mod config;
pub mod error;
pub mod event;
pub mod filters;
pub mod hub;
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
