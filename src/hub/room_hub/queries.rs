//! Read-only looks at the hub's state for front doors whose protocol asks questions the chat
//! commands do not (IRC's `WHOIS`, `WHO`, `NAMES`, `MODE #room`).
//!
//! A query runs on the hub's task between events (see [`HubHandle::query`]), so it sees a
//! consistent state, never blocks the hub for longer than copying the answer out, and takes
//! nothing that lets a door change the state behind the hub's back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{HubHandle, Request, RoomHub};
use crate::event::Role;
use crate::names::NameKey;

/// A member as another member may see it.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// The name as it is spelled now.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
    /// The rooms it is in, in join order.
    pub rooms: Vec<Arc<str>>,
    /// How long it has been connected.
    pub connected_for: Duration,
}

/// A room as a member sees it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    /// The room's name.
    pub name: Arc<str>,
    /// Members in join order: name, role, and whether they have voice there.
    pub members: Vec<(Arc<str>, Role, bool)>,
    /// Only moderators and voiced members may speak.
    pub moderated: bool,
    /// The topic, if any.
    pub topic: Option<String>,
}

impl HubHandle {
    /// Runs `ask` on the hub's task with its state and returns the answer; `None` when the hub
    /// has stopped. Queries are read-only and answered between events.
    pub async fn query<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&RoomHub) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let work = Box::new(move |hub: &mut RoomHub| {
            let _ = reply.send(ask(hub));
        });
        self.requests.send(Request::Continue(work)).await.ok()?;
        answer.await.ok()
    }
}

impl RoomHub {
    /// The member called `name` (any case), if online.
    pub fn member_summary(&self, name: &str) -> Option<MemberSummary> {
        let id = self.names.get(&NameKey::new(name))?;
        let member = self.members.get(id)?;
        Some(MemberSummary {
            name: member.client.name(),
            role: member.role(),
            rooms: member.rooms.clone(),
            connected_for: Instant::now().saturating_duration_since(member.connected_at),
        })
    }

    /// The room called `room`, if it exists.
    pub fn room_summary(&self, room: &str) -> Option<RoomSummary> {
        let (name, state) = self.rooms.get_key_value(room)?;
        let members = state
            .members
            .iter()
            .filter_map(|(id, _, _)| self.members.get(id))
            .map(|m| {
                let name = m.client.name();
                let voiced = state.voiced.contains(&NameKey::new(&name));
                (name, m.role(), voiced)
            })
            .collect();
        Some(RoomSummary {
            name: name.clone(),
            members,
            moderated: state.moderated,
            topic: state.topic.clone(),
        })
    }

    /// How many members are online.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The names banned now, as the moderators typed them, each with the ban's reason
    /// (`banned by mod: spamming`).
    pub fn banned_names(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        self.bans
            .iter()
            .filter(|ban| ban.until.remaining(now).is_some())
            .map(|ban| (ban.shown.clone(), ban.reason.clone()))
            .collect()
    }
}
