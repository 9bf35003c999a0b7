//! [`TextRender`]: the hub's deliveries as the text protocol's lines.

use std::sync::Arc;

use bytes::Bytes;

use crate::hub::{Delivery, Doors, Render, Scope};
use crate::protocol;
use crate::store::LineKind;

/// The text protocol (version 1): exactly the lines of the wire protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextRender;

impl Render for TextRender {
    fn render(&self, delivery: &Delivery) -> Option<Bytes> {
        Some(match delivery {
            Delivery::Joined { name, scope, .. } => match scope {
                Scope::Chat => protocol::joined_line(name),
                Scope::Room => protocol::joined_room_line(name),
            },
            Delivery::Left { name, scope, .. } => match scope {
                Scope::Chat => protocol::left_line(name),
                Scope::Room => protocol::left_room_line(name),
            },
            Delivery::Message { from, text, .. } => protocol::chat_line(from, text),
            Delivery::Action { from, text, .. } => protocol::action_line(from, text),
            Delivery::Private {
                from,
                to,
                text,
                outgoing,
            } => {
                if *outgoing {
                    protocol::pm_to_line(to, text)
                } else {
                    protocol::pm_from_line(from, text)
                }
            }
            Delivery::Renamed { old, new, .. } => protocol::renamed_line(old, new),
            Delivery::History {
                kind, from, text, ..
            } => protocol::history_line(&match kind {
                LineKind::Chat => protocol::chat_line(from, text),
                LineKind::Action => protocol::action_line(from, text),
            }),
            Delivery::Notice { text, .. } => protocol::server_line(text),
            Delivery::Topic { room, topic, by } => {
                protocol::server_line(&Delivery::topic_text(room, topic.as_deref(), by.as_deref()))
            }
            Delivery::Rooms { rooms } => {
                let listed: Vec<String> = rooms
                    .iter()
                    .map(|(name, count)| format!("{name} ({count})"))
                    .collect();
                protocol::server_line(&format!("Rooms: {}", listed.join(", ")))
            }
            Delivery::Held(held) => protocol::server_line(&held.alert()),
            Delivery::Reported(report) => protocol::server_line(&report.alert()),
            Delivery::Members { .. }
            | Delivery::RoleChanged { .. }
            | Delivery::Welcome { .. }
            | Delivery::QueueDone { .. }
            | Delivery::Queue { .. }
            | Delivery::Audit(_) => return None,
        })
    }
}

/// The text door alone, as door 0: every hub has it, and it renders for any door the hub does
/// not know. Implemented here, with the renderer, so the hub needs no door.
impl Default for Doors {
    fn default() -> Self {
        Doors::with_text(Arc::new(TextRender))
    }
}
