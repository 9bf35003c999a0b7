//! The text door: the line protocol `nc` speaks (docs/protocol.md).
//!
//! The smallest door: `session` runs the username handshake and turns lines into events with
//! the shared machinery of [`crate::session`]; [`TextRender`] puts the hub's deliveries into the
//! protocol's lines (its wording is [`crate::protocol`]'s). It is door 0, the hub's default.

mod render;
pub(crate) mod session;

pub use render::TextRender;
