//! The network edge: accepting a connection before any door speaks to it.
//!
//! The accept loop (`listener`) takes a connection permit, admits the address ([`admission`]:
//! per-address limits), reads a PROXY header from a trusted proxy (`proxy`), runs the TLS
//! handshake ([`tls`]) and hands the connection to a door through `listener::Door`. Nothing
//! here knows which doors exist.

pub mod admission;
pub(crate) mod listener;
pub(crate) mod proxy;
pub mod tls;
