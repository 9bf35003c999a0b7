//! Room membership: entering, leaving and moving between rooms, history replay and `/history`,
//! the topic, listings.
//!
//! A text-protocol member is in one room at a time: `/join` moves it. A member of a door whose
//! renderer says so ([`Render::joins_add`]) sits in up to `[rooms] max_joined` rooms: `/join`
//! adds a room and `/leave` drops the room the line was sent to.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::RoomHub;
use crate::event::{ClientId, Role};
use crate::hub::delivery::{Delivery, DoorId, Recipient, Scope};
use crate::hub::outbox::Outbox;
use crate::names::NameKey;

#[derive(Default)]
pub(super) struct Room {
    /// Members in join order, with their doors and outboxes at hand for fan-out.
    pub(super) members: Vec<(ClientId, DoorId, Outbox)>,
    /// The last chat lines (as [`Delivery::History`]), oldest first, for replay on join.
    pub(super) history: VecDeque<Delivery>,
    /// Only moderators and voiced members may speak.
    pub(super) moderated: bool,
    /// Names (not connections: voice survives a reconnect and a restart) that may speak while
    /// the room is moderated.
    pub(super) voiced: HashSet<NameKey>,
    /// Shown on join; anyone reads it with `/topic`, moderators set it.
    pub(super) topic: Option<String>,
    /// Kept when empty because a moderator said `/room keep` (the default room and
    /// `[rooms] permanent` are kept anyway).
    pub(super) kept: bool,
    /// Members whose door shows member lists: [`Delivery::Members`] is built only when some.
    pub(super) watchers: usize,
}

