//! Moderation: moderator commands, filter sanctions, bans, and the audit log (mutes are in
//! [`super::mutes`]).
//!
//! Every action takes effect at once, is saved in the store with its audit log entry (also
//! written to the `tracing` target `chatpipe::audit`: who, whom, what, why, until), and is
//! announced — to the room, or to the moderator — once the store has committed it; a failure to
//! save is said to the moderator instead. Filter actions (`mute`, `kick`) use the same functions
//! as the commands, with the filter as "who".

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::persistence::{audit, not_saved};
use super::{RegisterError, RoomHub, Until};
use crate::event::{ClientId, Command, Role, Sanction, SanctionKind};
use crate::hub::delivery::Delivery;
use crate::names::NameKey;
use crate::store::{Change, StoredBan};

/// How long `/mute NAME` lasts without a duration.
pub(super) const DEFAULT_MUTE: Duration = Duration::from_secs(600);

pub(super) const PERMISSION_DENIED: &str = "Permission denied";

/// A ban on a name and (unless exempt) the address it was used from.
#[derive(Clone)]
pub(super) struct Ban {
    /// The name as the moderator typed it, for `/bans`.
    pub(super) shown: String,
    pub(super) name: NameKey,
    pub(super) addr: Option<IpAddr>,
    pub(super) until: Until,
    pub(super) reason: String,
}

impl RoomHub {
    /// Carries out a moderator command for `id`, sent to `room`, after checking its role.
    pub(super) fn moderate(&mut self, id: ClientId, room: &Arc<str>, command: Command) {
        let Some(actor) = self.members.get(&id) else {
            return;
        };
        let (actor_role, actor_name) = (actor.role(), actor.client.name().to_string());
        if actor_role == Role::User {
            self.deliver(
                id,
                &Delivery::room_coded("permission_denied", room, PERMISSION_DENIED),
            );
            return;
        }
        // In a cluster, a kick or mute of a member of another server is sent there.
        if self.moderate_elsewhere(id, actor_role, &actor_name, &command) == Some(true) {
            return;
        }
        match command {
            Command::Kick { name, reason } => {
                if let Some(target) = self.target(id, actor_role, &name) {
                    let why = reason.unwrap_or_else(|| "no reason given".to_owned());
                    self.kick(target, &actor_name, &why);
                }
            }
            Command::Mute {
                name,
                duration,
                reason,
            } => {
                if let Some(target) = self.target(id, actor_role, &name) {
                    let duration = duration.unwrap_or(DEFAULT_MUTE);
                    let recorded = reason.clone().unwrap_or_default();
                    self.mute_for(target, &actor_name, duration, &recorded, reason.as_deref());
                }
            }
            Command::Unmute(name) => self.unmute(id, room, &actor_name, &name),
            Command::Ban {
                name,
                duration,
                reason,
            } => self.ban(id, actor_role, &actor_name, &name, duration, reason),
            Command::Unban(name) => self.unban(id, room, &actor_name, &name),
            Command::Moderated(on) => self.set_moderated(id, room, &actor_name, on),
            Command::Voice(name) => {
                if let Some(target) = self.target(id, actor_role, &name) {
                    self.voice(id, room, target, &actor_name);
                }
            }
            Command::Reload => self.reload(id, actor_role, &actor_name),
            Command::Held(page) => self.list_held(id, page),
            Command::Approve(number) => self.approve(id, &actor_name, number),
            Command::Deny { id: number, reason } => self.deny(id, &actor_name, number, reason),
            Command::Reports(page) => self.list_reports(id, page),
            Command::Resolve { id: number, note } => self.resolve(id, &actor_name, number, note),
            Command::Bans => self.list_bans(id),
            Command::Mutes => self.list_mutes(id),
            Command::Topic(Some(topic)) => self.set_topic(id, room, &actor_name, topic),
            Command::KeepRoom(keep) => self.keep_room(id, room, &actor_name, keep),
            Command::Role { name, role } => self.set_role(id, actor_role, &actor_name, &name, role),
            // Not moderation: handled by `handle_command` before this.
            Command::Quit
            | Command::Nick(_)
            | Command::Who
            | Command::Join(_)
            | Command::Leave
            | Command::Rooms
            | Command::Topic(None)
            | Command::History(_)
            | Command::Register(_)
            | Command::Password { .. }
            | Command::Unregister(_)
            | Command::Report { .. } => {}
        }
    }

