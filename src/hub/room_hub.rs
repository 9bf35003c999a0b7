//! [`RoomHub`]: the actor that owns members and rooms and fans messages out.
//!
//! Invariants:
//! - every member is in exactly one room, and in that room's member list;
//! - a username key maps to exactly one member; names are unique regardless of case;
//! - fan-out never awaits: each recipient's [`Outbox`] takes the shared line or is full, and a
//!   full outbox gets its client disconnected after the fan-out, so one slow client never delays
//!   the others;
//! - because one task sends everything, every member of a room sees that room's lines in the same
//!   order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::outbox::Outbox;
use crate::event::{Body, Client, ClientId, Command, Event, Role, Sanction, SanctionKind};
use crate::names::NameKey;
use crate::protocol;

/// Capacity of the registration channel. Registrations are rare and quick; a burst of connects
/// waits here briefly rather than piling up.
const REQUEST_CAPACITY: usize = 256;

/// Why a username could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Someone connected uses the name (in any case).
    #[error("the username {0} is already taken")]
    NameTaken(String),
    /// The hub has stopped.
    #[error("the server is shutting down")]
    ShuttingDown,
}

enum Request {
    Register {
        client: Arc<Client>,
        outbox: Outbox,
        reply: oneshot::Sender<Result<(), RegisterError>>,
    },
}

/// How sessions reach the hub outside the pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HubHandle {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Register { client, .. } => write!(f, "Register({})", client.id()),
        }
    }
}

impl HubHandle {
    /// Adds a client under its current name to the default room, which announces it. From then on
    /// the hub writes to `outbox`.
    ///
    /// # Errors
    /// [`RegisterError::NameTaken`] or [`RegisterError::ShuttingDown`].
    pub async fn register(&self, client: Arc<Client>, outbox: Outbox) -> Result<(), RegisterError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Register {
                client,
                outbox,
                reply,
            })
            .await
            .map_err(|_| RegisterError::ShuttingDown)?;
        answer.await.unwrap_or(Err(RegisterError::ShuttingDown))
    }
}

struct Member {
    client: Arc<Client>,
    outbox: Outbox,
    room: Arc<str>,
    connected_at: Instant,
    /// While set and in the future, the member's chat lines are refused.
    muted_until: Option<Instant>,
}

impl Member {
    /// How long the member stays muted, if they are.
    fn muted_for(&self) -> Option<std::time::Duration> {
        let until = self.muted_until?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }
}

#[derive(Default)]
struct Room {
    /// Members in join order, with their outboxes at hand for fan-out.
    members: Vec<(ClientId, Outbox)>,
}

/// The hub actor. Build it with [`RoomHub::new`], then drive it with [`RoomHub::run`].
pub struct RoomHub {
    members: HashMap<ClientId, Member>,
    names: HashMap<NameKey, ClientId>,
    rooms: HashMap<Arc<str>, Room>,
    default_room: Arc<str>,
    requests: mpsc::Receiver<Request>,
    /// Clients found with a full outbox during a fan-out, disconnected once it is done.
    too_slow: Vec<ClientId>,
}

impl RoomHub {
    /// A hub whose clients start in `default_room`, and the handle sessions use to reach it.
    pub fn new(default_room: &str) -> (RoomHub, HubHandle) {
        let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
        let hub = RoomHub {
            members: HashMap::new(),
            names: HashMap::new(),
            rooms: HashMap::new(),
            default_room: Arc::from(default_room),
            requests: rx,
            too_slow: Vec::new(),
        };
        (hub, HubHandle { requests: tx })
    }

    /// Runs until `events` ends, which happens once every session has stopped feeding the
    /// pipeline and the pipeline has drained. Then every client is told the server is shutting
    /// down and its outbox is closed after what is already queued.
    pub async fn run(mut self, events: impl Stream<Item = Event>) {
        let mut events = std::pin::pin!(events);
        let mut requests_open = true;
        loop {
            tokio::select! {
                // Registrations first: a waiting client is cheap to serve and is in a handshake.
                biased;
                request = self.requests.recv(), if requests_open => match request {
                    Some(request) => self.handle_request(request),
                    None => requests_open = false,
                },
                event = events.next() => match event {
                    Some(event) => self.handle_event(event),
                    None => break,
                },
            }
        }
        self.shut_down();
    }

