//! Commands aimed at members of other servers: a private message, a kick or a mute for a name
//! that is not on this server but on another of the cluster is sent there as a node event.
//!
//! Invariants: the sender is always answered here (its own copy of the private message, or what
//! became of the command); a moderator may act on another server's moderator only as an admin,
//! as on this server; the receiving server carries the command out as if given there.

use std::sync::Arc;

use super::RoomHub;
use crate::cluster::wire::NodeEvent;
use crate::event::{ClientId, Role};
use crate::hub::delivery::Delivery;

impl RoomHub {
    /// A private message for a member of another server: sent there, and the sender's copy
    /// delivered here. False when nobody of that name is on another server.
    pub(super) fn private_message_elsewhere(
        &mut self,
        from: ClientId,
        to: &str,
        text: &str,
    ) -> bool {
        let Some((node, member)) = self.remote_member(to) else {
            return false;
        };
        let (node, recipient) = (node.to_owned(), member.name.clone());
        let Some(sender) = self.members.get(&from).map(|m| m.client.name()) else {
            return true;
        };
        self.send_node(
            Some(node),
            NodeEvent::Private {
                from: sender.to_string(),
                to: recipient.to_string(),
                text: text.to_owned(),
            },
        );
        let outgoing = Delivery::Private {
            from: sender,
            to: recipient,
            text: Arc::from(text),
            outgoing: true,
        };
        self.deliver(from, &outgoing);
        true
    }

    /// A kick or mute aimed at a member of another server: sent there. `Some(true)` when done,
    /// `None` when the command is not of that kind or its target is not elsewhere.
    pub(super) fn moderate_elsewhere(
        &mut self,
        id: ClientId,
        actor_role: Role,
        actor_name: &str,
        command: &crate::event::Command,
    ) -> Option<bool> {
        use crate::event::Command;
        let name = match command {
            Command::Kick { name, .. } | Command::Mute { name, .. } => name,
            _ => return None,
        };
        if self.find(name).is_some() {
            return None;
        }
        let by = actor_name.to_owned();
        let sent = match command {
            Command::Kick { reason, .. } => {
                let reason = reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".to_owned());
                self.moderate_remote(id, actor_role, name, |name| NodeEvent::Kick {
                    name,
                    by,
                    reason,
                })
            }
            Command::Mute { duration, .. } => {
                let seconds = duration
                    .unwrap_or(super::moderation::DEFAULT_MUTE)
                    .min(super::MAX_SANCTION)
                    .as_secs();
                self.moderate_remote(id, actor_role, name, |name| NodeEvent::Mute {
                    name,
                    by,
                    seconds,
                })
            }
            _ => false,
        };
        sent.then_some(true)
    }

    /// A moderator's command aimed at a member of another server: sent there. True when
    /// `name` is such a member (the moderator has been told what happened).
    fn moderate_remote(
        &mut self,
        id: ClientId,
        actor_role: Role,
        name: &str,
        event: impl FnOnce(String) -> NodeEvent,
    ) -> bool {
        let Some((node, member)) = self.remote_member(name) else {
            return false;
        };
        let (node, role, shown) = (node.to_owned(), member.role, member.name.to_string());
        if role != Role::User && actor_role != Role::Admin {
            self.tell(id, super::moderation::PERMISSION_DENIED);
            return true;
        }
        self.send_node(Some(node.clone()), event(shown.clone()));
        self.tell(id, &format!("Sent to {shown}'s server ({node})."));
        true
    }
}