    /// The member a moderator's command names, if it exists and may be acted on: nobody acts
    /// on themselves, and only admins act on moderators and admins.
    fn target(&mut self, actor: ClientId, actor_role: Role, name: &str) -> Option<ClientId> {
        let Some(target) = self.find(name) else {
            self.tell(actor, &format!("No user named {name} is online."));
            return None;
        };
        let target_role = self.members.get(&target)?.role();
        if target == actor {
            self.tell(actor, "You cannot do that to yourself.");
            return None;
        }
        if target_role != Role::User && actor_role != Role::Admin {
            self.tell(actor, PERMISSION_DENIED);
            return None;
        }
        Some(target)
    }

    /// Applies a filter's sanction to the sender.
    pub(super) fn apply_sanction(&mut self, id: ClientId, sanction: Sanction) {
        let who = format!("the {} filter", sanction.filter);
        match sanction.kind {
            SanctionKind::Mute(duration) => {
                self.tell(id, &sanction.notice);
                self.mute(id, &who, duration, &sanction.notice);
            }
            SanctionKind::Kick => self.kick(id, &who, &sanction.notice),
        }
    }

    pub(super) fn kick(&mut self, target: ClientId, who: &str, why: &str) {
        let Some(whom) = self.members.get(&target).map(|m| m.client.name()) else {
            return;
        };
        // A kick cannot wait for the disk; only its audit entry is saved.
        let entry = audit(who, &whom, "kick", why, Until::Lifted);
        self.persist(vec![entry], |_, result| {
            if let Err(cause) = result {
                tracing::error!(%cause, "a kick could not be written to the audit log");
            }
        });
        self.expel(
            target,
            "kicked",
            &format!("You were kicked by {who}: {why}"),
            &format!("{whom} was kicked by {who}: {why}"),
        );
    }

    /// Disconnects `target`, telling them `to_them` last, then tells their rooms `to_room`. The
    /// removal comes first, so the announcement reaches the rooms but not the one expelled.
    pub(super) fn expel(&mut self, target: ClientId, reason: &str, to_them: &str, to_room: &str) {
        let Some(rooms) = self.members.get(&target).map(|m| m.rooms.clone()) else {
            return;
        };
        let code = if reason == "banned" {
            "banned"
        } else {
            "kicked"
        };
        self.remove(target, reason, Some(Delivery::coded(code, to_them)), false);
        for room in &rooms {
            self.announce(room, to_room);
        }
    }

    fn ban(
        &mut self,
        id: ClientId,
        actor_role: Role,
        actor_name: &str,
        name: &str,
        duration: Option<Duration>,
        given: Option<String>,
    ) {
        // A ban may name someone offline; if they are online they must be a fair target.
        let online = self.find(name);
        if online.is_some() && self.target(id, actor_role, name).is_none() {
            return;
        }
        let offline_role = self.registered_role(name);
        if online.is_none()
            && offline_role.is_some_and(|r| r != Role::User)
            && actor_role != Role::Admin
        {
            self.tell(id, PERMISSION_DENIED);
            return;
        }
        if crate::names::validate_username(name).is_err() {
            self.tell(id, &format!("{name} is not a valid username."));
            return;
        }
        let addr = online
            .and_then(|t| self.members.get(&t))
            .map(|m| m.client.addr().ip())
            .filter(|ip| !self.settings.exempt.contains(*ip));
        // The reason as the banned are told it at every refused login, and as `/bans` lists it.
        let because = given
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let reason = format!("banned by {actor_name}{because}");
        let key = NameKey::new(name);
        let until = Until::after(duration);
        // A new ban on a name replaces the old one (a moderator shortening or extending it).
        self.bans.retain(|ban| ban.name != key);
        self.bans.push(Ban {
            shown: name.to_owned(),
            name: key,
            addr,
            until,
            reason: reason.clone(),
        });
        let shown = until.describe("unbanned");
        let addr_note = if addr.is_some() {
            " (name and address)"
        } else {
            ""
        };
        if let Some(target) = online {
            self.expel(
                target,
                "banned",
                &format!("You were banned by {actor_name} {shown}{because}."),
                &format!("{name} was banned by {actor_name} {shown}{because}"),
            );
        }
        let changes = vec![
            Change::Ban(StoredBan {
                name: name.to_owned(),
                addr,
                until: until.to_system(),
                reason: reason.clone(),
            }),
            audit(
                actor_name,
                name,
                "ban",
                given.as_deref().unwrap_or("no reason given"),
                until,
            ),
        ];
        self.persist_and_tell(
            id,
            changes,
            format!("{name} is banned by {actor_name} {shown}{addr_note}{because}."),
        );
    }

