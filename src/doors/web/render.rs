//! [`JsonRender`]: deliveries as the web door's JSON objects, one per WebSocket text frame.
//!
//! Every object has a `"type"` and a `"time"` (RFC 3339); the other fields are the delivery's, not
//! its text-protocol wording, so a page never parses `alice: hi`. A `notice` carries the text of
//! the `SERVER:` line and, where there is one, a machine-readable `"code"`.

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::hub::{Delivery, Render, Scope};
use crate::store::LineKind;

/// The web door's renderer. See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRender;

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The JSON object for `delivery`, stamped `now` unless it carries its own time.
pub fn to_json(delivery: &Delivery, now: SystemTime) -> Value {
    let scope = |scope: &Scope| match scope {
        Scope::Chat => "chat",
        Scope::Room => "room",
    };
    let value = match delivery {
        Delivery::Joined {
            room,
            name,
            role,
            scope: s,
        } => json!({
            "type": "joined", "room": &**room, "name": &**name,
            "role": role.as_str(), "scope": scope(s),
        }),
        Delivery::Left {
            room,
            name,
            scope: s,
        } => {
            json!({"type": "left", "room": &**room, "name": &**name, "scope": scope(s)})
        }
        Delivery::Message {
            room,
            from,
            text,
            reviewed,
        } => with_reviewed(
            json!({"type": "message", "room": &**room, "from": &**from, "text": &**text}),
            *reviewed,
        ),
        Delivery::Action {
            room,
            from,
            text,
            reviewed,
        } => with_reviewed(
            json!({"type": "action", "room": &**room, "from": &**from, "text": &**text}),
            *reviewed,
        ),
        Delivery::Private {
            from,
            to,
            text,
            outgoing,
        } => json!({
            "type": "private",
            "from": &**from,
            "to": &**to,
            "text": &**text,
            "direction": if *outgoing { "out" } else { "in" },
        }),
        Delivery::Renamed { room, old, new } => {
            json!({"type": "renamed", "room": &**room, "old": &**old, "new": &**new})
        }
        Delivery::History {
            room,
            kind,
            from,
            text,
            at,
        } => json!({
            "type": "history",
            "room": &**room,
            "kind": match kind { LineKind::Chat => "message", LineKind::Action => "action" },
            "from": &**from,
            "text": &**text,
            "time": time(*at),
        }),
        Delivery::Notice { text, code, room } => {
            let mut notice = json!({"type": "notice", "text": &**text});
            if let Some(code) = code {
                notice["code"] = json!(code);
            }
            if let Some(room) = room {
                notice["room"] = json!(&**room);
            }
            notice
        }
        Delivery::Topic { room, topic, by } => json!({
            "type": "notice",
            "code": "topic",
            "room": &**room,
            "topic": topic.as_deref(),
            "text": Delivery::topic_text(room, topic.as_deref(), by.as_deref()),
        }),
        // The page redraws the list whole; a role change needs nothing else.
        Delivery::Members { room, members } | Delivery::RoleChanged { room, members, .. } => {
            json!({
                "type": "members",
                "room": &**room,
                "members": members
                    .iter()
                    .map(|(name, role)| json!({"name": &**name, "role": role.as_str()}))
                    .collect::<Vec<_>>(),
            })
        }
        Delivery::Welcome { name, role, rooms } => json!({
            "type": "welcome",
            "name": &**name,
            "role": role.as_str(),
            "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
        }),
        Delivery::Held(held) => held_json(held),
        Delivery::Reported(report) => report_json(report),
        Delivery::QueueDone {
            what,
            id,
            outcome,
            by,
        } => json!({"type": "queue_done", "what": what, "id": id, "outcome": outcome, "by": &**by}),
        Delivery::Queue { held, reports } => json!({
            "type": "queue",
            "held": held.iter().map(|h| held_json(h)).collect::<Vec<_>>(),
            "reports": reports.iter().map(|r| report_json(r)).collect::<Vec<_>>(),
        }),
        Delivery::Audit(entries) => json!({
            "type": "audit",
            "entries": entries.iter().map(|e| json!({
                "time": time(e.at),
                "who": e.who,
                "whom": e.whom,
                "what": e.what,
                "why": e.why,
                "until": e.until.map(time),
            })).collect::<Vec<_>>(),
        }),
        Delivery::Rooms { rooms } => json!({
            "type": "rooms",
            "rooms": rooms
                .iter()
                .map(|(name, count)| json!({"name": &**name, "members": count}))
                .collect::<Vec<_>>(),
        }),
    };
    let mut value = value;
    if let Value::Object(object) = &mut value {
        object
            .entry("time")
            .or_insert_with(|| Value::String(time(now)));
    }
    value
}

/// `"reviewed": true` on a line a moderator approved.
fn with_reviewed(mut value: Value, reviewed: bool) -> Value {
    if reviewed {
        value["reviewed"] = json!(true);
    }
    value
}

fn held_json(held: &crate::hub::HeldView) -> Value {
    json!({
        "type": "held",
        "id": held.id,
        "room": &*held.room,
        "from": &*held.from,
        "filter": held.filter,
        "reason": held.reason,
        "kind": match held.kind { LineKind::Chat => "message", LineKind::Action => "action" },
        "text": &*held.text,
        "time": time(held.at),
    })
}

fn report_json(report: &crate::hub::ReportView) -> Value {
    json!({
        "type": "report",
        "id": report.id,
        "reporter": &*report.reporter,
        "reported": &*report.reported,
        "room": &*report.room,
        "reason": report.reason,
        "context": report.context,
        "time": time(report.at),
    })
}

impl Render for JsonRender {
    fn render(&self, delivery: &Delivery) -> Option<Bytes> {
        Some(Bytes::from(
            to_json(delivery, SystemTime::now()).to_string(),
        ))
    }

    fn joins_add(&self) -> bool {
        true
    }

    fn shows_members(&self) -> bool {
        true
    }

    fn presence_per_room(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn messages_and_notices() {
        let now = SystemTime::UNIX_EPOCH;
        let message = Delivery::Message {
            room: Arc::from("games"),
            from: Arc::from("alice"),
            text: Arc::from("<img src=x onerror=alert(1)>"),
            reviewed: false,
        };
        assert_eq!(
            to_json(&message, now),
            json!({"type": "message", "room": "games", "from": "alice",
                   "text": "<img src=x onerror=alert(1)>", "time": "1970-01-01T00:00:00.000Z"})
        );
        let notice = Delivery::coded("rate_limited", "Rate limit exceeded. Please slow down.");
        let value = to_json(&notice, now);
        assert_eq!(value["type"], "notice");
        assert_eq!(value["code"], "rate_limited");
    }
}
