//! Room membership: entering, leaving and moving between rooms, history replay, listings.

use std::sync::Arc;

use bytes::Bytes;

use super::RoomHub;
use crate::event::{ClientId, Role};
use crate::protocol;

impl RoomHub {
    /// Puts `id` into `room` (creating it), announces `join_line` to the room, tells the
    /// newcomer `hint` (if any), and replays the room's history to them.
    pub(super) fn enter_room(
        &mut self,
        id: ClientId,
        room: &Arc<str>,
        join_line: Bytes,
        hint: Option<&str>,
    ) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.room = room.clone();
        let outbox = member.outbox.clone();
        member.client.update(|info| info.room = room.clone());
        let state = self.rooms.entry(room.clone()).or_default();
        state.members.push((id, outbox));
        let history: Vec<Bytes> = state.history.iter().cloned().collect();
        self.update_gauges();
        self.broadcast(room, join_line);
        if let Some(hint) = hint {
            self.tell(id, hint);
        }
        if !history.is_empty() {
            self.tell(id, &format!("Recent messages in {room}:"));
            for line in history {
                self.send(id, protocol::history_line(&line));
            }
            self.tell(id, "End of history");
        }
    }

    /// Takes `id` out of `room`'s member list, removing the room if it is now empty and not
    /// permanent.
    pub(super) fn leave_room(&mut self, id: ClientId, room: &str) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.members.retain(|(m, _)| *m != id);
        state.voiced.remove(&id);
        if state.members.is_empty() && !self.is_permanent(room) {
            self.rooms.remove(room);
        }
        self.update_gauges();
    }

    fn is_permanent(&self, room: &str) -> bool {
        *self.default_room == *room || self.settings.rooms.permanent.iter().any(|p| p == room)
    }

    /// `/join ROOM` and `/leave`: moves `id` to `room`.
    pub(super) fn move_to(&mut self, id: ClientId, room: &str) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let (old, name) = (member.room.clone(), member.client.name());
        if *old == *room {
            self.tell(id, &format!("You are already in {room}."));
            return;
        }
        let room: Arc<str> = match self.rooms.get_key_value(room) {
            Some((existing, _)) => existing.clone(),
            None if self.rooms.len() >= self.settings.rooms.max_rooms => {
                let max = self.settings.rooms.max_rooms;
                self.tell(
                    id,
                    &format!(
                        "The server has its maximum of {max} rooms; join an existing one (/rooms)."
                    ),
                );
                return;
            }
            // `enter_room` creates it.
            None => Arc::from(room),
        };
        self.leave_room(id, &old);
        self.broadcast(&old, protocol::left_room_line(&name));
        tracing::info!(client = %id, name = %name, from = %old, to = %room, "client changed room");
        self.tell(id, &format!("You are now in {room}."));
        self.enter_room(id, &room, protocol::joined_room_line(&name), None);
    }

    /// `/rooms`.
    pub(super) fn list_rooms(&mut self, id: ClientId) {
        let mut rooms: Vec<(Arc<str>, usize)> = self
            .rooms
            .iter()
            .map(|(name, room)| (name.clone(), room.members.len()))
            .collect();
        rooms.sort();
        let listed: Vec<String> = rooms
            .iter()
            .map(|(name, count)| format!("{name} ({count})"))
            .collect();
        self.tell(id, &format!("Rooms: {}", listed.join(", ")));
    }

    /// `/who`: the members of the asker's room; `@` marks moderators and admins.
    pub(super) fn who(&mut self, id: ClientId) {
        let Some(room) = self.members.get(&id).map(|m| m.room.clone()) else {
            return;
        };
        let names: Vec<String> = self
            .rooms
            .get(&room)
            .map(|r| r.members.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|(m, _)| self.members.get(m))
            .map(|m| {
                let mark = if m.role() == Role::User { "" } else { "@" };
                format!("{mark}{}", m.client.name())
            })
            .collect();
        self.tell(
            id,
            &format!("Users in {room} ({}): {}", names.len(), names.join(", ")),
        );
    }
}