    fn unban(&mut self, id: ClientId, room: &Arc<str>, actor_name: &str, name: &str) {
        let key = NameKey::new(name);
        let before = self.bans.len();
        self.bans.retain(|ban| ban.name != key);
        if self.bans.len() == before {
            self.tell(id, &format!("{name} is not banned."));
            return;
        }
        let changes = vec![
            Change::Unban {
                name: name.to_owned(),
            },
            audit(actor_name, name, "unban", "", Until::Lifted),
        ];
        let (name, actor_name, room) = (name.to_owned(), actor_name.to_owned(), room.clone());
        self.persist(changes, move |hub, result| {
            if let Err(cause) = result {
                hub.tell(id, &not_saved(&cause));
                return;
            }
            hub.tell(id, &format!("{name} is no longer banned."));
            hub.announce(&room, &format!("{name} was unbanned by {actor_name}"));
        });
    }

    /// `/bans`: every ban in force, with what it covers and how long it lasts.
    fn list_bans(&mut self, id: ClientId) {
        let now = Instant::now();
        self.bans.retain(|ban| ban.until.remaining(now).is_some());
        if self.bans.is_empty() {
            self.tell(id, "Nobody is banned.");
            return;
        }
        let lines: Vec<String> = self
            .bans
            .iter()
            .map(|ban| {
                let addr = if ban.addr.is_some() {
                    " and address"
                } else {
                    ""
                };
                format!(
                    "{} (name{addr}) {}: {}",
                    ban.shown,
                    ban.until.describe("unbanned"),
                    ban.reason
                )
            })
            .collect();
        self.tell(
            id,
            &format!("Bans ({}):\n{}", lines.len(), lines.join("\n")),
        );
    }

    /// The ban that keeps `name` or `addr` out, if any; forgets expired bans.
    pub(super) fn ban_on(&mut self, name: &NameKey, addr: IpAddr) -> Option<RegisterError> {
        let now = Instant::now();
        self.bans.retain(|ban| ban.until.remaining(now).is_some());
        let exempt = self.settings.exempt.contains(addr);
        self.bans
            .iter()
            .find(|ban| ban.name == *name || (!exempt && ban.addr == Some(addr)))
            .map(|ban| RegisterError::Banned {
                reason: ban.reason.clone(),
                remaining: ban.until.remaining(now).flatten(),
            })
    }

    fn set_moderated(&mut self, id: ClientId, room: &Arc<str>, actor_name: &str, on: bool) {
        let room = room.clone();
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.moderated = on;
        if !on {
            state.voiced.clear();
        }
        let what = if on { "moderated" } else { "unmoderated" };
        let changes = vec![
            self.room_change(&room, &self.rooms[&room]),
            audit(actor_name, &room, what, "", Until::Lifted),
        ];
        let text = if on {
            format!(
                "{room} is now moderated by {actor_name}: only moderators and voiced users may speak"
            )
        } else {
            format!("{room} is no longer moderated ({actor_name})")
        };
        self.persist_then_announce(id, &room, changes, text);
    }

    fn voice(&mut self, id: ClientId, room: &Arc<str>, target: ClientId, actor_name: &str) {
        let room = room.clone();
        let Some((whom, in_room)) = self
            .members
            .get(&target)
            .map(|m| (m.client.name(), m.rooms.contains(&room)))
        else {
            return;
        };
        if !in_room {
            self.tell(id, &format!("{whom} is not in {room}."));
            return;
        }
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.voiced.insert(NameKey::new(&whom));
        let changes = vec![
            self.room_change(&room, &self.rooms[&room]),
            audit(actor_name, &whom, "voice", "", Until::Lifted),
        ];
        let text = format!("{whom} was given voice by {actor_name}");
        self.persist_then_announce(id, &room, changes, text);
    }

