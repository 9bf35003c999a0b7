//! The hub in a cluster: room lines through the stream, presence of other servers' members,
//! and the events other servers send this one. Commands aimed at another server's members are
//! in [`cross_server`](super::cross_server), the replicated accounts, bans, mutes and rooms in
//! [`shared_state`](super::shared_state).
//!
//! Invariants: a room line is delivered to this server's members only when it comes back from
//! the stream, so all servers deliver the same order; this server's own joins, leaves and
//! renames are announced here at once and published for the others, whose news arrives as
//! [`ClusterInput`]. The view of other servers' members ([`ClusterState::remote`]) is updated by
//! their presence events and replaced by their heartbeats, so it heals from anything missed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::RoomHub;
use crate::cluster::wire::{NodeEvent, RemoteMember, RoomEvent};
use crate::cluster::{ClusterInput, Outgoing};
use crate::event::{ClientId, Role};
use crate::hub::delivery::{Delivery, Scope};
use crate::names::NameKey;
use crate::store::LineKind;

/// What this server knows of the rest of its cluster.
#[derive(Default)]
pub(super) struct ClusterState {
    /// Other servers' members: by server, by name.
    remote: HashMap<String, HashMap<NameKey, Remote>>,
    /// The link to NATS is down: lines are refused until it is back.
    paused: bool,
    /// Numbers this server's events, for their message ids.
    next_event: u64,
    /// When this process started (nanoseconds), so message ids differ across restarts.
    epoch: u128,
    /// Each room's last lines as the stream has them: the history shown on join, the same on
    /// every server.
    history: HashMap<Arc<str>, VecDeque<Delivery>>,
    /// When each other server was last heard from (a heartbeat, or any of its room events).
    last_heard: HashMap<String, tokio::time::Instant>,
}

/// A member of another server.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    pub(super) name: Arc<str>,
    pub(super) role: Role,
    rooms: Vec<Arc<str>>,
    /// When its join came through the stream: a heartbeat older than that may not list it yet.
    joined_at: Option<tokio::time::Instant>,
}

/// How long a member known from its join outlives heartbeats that do not list it: heartbeats
/// travel outside the stream and may have been sent before the join.
const HEARTBEAT_LAG: Duration = Duration::from_secs(5);

impl RoomHub {
    /// Publishes a line for `room` (it is delivered here when it comes back from the stream).
    pub(super) fn publish_line(
        &mut self,
        room: &Arc<str>,
        kind: LineKind,
        from: &str,
        text: String,
        reviewed: bool,
        sender: Option<ClientId>,
    ) {
        if self.cluster.paused {
            if let Some(sender) = sender {
                self.deliver(
                    sender,
                    &Delivery::room_coded(
                        "paused",
                        room,
                        "Chat is paused (this server lost its link to the cluster); your line was not sent.",
                    ),
                );
            }
            return;
        }
        let event = RoomEvent::Line {
            node: self.node().to_owned(),
            from: from.to_owned(),
            action: kind == LineKind::Action,
            text,
            reviewed,
        };
        if !self.publish_room(room, event, sender)
            && let Some(sender) = sender
        {
            self.deliver(
                sender,
                &Delivery::room_coded(
                    "paused",
                    room,
                    "The cluster is not keeping up; your line was not sent.",
                ),
            );
        }
    }

    /// Publishes this server's member joining or leaving `room`, or being renamed (the node
    /// is filled in here).
    pub(super) fn publish_presence(&mut self, room: &Arc<str>, mut event: RoomEvent) {
        if self.settings.cluster.is_none() {
            return;
        }
        let node = self.node().to_owned();
        match &mut event {
            RoomEvent::Line { node: n, .. }
            | RoomEvent::Joined { node: n, .. }
            | RoomEvent::Left { node: n, .. }
            | RoomEvent::Renamed { node: n, .. } => *n = node,
        }
        self.publish_room(room, event, None);
    }

    /// A rename here (the new name claimed already): the old name is given up cluster-wide.
    pub(super) fn rename_in_cluster(&mut self, old: &str, new: &str) {
        if !old.eq_ignore_ascii_case(new) {
            self.release_name(old);
        }
    }

    /// Publishes `name`'s join of `room` (a no-op alone).
    pub(super) fn publish_joined(&mut self, room: &Arc<str>, name: &str, role: Role, chat: bool) {
        let event = RoomEvent::Joined {
            node: self.node().to_owned(),
            name: name.to_owned(),
            role,
            chat,
        };
        self.publish_presence(room, event);
    }

