//! Fan-out: rendering a delivery once per door and queueing the shared bytes in outboxes.
//!
//! Nothing here awaits. A recipient's outbox takes the line or is full; a full one is noted in
//! [`Pending`] and its client disconnected after the fan-out, so one slow client never delays
//! the others. Writers are not woken line by line: [`Pending`] hands them to the write schedule,
//! except one whose queue is getting long, which is woken at once. Presence in a quiet room
//! ([`Audience::MemberListsAnd`]) reaches only the doors that keep a member list, and a
//! chat-wide change is heard once by someone sharing several of its rooms.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::{RoomHub, Told};
use crate::event::ClientId;
use crate::hub::delivery::{Delivery, MAX_DOORS};
use crate::hub::outbox::{Outbox, Queued};
use crate::hub::write_schedule::WriteSchedule;
use crate::names::NameKey;

/// Who in a room hears a delivery.
#[derive(Debug, Clone, Copy)]
pub(super) enum Audience {
    Everyone,
    /// A quiet room (above `[rooms] quiet_above`): the members whose door keeps a member list,
    /// and the member the delivery is about.
    MemberListsAnd(Option<ClientId>),
}

/// Follow-up work from queueing lines, done after a fan-out rather than during it.
pub(super) struct Pending {
    /// Clients found with a full outbox, disconnected once the fan-out is done.
    pub(super) too_slow: Vec<ClientId>,
    /// Writers given lines since they were last woken, by when they are due.
    pub(super) writes: WriteSchedule,
    /// When the event or request being handled came in (one clock reading for its whole
    /// fan-out).
    pub(super) now: Instant,
    /// Some outbox is past half its bounds: its writer was woken at once, and the hub should let
    /// it run before queueing more.
    pub(super) backlogged: bool,
}

impl Pending {
    /// Queues `line` for client `id`, leaving the wake-up of its writer to the write schedule
    /// unless its queue is getting long.
    pub(super) fn queue(&mut self, id: ClientId, outbox: &Outbox, line: Bytes) {
        match outbox.push_quietly(line) {
            Ok(Queued::First { last_woken }) => {
                self.writes.queue(id, outbox, last_woken, self.now);
            }
            Ok(Queued::Urgent) => {
                outbox.wake();
                self.backlogged = true;
            }
            Ok(Queued::Behind | Queued::Closed) => {}
            Err(_) => self.too_slow.push(id),
        }
    }
}

impl RoomHub {
    /// A `SERVER:` line to one client.
    pub(super) fn tell(&mut self, id: ClientId, text: &str) {
        self.deliver(id, &Delivery::notice(text));
    }

    /// Renders `delivery` for one client's door and queues it.
    pub(super) fn deliver(&mut self, id: ClientId, delivery: &Delivery) {
        if let Some(member) = self.members.get(&id)
            && let Some(bytes) = self
                .settings
                .doors
                .get(member.door)
                .render_to(delivery, &member.client.name())
        {
            self.pending.queue(id, &member.outbox, bytes);
        }
    }

    /// Renders `delivery` once per door and puts the shared buffer into the outbox of every
    /// member of `room`.
    pub(super) fn broadcast(&mut self, room: &str, delivery: &Delivery) {
        self.fan_out(room, delivery, None, Audience::Everyone);
    }

    /// [`RoomHub::broadcast`] of a chat-wide change (a member left, or was renamed), announced
    /// room by room: a member of a door that says it once
    /// ([`Render::presence_per_room`](crate::hub::Render::presence_per_room)) and already in
    /// `told` is skipped, and those told are added, so someone sharing several of the rooms
    /// hears it once.
    pub(super) fn broadcast_once(&mut self, room: &str, delivery: &Delivery, told: &mut Told) {
        self.fan_out(room, delivery, Some(told), Audience::Everyone);
    }

    /// A join or a leave, to everyone in `room` — or, in a room larger than `[rooms]
    /// quiet_above`, only to the members whose door keeps a member list, and to the member it
    /// is about. Announcing every arrival to everyone costs a room of N members N² lines as it
    /// fills: 10,000 clients arriving took over two minutes of CPU that way.
    pub(super) fn broadcast_presence(&mut self, room: &str, delivery: &Delivery) {
        self.broadcast_presence_once(room, delivery, None);
    }

    /// [`RoomHub::broadcast_presence`], told once as in [`RoomHub::broadcast_once`] when `told`
    /// is given.
    pub(super) fn broadcast_presence_once(
        &mut self,
        room: &str,
        delivery: &Delivery,
        told: Option<&mut Told>,
    ) {
        let limit = self.settings.rooms.quiet_above;
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        // A leaving member is already out of the list: count the room as it was.
        let size = state.members.len() + usize::from(matches!(delivery, Delivery::Left { .. }));
        let audience = if limit == 0 || size <= limit {
            Audience::Everyone
        } else {
            let about = match delivery {
                Delivery::Joined { name, .. } | Delivery::Left { name, .. } => {
                    self.names.get(&NameKey::new(name)).copied()
                }
                _ => None,
            };
            Audience::MemberListsAnd(about)
        };
        self.fan_out(room, delivery, told, audience);
    }

    /// `delivery`, rendered once per door, queued for the members of `room` in `audience`
    /// (and not yet in `told`, for doors that say a chat-wide change once).
    pub(super) fn fan_out(
        &mut self,
        room: &str,
        delivery: &Delivery,
        mut told: Option<&mut Told>,
        audience: Audience,
    ) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let doors = &self.settings.doors;
        let mut rendered: [Option<Option<Bytes>>; MAX_DOORS] = Default::default();
        for (id, door, outbox) in &state.members {
            let render = doors.get(*door);
            if let Audience::MemberListsAnd(about) = audience
                && !render.shows_members()
                && about != Some(*id)
            {
                continue;
            }
            if let Some(told) = told.as_deref_mut()
                && !render.presence_per_room()
                && !told.first_time(*id)
            {
                continue;
            }
            let slot = &mut rendered[usize::from(door.0) % MAX_DOORS];
            if let Some(bytes) = slot.get_or_insert_with(|| render.render(delivery)) {
                self.pending.queue(*id, outbox, bytes.clone());
            }
        }
    }

    /// `SERVER: TEXT` to every member of `room` (moderation announcements).
    pub(super) fn announce(&mut self, room: &str, text: &str) {
        let room_name: Arc<str> = Arc::from(room);
        self.broadcast(room, &Delivery::room_notice(&room_name, text));
    }

    /// Sends a `SERVER:` line to every moderator and admin online.
    pub(super) fn alert_moderators(&mut self, text: &str) {
        self.tell_moderators(&Delivery::coded("alert", text));
    }
}