    /// `/topic TEXT` by a moderator: sets the topic of the moderator's room.
    fn set_topic(&mut self, id: ClientId, room: &Arc<str>, actor_name: &str, topic: String) {
        let room = room.clone();
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.topic = Some(topic.clone());
        let changes = vec![
            self.room_change(&room, &self.rooms[&room]),
            audit(actor_name, &room, "topic", &topic, Until::Lifted),
        ];
        let announcement = Delivery::Topic {
            room: room.clone(),
            topic: Some(Arc::from(topic)),
            by: Some(Arc::from(actor_name)),
        };
        self.persist(changes, move |hub, result| {
            hub.broadcast(&room, &announcement);
            if let Err(cause) = result {
                hub.tell(id, &not_saved(&cause));
            }
        });
    }

    /// `/room keep|drop`: whether the moderator's room is kept when empty.
    fn keep_room(&mut self, id: ClientId, room: &Arc<str>, actor_name: &str, keep: bool) {
        let room = room.clone();
        if self.is_configured_permanent(&room) {
            self.tell(
                id,
                &format!(
                    "{room} is kept by the server's configuration; it cannot be changed here."
                ),
            );
            return;
        }
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.kept = keep;
        let what = if keep { "keep room" } else { "drop room" };
        let changes = vec![
            self.room_change(&room, &self.rooms[&room]),
            audit(actor_name, &room, what, "", Until::Lifted),
        ];
        let text = if keep {
            format!("{room} is now a permanent room ({actor_name}): it stays when empty")
        } else {
            format!("{room} is no longer permanent ({actor_name}): it goes when empty")
        };
        self.persist_then_announce(id, &room, changes, text);
    }

    /// Saves `changes`; then announces `text` to `room`, and tells `id` if saving failed.
    fn persist_then_announce(
        &mut self,
        id: ClientId,
        room: &str,
        changes: Vec<Change>,
        text: String,
    ) {
        let room = room.to_owned();
        self.persist(changes, move |hub, result| {
            hub.announce(&room, &text);
            if let Err(cause) = result {
                hub.tell(id, &not_saved(&cause));
            }
        });
    }

    /// `/reload`: the filters, and for an admin the TLS certificate too.
    fn reload(&mut self, id: ClientId, actor_role: Role, actor_name: &str) {
        let rules = self.settings.filter_rules.clone();
        let tls = self
            .settings
            .tls
            .clone()
            .filter(|_| actor_role == Role::Admin);
        let Some(recipient) = self.recipient(id) else {
            return;
        };
        if rules.is_none() && tls.is_none() {
            self.tell(id, "This server has no filters directory to reload.");
            return;
        }
        let entry = audit(actor_name, "filters", "reload", "", Until::Lifted);
        self.persist(vec![entry], |_, result| {
            if let Err(cause) = result {
                tracing::error!(%cause, "a reload could not be written to the audit log");
            }
        });
        // Reading and compiling the files is blocking work: off the hub, which must never wait.
        // The answer goes straight into the asker's outbox.
        self.settings.tasks.spawn_blocking(move || {
            if let Some(rules) = rules {
                let answer = match rules.reload_and_log() {
                    Ok(names) => format!("Filters reloaded: {}", names.join(", ")),
                    Err(errors) => format!(
                        "Filter reload failed ({} problems; see the log); the previous filters stay in force. First: {}",
                        errors.0.len(),
                        errors.0.first().map(ToString::to_string).unwrap_or_default()
                    ),
                };
                recipient.tell(&answer);
            }
            if let Some(tls) = tls {
                let answer = match tls.reload_and_log() {
                    Ok(()) => "TLS certificate reloaded.".to_owned(),
                    Err(error) => format!(
                        "TLS certificate reload failed; the previous one stays in force: {error}"
                    ),
                };
                recipient.tell(&answer);
            }
        });
    }
}