    /// Publishes `name`'s leaving `room` (a no-op alone).
    pub(super) fn publish_left(&mut self, room: &Arc<str>, name: &str, chat: bool) {
        let event = RoomEvent::Left {
            node: self.node().to_owned(),
            name: name.to_owned(),
            chat,
        };
        self.publish_presence(room, event);
    }

    /// Gives up a name held cluster-wide (a no-op alone).
    pub(super) fn release_name(&mut self, name: &str) {
        if let Some(link) = &self.settings.cluster {
            let _ = link.outgoing.try_send(Outgoing::Release(name.to_owned()));
        }
    }

    /// Sends a node event to one server, or all (a no-op alone).
    pub(super) fn send_node(&mut self, to: Option<String>, event: NodeEvent) {
        if let Some(link) = &self.settings.cluster
            && link
                .outgoing
                .try_send(Outgoing::Node { to, event })
                .is_err()
        {
            tracing::warn!("the cluster queue is full; a message to another server was dropped");
        }
    }

    fn node(&self) -> &str {
        self.settings.cluster.as_ref().map_or("", |c| &c.node)
    }

    fn publish_room(
        &mut self,
        room: &Arc<str>,
        event: RoomEvent,
        sender: Option<ClientId>,
    ) -> bool {
        let Some(link) = &self.settings.cluster else {
            return false;
        };
        if self.cluster.epoch == 0 {
            self.cluster.epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos());
        }
        self.cluster.next_event += 1;
        let id = format!(
            "{}-{}-{}",
            link.node, self.cluster.epoch, self.cluster.next_event
        );
        link.outgoing
            .try_send(Outgoing::Room {
                room: room.clone(),
                event,
                sender,
                id,
            })
            .is_ok()
    }

    /// The member of another server called `name`, with its server.
    pub(super) fn remote_member(&self, name: &str) -> Option<(&str, &Remote)> {
        let key = NameKey::new(name);
        self.cluster
            .remote
            .iter()
            .find_map(|(node, members)| members.get(&key).map(|m| (node.as_str(), m)))
    }

    /// Other servers' members of `room`: names and roles.
    pub(super) fn remote_in(&self, room: &str) -> impl Iterator<Item = (Arc<str>, Role)> + '_ {
        let room = room.to_owned();
        self.cluster
            .remote
            .values()
            .flat_map(|members| members.values())
            .filter(move |m| m.rooms.iter().any(|r| **r == *room))
            .map(|m| (m.name.clone(), m.role))
    }

    /// Rooms with members on other servers, and how many.
    pub(super) fn remote_rooms(&self) -> HashMap<Arc<str>, usize> {
        let mut rooms = HashMap::new();
        for member in self.cluster.remote.values().flat_map(|m| m.values()) {
            for room in &member.rooms {
                *rooms.entry(room.clone()).or_default() += 1;
            }
        }
        rooms
    }

    /// The history of `room` as the stream has it (in a cluster).
    pub(super) fn cluster_history(&self, room: &str) -> Option<Vec<Delivery>> {
        self.settings.cluster.as_ref()?;
        Some(
            self.cluster
                .history
                .get(room)
                .map(|h| h.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// This server's members, for its heartbeat.
    pub fn local_members(&self) -> Vec<RemoteMember> {
        self.members
            .values()
            .map(|m| RemoteMember {
                name: m.client.name().to_string(),
                role: m.role(),
                rooms: m.rooms.iter().map(|r| r.to_string()).collect(),
            })
            .collect()
    }

    /// News from the cluster.
    pub(super) fn handle_cluster(&mut self, input: ClusterInput) {
        match input {
            ClusterInput::Room {
                room,
                event,
                replay,
            } => self.room_event(room, event, replay),
            ClusterInput::Node(event) => self.node_event(event),
            ClusterInput::Tick => {
                let now = tokio::time::Instant::now();
                let silent: Vec<String> = self
                    .cluster
                    .last_heard
                    .iter()
                    .filter(|(_, at)| now.duration_since(**at) > crate::cluster::NODE_TIMEOUT)
                    .map(|(node, _)| node.clone())
                    .collect();
                for node in silent {
                    self.cluster.last_heard.remove(&node);
                    self.node_gone(&node);
                }
            }
            ClusterInput::Link(up) => {
                if self.cluster.paused != up {
                    return;
                }
                self.cluster.paused = !up;
                let text = if up {
                    "Chat has resumed: this server is linked to the cluster again."
                } else {
                    "Chat is paused: this server lost its link to the cluster. Lines sent now are refused; nothing already sent is lost."
                };
                tracing::warn!(up, "cluster link changed");
                let notice = Delivery::coded(if up { "resumed" } else { "paused" }, text);
                let ids: Vec<ClientId> = self.members.keys().copied().collect();
                for id in ids {
                    self.deliver(id, &notice);
                }
            }
            ClusterInput::Shared(change) => self.apply_shared(change),
            ClusterInput::NameLost(name) => {
                // Two members may not share a name: this one goes, saying why (the name is not
                // this server's to release any more; the claims forgot it already).
                if let Some(target) = self.find(&name) {
                    let shown = self
                        .members
                        .get(&target)
                        .map_or_else(|| name.clone(), |m| m.client.name().to_string());
                    self.expel(
                        target,
                        "name lost",
                        &format!(
                            "This server lost its link to the cluster for too long, and the name {shown} was taken on another server meanwhile. Please reconnect with another name."
                        ),
                        &format!("{shown} left (the name was taken on another server)"),
                    );
                }
            }
            ClusterInput::NotSent(id) => self.deliver(
                id,
                &Delivery::coded(
                    "paused",
                    "Your line was not delivered: the cluster is unreachable.",
                ),
            ),
        }
    }

    /// A server gone silent: its members are gone, and its rooms are told.
    fn node_gone(&mut self, node: &str) {
        tracing::warn!(%node, "a server of the cluster went silent; its members are gone");
        let Some(members) = self.cluster.remote.remove(node) else {
            return;
        };
        for member in members.into_values() {
            let mut told = super::Told::across(member.rooms.len());
            for room in &member.rooms {
                let left = Delivery::Left {
                    room: room.clone(),
                    name: member.name.clone(),
                    scope: Scope::Chat,
                };
                self.broadcast_presence_once(room, &left, Some(&mut told));
            }
        }
    }

    fn room_event(&mut self, room: Arc<str>, event: RoomEvent, replay: bool) {
        let mine = self.node().to_owned();
        let from = match &event {
            RoomEvent::Line { node, .. }
            | RoomEvent::Joined { node, .. }
            | RoomEvent::Left { node, .. }
            | RoomEvent::Renamed { node, .. } => node,
        };
        if !replay && *from != mine {
            self.cluster
                .last_heard
                .insert(from.clone(), tokio::time::Instant::now());
        }
        match event {
            RoomEvent::Line {
                from,
                action,
                text,
                reviewed,
                ..
            } => {
                let kind = if action {
                    LineKind::Action
                } else {
                    LineKind::Chat
                };
                let keep = self.settings.rooms.history;
                if keep > 0 {
                    self.make_room_for_history(&room);
                    let history = self.cluster.history.entry(room.clone()).or_default();
                    if history.len() >= keep {
                        history.pop_front();
                    }
                    history.push_back(Delivery::History {
                        room: room.clone(),
                        kind,
                        from: Arc::from(from.as_str()),
                        text: Arc::from(text.as_str()),
                        at: std::time::SystemTime::now(),
                    });
                }
                if !replay {
                    self.record_history(&room, kind, &from, &text);
                    self.deliver_line(&room, kind, Arc::from(from.as_str()), text, reviewed);
                }
            }
            _ if replay => {}
            RoomEvent::Joined {
                node,
                name,
                role,
                chat,
            } if node != mine => {
                let name: Arc<str> = Arc::from(name.as_str());
                let member = self
                    .cluster
                    .remote
                    .entry(node)
                    .or_default()
                    .entry(NameKey::new(&name))
                    .or_insert_with(|| Remote {
                        name: name.clone(),
                        role,
                        rooms: Vec::new(),
                        joined_at: None,
                    });
                member.joined_at = Some(tokio::time::Instant::now());
                if !member.rooms.contains(&room) {
                    member.rooms.reserve_exact(1);
                    member.rooms.push(room.clone());
                }
                let scope = if chat { Scope::Chat } else { Scope::Room };
                let joined = Delivery::Joined {
                    room: room.clone(),
                    name,
                    role,
                    scope,
                };
                self.broadcast_presence(&room, &joined);
            }
            RoomEvent::Left { node, name, chat } if node != mine => {
                let key = NameKey::new(&name);
                if let Some(members) = self.cluster.remote.get_mut(&node) {
                    if let Some(member) = members.get_mut(&key) {
                        member.rooms.retain(|r| *r != room);
                    }
                    if chat || members.get(&key).is_some_and(|m| m.rooms.is_empty()) {
                        members.remove(&key);
                    }
                }
                let scope = if chat { Scope::Chat } else { Scope::Room };
                let left = Delivery::Left {
                    room: room.clone(),
                    name: Arc::from(name.as_str()),
                    scope,
                };
                self.broadcast_presence(&room, &left);
            }
            RoomEvent::Renamed { node, old, new } if node != mine => {
                if let Some(members) = self.cluster.remote.get_mut(&node)
                    && let Some(mut member) = members.remove(&NameKey::new(&old))
                {
                    member.name = Arc::from(new.as_str());
                    members.insert(NameKey::new(&new), member);
                }
                let renamed = Delivery::Renamed {
                    room: room.clone(),
                    old: Arc::from(old.as_str()),
                    new: Arc::from(new.as_str()),
                };
                self.broadcast(&room, &renamed);
            }
            // This server's own presence, already announced here.
            RoomEvent::Joined { .. } | RoomEvent::Left { .. } | RoomEvent::Renamed { .. } => {}
        }
    }

    /// Keeps the history of at most `[rooms] max_rooms` rooms: before a room not yet kept is
    /// added, the room whose newest line is the oldest is forgotten (room churn would otherwise
    /// keep an entry for every room that ever had a line).
    fn make_room_for_history(&mut self, room: &Arc<str>) {
        let history = &mut self.cluster.history;
        if history.contains_key(room) || history.len() < self.settings.rooms.max_rooms {
            return;
        }
        let newest_line = |lines: &VecDeque<Delivery>| match lines.back() {
            Some(Delivery::History { at, .. }) => *at,
            _ => std::time::SystemTime::UNIX_EPOCH,
        };
        let stalest = history
            .iter()
            .min_by_key(|(_, lines)| newest_line(lines))
            .map(|(name, _)| name.clone());
        if let Some(stalest) = stalest {
            history.remove(&stalest);
        }
    }

    fn node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Private { from, to, text } => {
                let Some(target) = self.find(&to) else {
                    return;
                };
                let Some(recipient) = self.members.get(&target).map(|m| m.client.name()) else {
                    return;
                };
                let incoming = Delivery::Private {
                    from: Arc::from(from.as_str()),
                    to: recipient,
                    text: Arc::from(text.as_str()),
                    outgoing: false,
                };
                self.deliver(target, &incoming);
            }
            NodeEvent::Kick { name, by, reason } => {
                if let Some(target) = self.find(&name) {
                    self.kick(target, &by, &reason);
                }
            }
            NodeEvent::Mute { name, by, seconds } => {
                if let Some(target) = self.find(&name) {
                    self.mute(
                        target,
                        &by,
                        Duration::from_secs(seconds),
                        "muted by a moderator",
                    );
                }
            }
            // Answered by the cluster's heartbeat task, never handed to the hub.
            NodeEvent::Hello { .. } => {}
            NodeEvent::Heartbeat { node, members } => {
                self.cluster
                    .last_heard
                    .insert(node.clone(), tokio::time::Instant::now());
                let mut members: HashMap<NameKey, Remote> = members
                    .into_iter()
                    .map(|m| {
                        let remote = Remote {
                            name: Arc::from(m.name.as_str()),
                            role: m.role,
                            rooms: m.rooms.iter().map(|r| Arc::from(r.as_str())).collect(),
                            joined_at: None,
                        };
                        (NameKey::new(&m.name), remote)
                    })
                    .collect();
                // Members who joined just now may be missing from a heartbeat sent before.
                if let Some(old) = self.cluster.remote.remove(&node) {
                    for (key, member) in old {
                        let recent = member
                            .joined_at
                            .is_some_and(|at| at.elapsed() < HEARTBEAT_LAG);
                        if recent {
                            members.entry(key).or_insert(member);
                        }
                    }
                }
                self.cluster.remote.insert(node, members);
            }
        }
    }
}
