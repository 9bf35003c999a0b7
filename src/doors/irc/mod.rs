//! The IRC front door: irssi, WeeChat, HexChat, bots and bridges in the same rooms as everyone.
//!
//! A door of its own over the one hub: a listener (plain, or TLS on `[irc] listen_tls`), a
//! `session` that speaks the client protocol of RFC 1459/2812 as modern servers implement it
//! (the "Modern IRC Client Protocol" of modern.ircdocs.horse) and feeds the shared pipeline, and
//! [`IrcRender`], which puts the hub's deliveries into IRC lines. Channels are rooms (`#games` is
//! the room `games`); nicks are usernames, unique across every door.
//!
//! Modules: `message` parses a client's lines, `render` writes the server's, `output`
//! fits each rendered line to one client's capabilities. `session` is one connection: its
//! reading loop and the dispatch of commands, which are carried out, by concern, in
//! `registration` (`CAP`, `PASS`, `NICK`, `USER`, SASL), `commands` (what becomes a chat line,
//! and `AWAY`), `queries` (`NAMES`, `WHO`, `WHOIS`, `ISON`, `USERHOST`, `HELP`) and `modes`
//! (`MODE`).

mod commands;
mod message;
mod modes;
mod output;
mod queries;
mod registration;
mod render;
pub(crate) mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub use render::IrcRender;

use crate::event::{Client, ClientId};
use crate::hub::DoorId;
use crate::session::SessionShared;

/// What the IRC door's sessions share.
pub(crate) struct IrcDoor {
    pub(crate) shared: Arc<SessionShared>,
    /// The hub's id for this door's renderer.
    pub(crate) door: DoorId,
    pub(crate) render: Arc<IrcRender>,
    /// Away messages (`AWAY`), by client. IRC's notion only: other doors have no away state.
    /// The lock is held only to read or change the map, never across an `.await`.
    away: Mutex<AwayMap>,
}

/// Who is away: by client, the client itself (whose name follows every rename, so the away
/// message moves with the person and never stays with a name they left) and its away message.
type AwayMap = HashMap<ClientId, (Arc<Client>, Arc<str>)>;

impl IrcDoor {
    pub(crate) fn new(shared: Arc<SessionShared>, door: DoorId, render: Arc<IrcRender>) -> Self {
        IrcDoor {
            shared,
            door,
            render,
            away: Mutex::new(HashMap::new()),
        }
    }

    fn away(&self) -> std::sync::MutexGuard<'_, AwayMap> {
        self.away.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `client` away with `text`, or back with `None`.
    pub(crate) fn set_away(&self, client: &Arc<Client>, text: Option<String>) {
        match text {
            Some(text) => self
                .away()
                .insert(client.id(), (client.clone(), Arc::from(text))),
            None => self.away().remove(&client.id()),
        };
    }

    pub(crate) fn forget_away(&self, id: ClientId) {
        self.away().remove(&id);
    }

    /// The away message of the client called `name` now, if it is away.
    pub(crate) fn away_of(&self, name: &str) -> Option<Arc<str>> {
        self.away()
            .values()
            .find(|(client, _)| client.name().eq_ignore_ascii_case(name))
            .map(|(_, text)| text.clone())
    }

    /// The names (as they are now) of the clients away.
    pub(crate) fn away_names(&self) -> Vec<Arc<str>> {
        self.away()
            .values()
            .map(|(client, _)| client.name())
            .collect()
    }
}
