//! The cluster's shared state in the hub: accounts, roles, bans, mutes and permanent rooms that
//! one server changes and every server keeps.
//!
//! Invariants: a change made here is saved here first and then handed to the other servers
//! ([`RoomHub::replicate`]); a change from another server (live, or replayed from the stream at
//! start-up) goes into this server's store and into the hub's memory the same way
//! ([`RoomHub::apply_shared`]), so a ban expels and a mute silences wherever its target is. Names
//! set in the configuration file keep their configured role whatever the cluster says.

use std::sync::Arc;

use super::{RoomHub, Until};
use crate::cluster::Outgoing;
use crate::cluster::wire::Shared;
use crate::names::NameKey;

impl RoomHub {
    /// Hands the shared part of `changes` (made here) to the other servers (a no-op alone).
    pub(super) fn replicate(&mut self, changes: &[crate::store::Change]) {
        let Some(link) = &self.settings.cluster else {
            return;
        };
        let shared: Vec<Shared> = changes.iter().filter_map(Shared::of).collect();
        if !shared.is_empty() && link.outgoing.try_send(Outgoing::State(shared)).is_err() {
            tracing::error!("the cluster queue is full; a shared change stays on this server");
        }
    }

    /// Makes a change another server made to the shared state: into this server's store, and
    /// into the hub's memory (a ban expels, a mute silences, a role shows).
    pub(super) fn apply_shared(&mut self, change: Shared) {
        let record = change.change();
        match change {
            Shared::Register(account) => {
                let key = NameKey::new(&account.name);
                if !self.settings.configured.contains(&key) {
                    self.settings.registered.insert(key, account.role);
                }
            }
            Shared::Unregister { name } => {
                let key = NameKey::new(&name);
                if !self.settings.configured.contains(&key) {
                    self.settings.registered.remove(&key);
                }
            }
            Shared::SetPassword { .. } => {}
            Shared::SetRole { name, role } => {
                self.give_role(NameKey::new(&name), &name, role);
            }
            Shared::Ban(ban) => {
                let duration = ban
                    .until
                    .and_then(|u| u.duration_since(std::time::SystemTime::now()).ok());
                if ban.until.is_some() && duration.is_none() {
                    return; // over already
                }
                let key = NameKey::new(&ban.name);
                let until = Until::after(duration);
                self.bans.retain(|b| b.name != key);
                self.bans.push(super::Ban {
                    shown: ban.name.clone(),
                    name: key,
                    addr: ban.addr,
                    until,
                    reason: ban.reason.clone(),
                });
                if let Some(target) = self.find(&ban.name) {
                    let shown = until.describe("unbanned");
                    self.expel(
                        target,
                        "banned",
                        &format!("You were {} {shown}.", ban.reason),
                        &format!("{} was {} {shown}", ban.name, ban.reason),
                    );
                }
            }
            Shared::Unban { name } => {
                let key = NameKey::new(&name);
                self.bans.retain(|b| b.name != key);
            }
            Shared::Mute(mute) => {
                let duration = mute
                    .until
                    .and_then(|u| u.duration_since(std::time::SystemTime::now()).ok());
                // A mute with an end that has passed (replayed by a server that started later)
                // is over, not "until lifted": like a lifted mute, it replaces any earlier one.
                if mute.until.is_some() && duration.is_none() {
                    self.lift_mute(&NameKey::new(&mute.name));
                } else {
                    self.put_mute(mute, Until::after(duration));
                }
            }
            Shared::Unmute { name } => {
                self.lift_mute(&NameKey::new(&name));
            }
            Shared::Room(stored) => {
                let name: Arc<str> = Arc::from(stored.name.as_str());
                if stored.permanent || self.rooms.contains_key(&name) {
                    let room = self.rooms.entry(name).or_default();
                    room.kept = stored.permanent;
                    room.moderated = stored.moderated;
                    room.topic = stored.topic.clone();
                    room.voiced = stored.voiced.iter().map(|n| NameKey::new(n)).collect();
                }
            }
        }
        self.persist_here(vec![record], |_, result| {
            if let Err(cause) = result {
                tracing::error!(%cause, "a change from another server could not be saved here");
            }
        });
    }
}