    fn handle_request(&mut self, request: Request) {
        match request {
            Request::Register {
                client,
                outbox,
                reply,
            } => {
                let result = self.register(client, outbox);
                // The session may have gone meanwhile; then its Left event will clean up.
                let _ = reply.send(result);
            }
        }
    }

    fn register(&mut self, client: Arc<Client>, outbox: Outbox) -> Result<(), RegisterError> {
        let name = client.name();
        let key = NameKey::new(&name);
        if self.names.contains_key(&key) {
            return Err(RegisterError::NameTaken(name.to_string()));
        }
        let id = client.id();
        let room = self.default_room.clone();
        client.update(|info| info.room = room.clone());
        self.names.insert(key, id);
        self.rooms
            .entry(room.clone())
            .or_default()
            .members
            .push((id, outbox.clone()));
        tracing::info!(
            client = %id, name = %name, peer = %client.addr(),
            connections = self.members.len() + 1, "client joined"
        );
        self.members.insert(
            id,
            Member {
                client,
                outbox,
                room: room.clone(),
                connected_at: Instant::now(),
                muted_until: None,
            },
        );
        self.broadcast(&room, protocol::joined_line(&name));
        self.disconnect_slow_clients();
        Ok(())
    }

    fn handle_event(&mut self, event: Event) {
        let id = event.client.id();
        // Events from a client that already left (kicked, too slow, or racing its own /quit) are
        // moot.
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let room = member.room.clone();
        if let (Body::Chat(_) | Body::Action(_), Some(left)) = (&event.body, member.muted_for()) {
            let notice = format!("You are muted for another {}.", describe_duration(left));
            self.tell(id, &notice);
            self.disconnect_slow_clients();
            return;
        }
        match event.body {
            Body::Chat(text) => {
                let name = member.client.name();
                tracing::debug!(client = %id, room = %room, text = %text, "chat");
                self.broadcast(&room, protocol::chat_line(&name, &text));
            }
            Body::Action(text) => {
                let name = member.client.name();
                tracing::debug!(client = %id, room = %room, text = %text, "action");
                self.broadcast(&room, protocol::action_line(&name, &text));
            }
            Body::Notice(text) => self.tell(id, &text),
            Body::Command(command) => self.handle_command(id, command),
            Body::Left(reason) => self.remove(id, &reason, None, false),
            Body::Sanction(sanction) => self.sanction(id, sanction),
            Body::Alert(text) => self.alert_moderators(&text),
            // An unparsed line means the pipeline has no parse stage: treat it as chat would be
            // wrong (commands would leak into rooms), so answer instead.
            Body::Line(_) => {
                tracing::error!(client = %id, "raw line reached the hub; is the parse stage missing?");
                self.tell(id, "Your message could not be processed.");
            }
        }
        self.disconnect_slow_clients();
    }

    fn handle_command(&mut self, id: ClientId, command: Command) {
        match command {
            Command::Quit => self.remove(
                id,
                "quit",
                Some(protocol::server_line(protocol::GOODBYE)),
                false,
            ),
            Command::Nick(new) => self.rename(id, &new),
            Command::Who => {
                let Some(member) = self.members.get(&id) else {
                    return;
                };
                let room = member.room.clone();
                let names: Vec<String> = self.rooms[&room]
                    .members
                    .iter()
                    .filter_map(|(m, _)| self.members.get(m))
                    .map(|m| m.client.name().to_string())
                    .collect();
                self.tell(
                    id,
                    &format!("Users in {room} ({}): {}", names.len(), names.join(", ")),
                );
            }
        }
    }

