//! Mutes: silencing a person, following them across names and reconnects, and lifting it.
//!
//! A [`Mute`] binds to the person, not a name: every name they take while muted is added to it,
//! and a guest's address (unless exempt) is kept, so neither a rename nor a reconnect sheds it;
//! a registered member's mute rides on the account's name instead, which only its owner can
//! take. Like every moderation action it takes effect at once, is saved with its audit entry,
//! and is announced once the store has committed it. Filter sanctions and other servers of the
//! cluster mute through the same functions as `/mute`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::persistence::{audit, not_saved};
use super::{RoomHub, Until};
use crate::event::ClientId;
use crate::names::NameKey;
use crate::store::{Change, StoredMute};

/// A mute. It follows the person, not a name: every name they take while muted (by `/nick`, or
/// by reconnecting from the muted address) is added to `names`, and a guest's address is kept, so
/// neither a rename nor a reconnect sheds it. A registered member's mute is carried by the
/// account (its name, which only its owner can take), not by an address others may share.
#[derive(Clone)]
pub(super) struct Mute {
    /// The names the person has used while muted, as spelled; the first is the one muted (and
    /// the key it is stored under).
    pub(super) names: Vec<String>,
    /// A guest's address when muted, unless exempt.
    pub(super) addr: Option<IpAddr>,
    pub(super) until: Until,
    /// Why, as `/mutes` shows it.
    pub(super) reason: String,
}

impl Mute {
    /// Whether the mute holds for `name` (any case) connected from `addr` (an exempt address
    /// never matches).
    pub(super) fn covers(&self, name: &NameKey, addr: Option<IpAddr>) -> bool {
        self.names.iter().any(|n| NameKey::new(n) == *name)
            || (self.addr.is_some() && self.addr == addr)
    }

    /// As the store keeps it.
    pub(super) fn stored(&self) -> crate::store::StoredMute {
        crate::store::StoredMute {
            name: self.names.first().cloned().unwrap_or_default(),
            until: self.until.to_system(),
            reason: self.reason.clone(),
            addr: self.addr,
            also: self.names.iter().skip(1).cloned().collect(),
        }
    }
}

impl RoomHub {
    /// Mutes `target` for `duration`, recording `why` (a filter's sanction, or a mute from
    /// another server of the cluster): the room is told who muted whom and for how long.
    pub(super) fn mute(&mut self, target: ClientId, who: &str, duration: Duration, why: &str) {
        self.mute_for(target, who, duration, why, None);
    }

    /// Mutes `target` for `duration`, recording `recorded` as the reason (in `/mutes` and the
    /// audit log) and telling its rooms — the person included — `shown` as the reason, if given.
    /// The mute binds to the person ([`super::Mute`]): their name, every name they take while
    /// muted, and the address they are connected from (unless exempt), which holds for guests
    /// arriving from it: a registered member who reconnects as a guest stays muted, while other
    /// registered members at a shared address are not touched.
    pub(super) fn mute_for(
        &mut self,
        target: ClientId,
        who: &str,
        duration: Duration,
        recorded: &str,
        shown: Option<&str>,
    ) {
        let Some(member) = self.members.get(&target) else {
            return;
        };
        let (whom, rooms) = (member.client.name(), member.rooms.clone());
        let key = NameKey::new(&whom);
        let addr = Some(member.client.addr().ip()).filter(|ip| !self.settings.exempt.contains(*ip));
        let until = Until::after(Some(duration));
        // A new mute replaces the person's old one (a moderator shortening or extending it),
        // keeping the names it had gathered.
        let names = match self.mute_index(&key, None) {
            Some(old) => self.mutes.remove(old).names,
            None => vec![whom.to_string()],
        };
        let mute = Mute {
            names,
            addr,
            until,
            reason: recorded.to_owned(),
        };
        let changes = vec![
            Change::Mute(mute.stored()),
            audit(who, &whom, "mute", recorded, until),
        ];
        self.mutes.push(mute);
        if let Some(member) = self.members.get_mut(&target) {
            member.muted = Some(until);
        }
        let because = shown.map(|r| format!(": {r}")).unwrap_or_default();
        let announcement = format!(
            "{whom} was muted by {who} {}{because}",
            until.describe("unmuted")
        );
        let asker = self.find(who);
        self.persist(changes, move |hub, result| {
            for room in &rooms {
                hub.announce(room, &announcement);
            }
            if let (Err(cause), Some(asker)) = (result, asker) {
                hub.tell(asker, &not_saved(&cause));
            }
        });
    }

    /// The index of the mute in force for `name`, or (a guest's mute) for `addr`; forgets
    /// mutes that are over. An exempt address never matches.
    pub(super) fn mute_index(&mut self, name: &NameKey, addr: Option<IpAddr>) -> Option<usize> {
        let now = Instant::now();
        self.mutes.retain(|m| m.until.remaining(now).is_some());
        let addr = addr.filter(|ip| !self.settings.exempt.contains(*ip));
        self.mutes.iter().position(|m| m.covers(name, addr))
    }

