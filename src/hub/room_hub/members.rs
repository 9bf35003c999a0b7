//! The member table: who is connected, under which name, through which door, in which rooms.
//!
//! Registration and removal are the only places a member enters or leaves `members` and
//! `names`, and they keep the two in step: a name key maps to exactly one member, and a member
//! is in every room its `rooms` lists (and in those rooms' member lists). A removed member's
//! outbox is closed with its last line, its rooms are told once each ([`Told`]), and its name is
//! released in the cluster. The membership gauges follow every change before it is announced.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{RegisterError, RoomHub, Until};
use crate::event::{Client, ClientId, Role};
use crate::hub::delivery::{Delivery, DoorId, Scope};
use crate::hub::outbox::Outbox;
use crate::metrics::DropReason;
use crate::names::NameKey;
use crate::protocol;

pub(super) struct Member {
    pub(super) client: Arc<Client>,
    pub(super) outbox: Outbox,
    pub(super) door: DoorId,
    /// The rooms the member is in, in join order; the last is where plain lines go.
    pub(super) rooms: Vec<Arc<str>>,
    pub(super) connected_at: Instant,
    /// While set and not over, the member's lines are refused.
    pub(super) muted: Option<Until>,
}

impl Member {
    pub(super) fn role(&self) -> Role {
        self.client.info().role
    }

    /// The room plain lines go to: the one joined last.
    pub(super) fn current_room(&self) -> Option<&Arc<str>> {
        self.rooms.last()
    }

    /// How long the member stays muted (`Some(None)`: until unmuted), if they are.
    pub(super) fn muted_for(&self) -> Option<Option<Duration>> {
        self.muted?.remaining(Instant::now())
    }
}

/// Who has heard of a chat-wide change (a member left, or was renamed) announced room by room.
/// Nothing is tracked for a member in one room: nobody could hear it twice.
pub(super) struct Told(Option<HashSet<ClientId>>);

impl Told {
    /// For a change announced in `rooms` rooms.
    pub(super) fn across(rooms: usize) -> Self {
        Told((rooms > 1).then(HashSet::new))
    }

    /// Records `id` as told; false if it was already.
    pub(super) fn first_time(&mut self, id: ClientId) -> bool {
        self.0.as_mut().is_none_or(|told| told.insert(id))
    }
}

impl RoomHub {
    pub(super) fn register(
        &mut self,
        client: Arc<Client>,
        outbox: Outbox,
        door: DoorId,
    ) -> Result<(), RegisterError> {
        let name = client.name();
        let key = NameKey::new(&name);
        if let Some(ban) = self.ban_on(&key, client.addr().ip()) {
            return Err(ban);
        }
        if self.names.contains_key(&key) {
            return Err(RegisterError::NameTaken(name.to_string()));
        }
        let id = client.id();
        // A mute follows the person back: under a name it holds, or (a guest) from its address.
        let muted = self.mute_on_arrival(&name, client.addr().ip());
        self.names.insert(key, id);
        tracing::info!(
            client = %id, name = %name, peer = %client.addr(), role = client.info().role.as_str(),
            connections = self.members.len() + 1, "client joined"
        );
        self.members.insert(
            id,
            Member {
                client,
                outbox,
                door,
                rooms: Vec::new(),
                connected_at: Instant::now(),
                muted,
            },
        );
        let room = self.default_room.clone();
        if let Some(member) = self.members.get(&id) {
            let welcome = Delivery::Welcome {
                name: name.clone(),
                role: member.role(),
                rooms: vec![room.clone()],
            };
            self.deliver(id, &welcome);
        }
        self.enter_room(id, &room, Scope::Chat, Some(protocol::HELP_HINT));
        if self
            .members
            .get(&id)
            .is_some_and(|m| m.role() != Role::User)
        {
            self.send_moderator_view(id);
        }
        Ok(())
    }

    /// Brings the membership gauges up to date. Called wherever membership changes, before the
    /// change is announced, so nobody can see an announcement the metrics do not yet reflect.
    pub(super) fn update_gauges(&self) {
        let metrics = &self.settings.metrics;
        metrics.connected_clients.set(self.members.len() as i64);
        metrics.rooms.set(self.rooms.len() as i64);
    }

    /// Disconnects every client found with a full outbox. Announcing one departure can fill
    /// another outbox, so this runs until no slow client is left.
    pub(super) fn disconnect_slow_clients(&mut self) {
        while let Some(id) = self.pending.too_slow.pop() {
            self.remove(
                id,
                "too slow",
                Some(Delivery::coded("too_slow", protocol::TOO_SLOW)),
                true,
            );
        }
    }

    /// Removes a member, tells its rooms, and closes its outbox with `last` as the final line.
    pub(super) fn remove(
        &mut self,
        id: ClientId,
        reason: &str,
        last: Option<Delivery>,
        discard_queued: bool,
    ) {
        let Some(member) = self.members.remove(&id) else {
            return;
        };
        let name = member.client.name();
        self.names.remove(&NameKey::new(&name));
        for room in &member.rooms {
            self.leave_room(id, room);
            self.publish_left(room, &name, true);
        }
        self.release_name(&name);
        let last = last.and_then(|d| self.settings.doors.get(member.door).render_to(&d, &name));
        let discarded = member.outbox.close(last, discard_queued);
        let metrics = &self.settings.metrics;
        metrics.disconnect(reason);
        if discarded > 0 {
            metrics.dropped(DropReason::SlowClient, discarded as u64);
        }
        tracing::info!(
            client = %id, name = %name, reason,
            connected_for = ?member.connected_at.elapsed(),
            connections = self.members.len(), "client left"
        );
        let mut told = Told::across(member.rooms.len());
        for room in &member.rooms {
            let left = Delivery::Left {
                room: room.clone(),
                name: name.clone(),
                scope: Scope::Chat,
            };
            self.broadcast_presence_once(room, &left, Some(&mut told));
        }
    }

    /// The member called `name` (any case), if online.
    pub(super) fn find(&self, name: &str) -> Option<ClientId> {
        self.names.get(&NameKey::new(name)).copied()
    }
}
