//! The front doors: the text protocol ([`text`]), the web page over WebSocket ([`web`]) and IRC
//! ([`irc`]).
//!
//! A door is a folder with three parts: a listener (the shared accept loop of
//! `crate::net::listener`, through its `Door` trait, or the door's own, as the web door's HTTP
//! server), a session that speaks the door's protocol and feeds the pipeline with the shared
//! machinery of [`crate::session`], and a [`crate::hub::Render`] that puts the hub's
//! deliveries into the door's words. A door imports the layers below it, never another door,
//! and nothing below imports a door; [`crate::server`] assembles them.

pub mod irc;
pub mod text;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::net::admission::Refusal;
use crate::net::listener::Door;
use crate::net::proxy::UntrustedHeaderGuard;
use crate::protocol::server_line;
use crate::session::{Admission, SessionShared};

/// Which protocol a listener's connections speak.
#[derive(Clone)]
pub(crate) enum Protocol {
    /// The text protocol.
    Text,
    /// IRC.
    Irc(Arc<irc::IrcDoor>),
}

impl Door for Protocol {
    /// Serves one connection, given its two halves (plain TCP or TLS), until it closes.
    async fn serve<R, W>(
        self,
        shared: Arc<SessionShared>,
        id: crate::event::ClientId,
        (read_half, write_half): (R, W),
        addr: std::net::SocketAddr,
        admission: Admission,
    ) where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match self {
            Protocol::Text => {
                text::session::serve(shared, id, read_half, write_half, addr, admission).await;
            }
            Protocol::Irc(door) => {
                irc::session::serve(door, id, read_half, write_half, addr, admission).await;
            }
        }
    }

    /// Spawns the task serving a plain TCP connection. One spawn per protocol, so each task is
    /// the size of its own protocol's future (a task holding either would be the larger's size).
    fn spawn_plain(
        &self,
        shared: &Arc<SessionShared>,
        id: crate::event::ClientId,
        socket: TcpStream,
        (addr, watch_for_header): (SocketAddr, bool),
        admission: Admission,
    ) {
        let (read_half, write_half) = socket.into_split();
        let read_half = UntrustedHeaderGuard::new(read_half, addr, watch_for_header);
        let (tasks, shared) = (&shared.tasks, shared.clone());
        match self {
            Protocol::Text => tasks.spawn(text::session::serve(
                shared, id, read_half, write_half, addr, admission,
            )),
            Protocol::Irc(door) => tasks.spawn(irc::session::serve(
                door.clone(),
                id,
                read_half,
                write_half,
                addr,
                admission,
            )),
        };
    }

    /// The one line a refused connection gets.
    fn refusal(&self, refusal: &Refusal) -> bytes::Bytes {
        match self {
            Protocol::Text => server_line(&refusal.to_string()),
            Protocol::Irc(_) => bytes::Bytes::from(format!("ERROR :Closing link: {refusal}\r\n")),
        }
    }
}