    fn rename(&mut self, id: ClientId, new: &str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let old = member.client.name();
        let old_key = NameKey::new(&old);
        let new_key = NameKey::new(new);
        if *old == *new {
            self.tell(id, &format!("You are already known as {new}"));
            return;
        }
        if new_key != old_key && self.names.contains_key(&new_key) {
            self.tell(id, &format!("The username {new} is already taken"));
            return;
        }
        let room = member.room.clone();
        member.client.update(|info| info.name = Arc::from(new));
        self.names.remove(&old_key);
        self.names.insert(new_key, id);
        tracing::info!(client = %id, old = %old, new = %new, "client renamed");
        self.broadcast(&room, protocol::renamed_line(&old, new));
    }

    fn sanction(&mut self, id: ClientId, sanction: Sanction) {
        let Sanction {
            filter,
            kind,
            notice,
        } = sanction;
        match kind {
            SanctionKind::Mute(duration) => {
                if let Some(member) = self.members.get_mut(&id) {
                    member.muted_until = Some(Instant::now() + duration);
                    tracing::info!(
                        target: "chatpipe::audit", who = %filter, whom = %member.client.name(),
                        what = "mute", why = %notice, until = ?duration, "moderation"
                    );
                }
                self.tell(id, &notice);
            }
            SanctionKind::Kick => {
                if let Some(member) = self.members.get(&id) {
                    tracing::info!(
                        target: "chatpipe::audit", who = %filter, whom = %member.client.name(),
                        what = "kick", why = %notice, "moderation"
                    );
                }
                self.remove(id, "kicked", Some(protocol::server_line(&notice)), false);
            }
        }
    }

    /// Sends a `SERVER:` line to every moderator and admin online.
    fn alert_moderators(&mut self, text: &str) {
        let line = protocol::server_line(text);
        let moderators: Vec<ClientId> = self
            .members
            .values()
            .filter(|m| m.client.info().role != Role::User)
            .map(|m| m.client.id())
            .collect();
        for id in moderators {
            if let Some(member) = self.members.get(&id)
                && member.outbox.push(line.clone()).is_err()
            {
                self.too_slow.push(id);
            }
        }
    }

    /// Sends `SERVER:` lines to one client.
    fn tell(&mut self, id: ClientId, text: &str) {
        if let Some(member) = self.members.get(&id)
            && member.outbox.push(protocol::server_line(text)).is_err()
        {
            self.too_slow.push(id);
        }
    }

    /// Puts one shared line into the outbox of every member of `room`.
    fn broadcast(&mut self, room: &str, line: Bytes) {
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        for (id, outbox) in &room.members {
            if outbox.push(line.clone()).is_err() {
                self.too_slow.push(*id);
            }
        }
    }

    /// Disconnects every client found with a full outbox. Announcing one departure can fill
    /// another outbox, so this runs until no slow client is left.
    fn disconnect_slow_clients(&mut self) {
        while let Some(id) = self.too_slow.pop() {
            self.remove(
                id,
                "too slow",
                Some(protocol::server_line(protocol::TOO_SLOW)),
                true,
            );
        }
    }

    /// Removes a member, tells its room, and closes its outbox with `last` as the final line.
    fn remove(&mut self, id: ClientId, reason: &str, last: Option<Bytes>, discard_queued: bool) {
        let Some(member) = self.members.remove(&id) else {
            return;
        };
        let name = member.client.name();
        self.names.remove(&NameKey::new(&name));
        if let Some(room) = self.rooms.get_mut(&member.room) {
            room.members.retain(|(m, _)| *m != id);
        }
        member.outbox.close(last, discard_queued);
        tracing::info!(
            client = %id, name = %name, reason,
            connected_for = ?member.connected_at.elapsed(),
            connections = self.members.len(), "client left"
        );
        self.broadcast(&member.room, protocol::left_line(&name));
    }

    fn shut_down(&mut self) {
        tracing::info!(
            connections = self.members.len(),
            "hub stopping: telling every client"
        );
        let notice = protocol::server_line(protocol::SHUTTING_DOWN);
        for member in self.members.values() {
            // Queued lines go first; the notice is written last even into a full outbox.
            member.outbox.close(Some(notice.clone()), false);
        }
        self.members.clear();
        self.rooms.clear();
        self.names.clear();
    }
}

/// `5m 3s`-style text for a remaining time, rounded up to whole seconds.
fn describe_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}
