//! Chat lines and private messages: who may speak, and saying a line in its room.
//!
//! A mute silences everything a member says; a moderated room silences only what is said in it
//! (a private message is not the room's business). A room line goes out at once when the server
//! is alone, and through the cluster's room stream otherwise, so every server (this one
//! included) delivers it in the room's one order; either way it lands in the room's history.

use std::sync::Arc;

use super::RoomHub;
use super::until::describe_duration;
use crate::event::{ClientId, Role};
use crate::hub::delivery::Delivery;
use crate::names::NameKey;
use crate::store::LineKind;

impl RoomHub {
    /// Why `id` may not speak now, if it may not: a mute silences everything; a moderated room
    /// only what is said `in_room` (private messages are not the room's business).
    pub(super) fn refusal_to_speak(
        &self,
        id: ClientId,
        room: &str,
        in_room: bool,
    ) -> Option<(&'static str, String)> {
        let member = self.members.get(&id)?;
        if let Some(left) = member.muted_for() {
            return Some((
                "muted",
                match left {
                    Some(left) => format!("You are muted for another {}.", describe_duration(left)),
                    None => "You are muted until a moderator unmutes you.".to_owned(),
                },
            ));
        }
        let room_state = self.rooms.get(room)?;
        if in_room
            && room_state.moderated
            && member.role() == Role::User
            && !room_state
                .voiced
                .contains(&NameKey::new(&member.client.name()))
        {
            return Some((
                "moderated",
                format!("{room} is moderated: only moderators and voiced users may speak."),
            ));
        }
        None
    }

    pub(super) fn private_message(&mut self, from: ClientId, to: &str, text: &str) {
        let Some(&target) = self.names.get(&NameKey::new(to)) else {
            if !self.private_message_elsewhere(from, to, text) {
                self.tell(from, &format!("No user named {to} is online."));
            }
            return;
        };
        let (Some(sender), Some(recipient)) = (self.members.get(&from), self.members.get(&target))
        else {
            return;
        };
        let (sender_name, recipient_name) = (sender.client.name(), recipient.client.name());
        tracing::debug!(from = %from, to = %target, text = %text, "private message");
        let text: Arc<str> = Arc::from(text);
        let incoming = Delivery::Private {
            from: sender_name.clone(),
            to: recipient_name.clone(),
            text: text.clone(),
            outgoing: false,
        };
        self.deliver(target, &incoming);
        let outgoing = Delivery::Private {
            from: sender_name,
            to: recipient_name,
            text,
            outgoing: true,
        };
        self.deliver(from, &outgoing);
    }

    /// Says a chat line or action in `room`: alone, at once; in a cluster, through the room
    /// stream, which brings it back to every server (this one included) in the room's order.
    pub(super) fn say_in_room(
        &mut self,
        room: &Arc<str>,
        kind: LineKind,
        from: Arc<str>,
        text: String,
        reviewed: bool,
        sender: Option<ClientId>,
    ) {
        if self.settings.cluster.is_some() {
            self.publish_line(room, kind, &from, text, reviewed, sender);
            return;
        }
        self.record_history(room, kind, &from, &text);
        self.deliver_line(room, kind, from, text, reviewed);
    }

    /// Broadcasts a chat line or action to this server's members of `room` and keeps it in the
    /// room's history.
    pub(super) fn deliver_line(
        &mut self,
        room: &Arc<str>,
        kind: LineKind,
        from: Arc<str>,
        text: String,
        reviewed: bool,
    ) {
        let text: Arc<str> = Arc::from(text);
        let keep = self.settings.rooms.history;
        if keep > 0
            && let Some(state) = self.rooms.get_mut(room)
        {
            if state.history.len() == keep {
                state.history.pop_front();
            }
            state.history.push_back(Delivery::History {
                room: room.clone(),
                kind,
                from: from.clone(),
                text: text.clone(),
                at: std::time::SystemTime::now(),
            });
        }
        let room_name = room.clone();
        let delivery = match kind {
            LineKind::Chat => Delivery::Message {
                room: room_name,
                from,
                text,
                reviewed,
            },
            LineKind::Action => Delivery::Action {
                room: room_name,
                from,
                text,
                reviewed,
            },
        };
        self.broadcast(room, &delivery);
    }
}
