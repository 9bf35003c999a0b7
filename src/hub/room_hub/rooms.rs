//! Room membership: entering, leaving and moving between rooms, history replay and `/history`,
//! the topic, listings.

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
        let topic = state.topic.clone();
        self.update_gauges();
        self.broadcast(room, join_line);
        if let Some(hint) = hint {
            self.tell(id, hint);
        }
        if let Some(topic) = topic {
            self.tell(id, &format!("Topic for {room}: {topic}"));
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
        let configured = self.is_configured_permanent(room);
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.members.retain(|(m, _)| *m != id);
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

    /// The default room and `[rooms] permanent` are kept whatever moderators say.
    pub(super) fn is_configured_permanent(&self, room: &str) -> bool {
        *self.default_room == *room || self.settings.rooms.permanent.iter().any(|p| p == room)
    }

    /// `/topic`: the topic of the asker's room.
    pub(super) fn show_topic(&mut self, id: ClientId) {
        let Some(room) = self.members.get(&id).map(|m| m.room.clone()) else {
            return;
        };
        let text = match self.rooms.get(&room).and_then(|r| r.topic.clone()) {
            Some(topic) => format!("Topic for {room}: {topic}"),
            None => format!("{room} has no topic."),
        };
        self.tell(id, &text);
    }

    /// `/history [N]`: the newest `count` lines of the asker's room from the store, answered
    /// straight into the asker's outbox by the store thread.
    pub(super) fn show_history(&mut self, id: ClientId, count: usize) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let (room, outbox) = (member.room.clone(), member.outbox.clone());
        let Some(store) = self.settings.store.clone() else {
            self.tell(
                id,
                "This server keeps no history beyond what is replayed on join.",
            );
            return;
        };
        let shown_room = room.clone();
        let asked = store.history(
            &room,
            count,
            Box::new(move |result| {
                let lines = match result {
                    Ok(lines) if lines.is_empty() => {
                        vec![protocol::server_line(&format!(
                            "No history in {shown_room}."
                        ))]
                    }
                    Ok(lines) => {
                        let mut out = Vec::with_capacity(lines.len() + 2);
                        out.push(protocol::server_line(&format!(
                            "History of {shown_room} ({} lines):",
                            lines.len()
                        )));
                        out.extend(lines.iter().map(super::persistence::replay_line));
                        out.push(protocol::server_line("End of history"));
                        out
                    }
                    Err(error) => vec![protocol::server_line(&format!(
                        "The history could not be read ({error})."
                    ))],
                };
                for line in lines {
                    if outbox.push(line).is_err() {
                        break;
                    }
                }
            }),
        );
        if let Err(error) = asked {
            self.tell(id, &format!("The history could not be read ({error})."));
        }
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