    /// The mute someone arriving as `name` from `addr` is under, if any. A name reached through
    /// the address is added to the mute (and saved), so `/mutes` shows it and it holds by name
    /// from then on.
    pub(super) fn mute_on_arrival(&mut self, name: &str, addr: IpAddr) -> Option<Until> {
        let key = NameKey::new(name);
        // The address catches guests only: a registered name is muted by name (its account).
        let addr = Some(addr).filter(|_| !self.settings.registered.contains_key(&key));
        let index = self.mute_index(&key, addr)?;
        let mute = &mut self.mutes[index];
        let until = mute.until;
        if !mute.names.iter().any(|n| NameKey::new(n) == key) {
            mute.names.push(name.to_owned());
            let change = Change::Mute(mute.stored());
            self.persist(vec![change], |_, result| {
                if let Err(cause) = result {
                    tracing::error!(%cause, "a mute could not follow a reconnect under a new name");
                }
            });
        }
        Some(until)
    }

    /// Adds `new`, a name a muted member has just taken, to their mute (and saves it). The old
    /// names stay: the mute holds if they come back under any of them.
    pub(super) fn mute_follows_rename(&mut self, old: &NameKey, new: &str) {
        let Some(index) = self.mute_index(old, None) else {
            return;
        };
        let mute = &mut self.mutes[index];
        if mute.names.iter().any(|n| n == new) {
            return;
        }
        mute.names.retain(|n| !n.eq_ignore_ascii_case(new));
        mute.names.push(new.to_owned());
        let change = Change::Mute(mute.stored());
        self.persist(vec![change], |_, result| {
            if let Err(cause) = result {
                tracing::error!(%cause, "a mute could not follow a rename");
            }
        });
    }

    /// Puts a mute from the store or another server in force: it replaces any mute kept under
    /// the same name, and silences its online members at once.
    pub(super) fn put_mute(&mut self, stored: StoredMute, until: Until) {
        let key = NameKey::new(&stored.name);
        self.mutes
            .retain(|m| m.names.first().is_none_or(|n| NameKey::new(n) != key));
        let mut names = vec![stored.name];
        names.extend(stored.also);
        let mute = Mute {
            names,
            addr: stored.addr.filter(|ip| !self.settings.exempt.contains(*ip)),
            until,
            reason: stored.reason,
        };
        for member in self.members.values_mut() {
            if mute
                .names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&member.client.name()))
            {
                member.muted = Some(until);
            }
        }
        self.mutes.push(mute);
    }

    /// Lifts the mute that holds for `name`, if any: every member it held speaks again. The
    /// mute lifted.
    pub(super) fn lift_mute(&mut self, name: &NameKey) -> Option<Mute> {
        let index = self.mute_index(name, None)?;
        let mute = self.mutes.remove(index);
        for member in self.members.values_mut() {
            let key = NameKey::new(&member.client.name());
            if mute.covers(&key, Some(member.client.addr().ip())) {
                member.muted = None;
            }
        }
        Some(mute)
    }

    pub(super) fn unmute(&mut self, id: ClientId, room: &Arc<str>, actor_name: &str, name: &str) {
        let Some(mute) = self.lift_mute(&NameKey::new(name)) else {
            self.tell(id, &format!("{name} is not muted."));
            return;
        };
        // Told where the person is now (under whichever of the mute's names), else here.
        let mut rooms: Vec<Arc<str>> = mute
            .names
            .iter()
            .filter_map(|n| self.find(n))
            .filter_map(|t| self.members.get(&t))
            .flat_map(|m| m.rooms.iter().cloned())
            .collect();
        rooms.sort();
        rooms.dedup();
        if rooms.is_empty() {
            rooms.push(room.clone());
        }
        let changes = vec![
            Change::Unmute {
                name: mute
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| name.to_owned()),
            },
            audit(actor_name, name, "unmute", "", Until::Lifted),
        ];
        let announcement = format!("{name} was unmuted by {actor_name}");
        self.persist(changes, move |hub, result| {
            for room in &rooms {
                hub.announce(room, &announcement);
            }
            if let Err(cause) = result {
                hub.tell(id, &not_saved(&cause));
            }
        });
    }

    /// `/mutes`: every mute in force, under the name muted and the other names the person has
    /// used since, with how long it lasts and why.
    pub(super) fn list_mutes(&mut self, id: ClientId) {
        let now = Instant::now();
        self.mutes.retain(|m| m.until.remaining(now).is_some());
        let mut lines: Vec<String> = self
            .mutes
            .iter()
            .map(|m| {
                let (first, others) = m
                    .names
                    .split_first()
                    .map_or(("", &[][..]), |(f, o)| (f.as_str(), o));
                let also = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also {})", others.join(", "))
                };
                let why = if m.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.reason)
                };
                format!("{first}{also} {}{why}", m.until.describe("unmuted"))
            })
            .collect();
        if lines.is_empty() {
            self.tell(id, "Nobody is muted.");
            return;
        }
        lines.sort();
        self.tell(
            id,
            &format!("Mutes ({}):\n{}", lines.len(), lines.join("\n")),
        );
    }
}
