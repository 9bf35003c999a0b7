//! Moderation: moderator commands, filter sanctions, bans, and the audit log.
//!
//! Every action is announced to the room concerned and written to the audit log (`tracing`
//! target `chatpipe::audit`, fields who, whom, what, why, until). Filter actions (`mute`, `kick`)
//! use the same functions as the commands, with the filter as "who".

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::{Ban, RegisterError, RoomHub, Until, describe_duration};
use crate::event::{ClientId, Command, Role, Sanction, SanctionKind};
use crate::names::NameKey;
use crate::protocol;

/// How long `/mute NAME` lasts without a duration.
pub(super) const DEFAULT_MUTE: Duration = Duration::from_secs(600);

const PERMISSION_DENIED: &str = "Permission denied";

impl RoomHub {
    /// Carries out a moderator command for `id`, after checking its role.
    pub(super) fn moderate(&mut self, id: ClientId, command: Command) {
        let Some(actor) = self.members.get(&id) else {
            return;
        };
        let (actor_role, actor_name) = (actor.role(), actor.client.name().to_string());
        if actor_role == Role::User {
            self.tell(id, PERMISSION_DENIED);
            return;
        }
        match command {
            Command::Kick { name, reason } => {
                if let Some(target) = self.target(id, actor_role, &name) {
                    let why = reason.unwrap_or_else(|| "no reason given".to_owned());
                    self.kick(target, &actor_name, &why);
                }
            }
            Command::Mute { name, duration } => {
                if let Some(target) = self.target(id, actor_role, &name) {
                    let duration = duration.unwrap_or(DEFAULT_MUTE);
                    self.mute(target, &actor_name, duration, "muted by a moderator");
                }
            }
            Command::Unmute(name) => {
                if let Some(target) = self.target(id, actor_role, &name)
                    && let Some(member) = self.members.get_mut(&target)
                {
                    member.muted = None;
                    let (whom, room) = (member.client.name(), member.room.clone());
                    audit(&actor_name, &whom, "unmute", "", Until::Lifted);
                    self.announce(&room, &format!("{whom} was unmuted by {actor_name}"));
                }
            }
            Command::Ban { name, duration } => {
                self.ban(id, actor_role, &actor_name, &name, duration)
            }
            Command::Unban(name) => self.unban(id, &actor_name, &name),
            Command::Moderated(on) => self.set_moderated(id, &actor_name, on),
            Command::Voice(name) => {
                if let Some(target) = self.target(id, actor_role, &name) {
                    self.voice(id, target, &actor_name);
                }
            }
            Command::Reload => self.reload_filters(id, &actor_name),
            Command::Bans => self.list_bans(id),
            Command::Mutes => self.list_mutes(id),
            // Not moderation: handled by `handle_command` before this.
            Command::Quit
            | Command::Nick(_)
            | Command::Who
            | Command::Join(_)
            | Command::Leave
            | Command::Rooms => {}
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

    fn kick(&mut self, target: ClientId, who: &str, why: &str) {
        let Some(whom) = self.members.get(&target).map(|m| m.client.name()) else {
            return;
        };
        audit(who, &whom, "kick", why, Until::Lifted);
        self.expel(
            target,
            "kicked",
            &format!("You were kicked by {who}: {why}"),
            &format!("{whom} was kicked by {who}: {why}"),
        );
    }

    /// Disconnects `target`, telling them `to_them` last, then tells their room `to_room`. The
    /// removal comes first, so the announcement reaches the room but not the one expelled.
    fn expel(&mut self, target: ClientId, reason: &str, to_them: &str, to_room: &str) {
        let Some(room) = self.members.get(&target).map(|m| m.room.clone()) else {
            return;
        };
        self.remove(target, reason, Some(protocol::server_line(to_them)), false);
        self.announce(&room, to_room);
    }

    fn mute(&mut self, target: ClientId, who: &str, duration: Duration, why: &str) {
        let Some(member) = self.members.get_mut(&target) else {
            return;
        };
        let until = Until::after(Some(duration));
        member.muted = Some(until);
        let (whom, room) = (member.client.name(), member.room.clone());
        audit(who, &whom, "mute", why, until);
        let shown = until.describe("unmuted");
        self.announce(&room, &format!("{whom} was muted by {who} {shown}"));
    }

    fn ban(
        &mut self,
        id: ClientId,
        actor_role: Role,
        actor_name: &str,
        name: &str,
        duration: Option<Duration>,
    ) {
        // A ban may name someone offline; if they are online they must be a fair target.
        let online = self.find(name);
        if online.is_some() && self.target(id, actor_role, name).is_none() {
            return;
        }
        let offline_role = self.settings.registered.get(&NameKey::new(name)).copied();
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
        let reason = format!("banned by {actor_name}");
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
        audit(actor_name, name, "ban", &reason, until);
        let shown = until.describe("unbanned");
        let addr_note = if addr.is_some() {
            " (name and address)"
        } else {
            ""
        };
        self.tell(
            id,
            &format!("{name} is banned by {actor_name} {shown}{addr_note}."),
        );
        if let Some(target) = online {
            self.expel(
                target,
                "banned",
                &format!("You were banned by {actor_name} {shown}."),
                &format!("{name} was banned by {actor_name} {shown}"),
            );
        }
    }

    fn unban(&mut self, id: ClientId, actor_name: &str, name: &str) {
        let key = NameKey::new(name);
        let before = self.bans.len();
        self.bans.retain(|ban| ban.name != key);
        if self.bans.len() == before {
            self.tell(id, &format!("{name} is not banned."));
            return;
        }
        audit(actor_name, name, "unban", "", Until::Lifted);
        self.tell(id, &format!("{name} is no longer banned."));
        if let Some(room) = self.members.get(&id).map(|m| m.room.clone()) {
            self.announce(&room, &format!("{name} was unbanned by {actor_name}"));
        }
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

    /// `/mutes`: every member muted now, and for how long.
    fn list_mutes(&mut self, id: ClientId) {
        let now = Instant::now();
        let mut lines: Vec<String> = self
            .members
            .values()
            .filter_map(|m| {
                let until = m.muted?;
                until.remaining(now)?;
                Some(format!("{} {}", m.client.name(), until.describe("unmuted")))
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

    fn set_moderated(&mut self, id: ClientId, actor_name: &str, on: bool) {
        let Some(room) = self.members.get(&id).map(|m| m.room.clone()) else {
            return;
        };
        if let Some(state) = self.rooms.get_mut(&room) {
            state.moderated = on;
            if !on {
                state.voiced.clear();
            }
        }
        let what = if on { "moderated" } else { "unmoderated" };
        audit(actor_name, &room, what, "", Until::Lifted);
        let text = if on {
            format!(
                "{room} is now moderated by {actor_name}: only moderators and voiced users may speak"
            )
        } else {
            format!("{room} is no longer moderated ({actor_name})")
        };
        self.announce(&room, &text);
    }

    fn voice(&mut self, id: ClientId, target: ClientId, actor_name: &str) {
        let Some(room) = self.members.get(&id).map(|m| m.room.clone()) else {
            return;
        };
        let Some((whom, target_room)) = self
            .members
            .get(&target)
            .map(|m| (m.client.name(), m.room.clone()))
        else {
            return;
        };
        if target_room != room {
            self.tell(id, &format!("{whom} is not in {room}."));
            return;
        }
        if let Some(state) = self.rooms.get_mut(&room) {
            state.voiced.insert(target);
        }
        audit(actor_name, &whom, "voice", "", Until::Lifted);
        self.announce(&room, &format!("{whom} was given voice by {actor_name}"));
    }

    fn reload_filters(&mut self, id: ClientId, actor_name: &str) {
        let (Some(rules), Some(member)) =
            (self.settings.filter_rules.clone(), self.members.get(&id))
        else {
            self.tell(id, "This server has no filters directory to reload.");
            return;
        };
        audit(actor_name, "filters", "reload", "", Until::Lifted);
        let outbox = member.outbox.clone();
        // Reading and compiling the files is blocking work: off the hub, which must never wait.
        // The answer goes straight into the asker's outbox.
        self.settings.tasks.spawn_blocking(move || {
            let answer = match rules.reload_and_log() {
                Ok(names) => format!("Filters reloaded: {}", names.join(", ")),
                Err(errors) => format!(
                    "Filter reload failed ({} problems; see the log); the previous filters stay in force. First: {}",
                    errors.0.len(),
                    errors.0.first().map(ToString::to_string).unwrap_or_default()
                ),
            };
            let _ = outbox.push(protocol::server_line(&answer));
        });
    }
}

/// One audit log entry; `until` matters for mutes and bans only.
fn audit(who: &str, whom: &str, what: &str, why: &str, until: Until) {
    let until = match until.remaining(Instant::now()) {
        Some(Some(left)) => describe_duration(left),
        _ => String::new(),
    };
    tracing::info!(target: "chatpipe::audit", who, whom, what, why, until, "moderation");
}