impl RoomHub {
    /// Puts `id` into `room` (creating it), announces the join to the room, tells the newcomer
    /// `hint` (if any) and the topic, and replays the room's history to them.
    pub(super) fn enter_room(
        &mut self,
        id: ClientId,
        room: &Arc<str>,
        scope: Scope,
        hint: Option<&str>,
    ) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if !member.rooms.contains(room) {
            // Exactly one more: most members are in one room or two, and a `Vec`'s first growth
            // would take room for four in every member.
            member.rooms.reserve_exact(1);
            member.rooms.push(room.clone());
        }
        let (outbox, door, name) = (member.outbox.clone(), member.door, member.client.name());
        member.client.update(|info| info.room = room.clone());
        let watches = self.settings.doors.get(door).shows_members();
        let state = self.rooms.entry(room.clone()).or_default();
        state.members.push((id, door, outbox));
        state.watchers += usize::from(watches);
        let history: Vec<Delivery> = state.history.iter().cloned().collect();
        let topic = state.topic.clone();
        let history = self.cluster_history(room).unwrap_or(history);
        self.update_gauges();
        let role = self.members.get(&id).map_or(Role::User, |m| m.role());
        self.publish_joined(room, &name, role, scope == Scope::Chat);
        let joined = Delivery::Joined {
            room: room.clone(),
            name,
            role,
            scope,
        };
        self.broadcast_presence(room, &joined);
        if let Some(hint) = hint {
            self.tell(id, hint);
        }
        if let Some(topic) = topic {
            let topic = Delivery::Topic {
                room: room.clone(),
                topic: Some(Arc::from(topic)),
                by: None,
            };
            self.deliver(id, &topic);
        }
        if !history.is_empty() {
            self.deliver(
                id,
                &Delivery::room_notice(room, &format!("Recent messages in {room}:")),
            );
            for line in &history {
                self.deliver(id, line);
            }
            self.deliver(id, &Delivery::room_notice(room, "End of history"));
        }
        if watches {
            let members = self.members_of(room);
            self.deliver(id, &members);
        }
    }

    /// Names and roles of the members of `room`, in join order.
    fn names_in(&self, room: &str) -> impl Iterator<Item = (Arc<str>, Role)> + '_ {
        self.rooms
            .get(room)
            .map(|r| r.members.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|(m, _, _)| self.members.get(m))
            .map(|m| (m.client.name(), m.role()))
            // In a cluster, the room's members on the other servers too.
            .chain(self.remote_in(room))
    }

    /// The member list of `room`.
    fn members_of(&self, room: &Arc<str>) -> Delivery {
        let members: Arc<[(Arc<str>, Role)]> = self.names_in(room).collect();
        Delivery::Members {
            room: room.clone(),
            members,
        }
    }

    /// Takes `id` out of `room`'s member list (and the room out of the member's list, if the
    /// member is still there), removing the room if it is now empty and not kept.
    pub(super) fn leave_room(&mut self, id: ClientId, room: &str) {
        let configured = self.is_configured_permanent(room);
        if let Some(member) = self.members.get_mut(&id) {
            member.rooms.retain(|r| **r != *room);
            if let Some(current) = member.rooms.last().cloned() {
                member.client.update(|info| info.room = current);
            }
        }
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(at) = state.members.iter().position(|(m, _, _)| *m == id) {
            let (_, door, _) = state.members.remove(at);
            let watched = self.settings.doors.get(door).shows_members();
            state.watchers -= usize::from(watched);
        }
        if state.members.is_empty() && !state.kept && !configured {
            let had_settings = state.moderated || state.topic.is_some() || !state.voiced.is_empty();
            self.rooms.remove(room);
            if had_settings {
                // A room that is not kept takes its settings with it.
                self.forget_room(room);
            }
        }
        self.update_gauges();
    }

    /// Tells the members of `room` whose door shows a member list that `name`'s role changed
    /// (IRC shows it as a `MODE`, the web page redraws the list), since joins and leaves do not
    /// describe it. Costs nothing in a room without such members.
    pub(super) fn announce_role(
        &mut self,
        room: &Arc<str>,
        name: &Arc<str>,
        was: Role,
        role: Role,
    ) {
        if self.rooms.get(room).is_none_or(|r| r.watchers == 0) {
            return;
        }
        let delivery = Delivery::RoleChanged {
            room: room.clone(),
            name: name.clone(),
            was,
            role,
            members: self.names_in(room).collect(),
        };
        self.broadcast(room, &delivery);
    }

    /// The default room and `[rooms] permanent` are kept whatever moderators say.
    pub(super) fn is_configured_permanent(&self, room: &str) -> bool {
        *self.default_room == *room || self.settings.rooms.permanent.iter().any(|p| p == room)
    }

    /// `/topic`: the topic of `room`.
    pub(super) fn show_topic(&mut self, id: ClientId, room: &Arc<str>) {
        let topic = Delivery::Topic {
            room: room.clone(),
            topic: self
                .rooms
                .get(room)
                .and_then(|r| r.topic.as_deref())
                .map(Arc::from),
            by: None,
        };
        self.deliver(id, &topic);
    }

    /// The way to tell `id` things from outside the hub.
    pub(super) fn recipient(&self, id: ClientId) -> Option<Recipient> {
        let member = self.members.get(&id)?;
        Some(Recipient {
            outbox: member.outbox.clone(),
            render: self.settings.doors.get(member.door).clone(),
            name: member.client.name(),
        })
    }

    /// `/history [N]`: the newest `count` lines of `room` from the store, answered straight into
    /// the asker's outbox by the store thread.
    pub(super) fn show_history(&mut self, id: ClientId, room: &Arc<str>, count: usize) {
        let Some(recipient) = self.recipient(id) else {
            return;
        };
        let Some(store) = self.settings.store.clone() else {
            self.tell(
                id,
                "This server keeps no history beyond what is replayed on join.",
            );
            return;
        };
        let shown_room = room.clone();
        let asked = store.history(
            room,
            count,
            Box::new(move |result| {
                let notice = |text: &str| Delivery::room_notice(&shown_room, text);
                match result {
                    Ok(lines) if lines.is_empty() => {
                        recipient.deliver(&notice(&format!("No history in {shown_room}.")));
                    }
                    Ok(lines) => {
                        let header = format!("History of {shown_room} ({} lines):", lines.len());
                        recipient.deliver(&notice(&header));
                        for line in &lines {
                            if !recipient.deliver(&super::persistence::history_delivery(line)) {
                                return;
                            }
                        }
                        recipient.deliver(&notice("End of history"));
                    }
                    Err(error) => {
                        recipient.tell(&format!("The history could not be read ({error})."));
                    }
                }
            }),
        );
        if let Err(error) = asked {
            self.tell(id, &format!("The history could not be read ({error})."));
        }
    }

    /// `/join ROOM`: moves a text-protocol member; adds the room for a member of a door where
    /// joins add.
    pub(super) fn join(&mut self, id: ClientId, room: &str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if self.settings.doors.get(member.door).joins_add() {
            self.join_another(id, room);
        } else {
            self.move_to(id, room);
        }
    }

    /// `/leave`: back to the default room for a text-protocol member; out of `room` (the room
    /// the line was for) for a member of a door where joins add.
    pub(super) fn leave(&mut self, id: ClientId, room: &Arc<str>) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if !self.settings.doors.get(member.door).joins_add() {
            let default = self.default_room.clone();
            self.move_to(id, &default);
            return;
        }
        if member.rooms.len() <= 1 {
            self.tell(
                id,
                "You are in one room only; join another before leaving this one.",
            );
            return;
        }
        let name = member.client.name();
        self.leave_room(id, room);
        self.publish_left(room, &name, false);
        let left = Delivery::Left {
            room: room.clone(),
            name: name.clone(),
            scope: Scope::Room,
        };
        self.broadcast_presence(room, &left);
        self.deliver(id, &left);
        tracing::info!(client = %id, name = %name, room = %room, "client left a room");
    }

    /// The `Arc` of an existing room, or a new one if the server may have another.
    fn room_named(&mut self, id: ClientId, room: &str) -> Option<Arc<str>> {
        match self.rooms.get_key_value(room) {
            Some((existing, _)) => Some(existing.clone()),
            None if self.rooms.len() >= self.settings.rooms.max_rooms => {
                let max = self.settings.rooms.max_rooms;
                self.tell(
                    id,
                    &format!(
                        "The server has its maximum of {max} rooms; join an existing one (/rooms)."
                    ),
                );
                None
            }
            // `enter_room` creates it.
            None => Some(Arc::from(room)),
        }
    }

    /// Adds `room` to a multi-room member's rooms.
    fn join_another(&mut self, id: ClientId, room: &str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if member.rooms.iter().any(|r| **r == *room) {
            self.tell(id, &format!("You are already in {room}."));
            return;
        }
        let max = self.settings.rooms.max_joined;
        if member.rooms.len() >= max {
            self.tell(
                id,
                &format!("You are in {max} rooms, the most at once; /leave one first."),
            );
            return;
        }
        let name = member.client.name();
        let Some(room) = self.room_named(id, room) else {
            return;
        };
        tracing::info!(client = %id, name = %name, room = %room, "client joined a room");
        self.enter_room(id, &room, Scope::Room, None);
    }

    /// `/join ROOM` and `/leave` for a text-protocol member: moves `id` to `room`.
    pub(super) fn move_to(&mut self, id: ClientId, room: &str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let Some(old) = member.current_room().cloned() else {
            return;
        };
        let name = member.client.name();
        if *old == *room {
            self.tell(id, &format!("You are already in {room}."));
            return;
        }
        let Some(room) = self.room_named(id, room) else {
            return;
        };
        self.leave_room(id, &old);
        self.publish_left(&old, &name, false);
        let left = Delivery::Left {
            room: old.clone(),
            name: name.clone(),
            scope: Scope::Room,
        };
        self.broadcast_presence(&old, &left);
        tracing::info!(client = %id, name = %name, from = %old, to = %room, "client changed room");
        self.tell(id, &format!("You are now in {room}."));
        self.enter_room(id, &room, Scope::Room, None);
    }

    /// `/rooms`.
    pub(super) fn list_rooms(&mut self, id: ClientId) {
        let mut counts = self.remote_rooms();
        for (name, room) in &self.rooms {
            *counts.entry(name.clone()).or_default() += room.members.len();
        }
        let mut rooms: Vec<(Arc<str>, usize)> = counts.into_iter().collect();
        rooms.sort();
        self.deliver(id, &Delivery::Rooms { rooms });
    }

    /// `/who`: the members of `room`; `@` marks moderators and admins.
    pub(super) fn who(&mut self, id: ClientId, room: &Arc<str>) {
        let names: Vec<String> = self
            .names_in(room)
            .map(|(name, role)| {
                let mark = if role == Role::User { "" } else { "@" };
                format!("{mark}{name}")
            })
            .collect();
        let text = format!("Users in {room} ({}): {}", names.len(), names.join(", "));
        self.deliver(id, &Delivery::room_notice(room, &text));
    }
}
