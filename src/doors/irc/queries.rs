//! Questions answered in numerics: `NAMES`, `WHO`, `WHOIS`, `ISON`, `USERHOST`, and `HELP`.
//!
//! A question about rooms or people is put to the hub with `ask`, so it takes the client's turn
//! (a line of its rate limit, plus what long earlier answers owe) and sees the hub's state
//! between two chat events: nothing here reads room state itself. Away messages are the door's
//! own (`IrcDoor`), read once the hub has answered. A question left unanswered (over the rate
//! limit, or the server stopping) writes nothing more: the client has been told already.
//! `HELP` needs no hub; the dispatch takes its turn.

use std::sync::Arc;

use super::output::Cap;
use super::render::{HOST, SERVER, channel, names_reply, prefix_of};
use super::session::{MAX_TARGETS, Session};
use crate::event::Role;

impl Session {
    /// `NAMES #room`: `353`s and `366`.
    pub(super) async fn names(&self, target: Option<&str>) {
        let Some(room) = target
            .and_then(|t| t.split(',').next())
            .and_then(|t| self.room_of(t))
        else {
            self.numeric("366", &["*"], "End of /NAMES list");
            return;
        };
        let multi = self.output.has(Cap::MultiPrefix);
        let lookup = room.clone();
        let Some(summary) = self.ask(move |hub| hub.room_summary(&lookup)).await else {
            return;
        };
        let names: Vec<String> = summary
            .map(|s| s.members)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, role, voiced)| {
                let mark = match (role, voiced, multi) {
                    (Role::Moderator | Role::Admin, true, true) => "@+",
                    _ => prefix_of(role, voiced),
                };
                format!("{mark}{name}")
            })
            .collect();
        self.reply(|out, me| {
            if names.is_empty() {
                out.numeric("366", me, &[&channel(&room)], "End of /NAMES list");
            } else {
                names_reply(out, me, &room, &names);
            }
        });
    }

    /// `WHO #room` or `WHO nick`: `352`s and `315`.
    pub(super) async fn who(&self, mask: &str) {
        let lookup = mask.to_owned();
        let away = self.door.away_names();
        /// One `352`: channel, nick, role, voice.
        type Row = (String, Arc<str>, Role, bool);
        let rows: Option<Vec<Row>> = self
            .ask(move |hub| match lookup.strip_prefix('#') {
                Some(room) => hub
                    .room_summary(&room.to_ascii_lowercase())
                    .map(|s| {
                        let shown = channel(&s.name);
                        s.members
                            .into_iter()
                            .map(|(name, role, voiced)| (shown.clone(), name, role, voiced))
                            .collect()
                    })
                    .unwrap_or_default(),
                None => hub
                    .member_summary(&lookup)
                    .map(|m| vec![("*".to_owned(), m.name, m.role, false)])
                    .unwrap_or_default(),
            })
            .await;
        let Some(rows) = rows else {
            return;
        };
        self.reply(|out, me| {
            for (room, name, role, voiced) in &rows {
                let here = if away.iter().any(|a| **a == **name) {
                    "G"
                } else {
                    "H"
                };
                let flags = format!("{here}{}", prefix_of(*role, *voiced));
                out.numeric(
                    "352",
                    me,
                    &[room, name, HOST, SERVER, name, &flags],
                    &format!("0 {name}"),
                );
            }
            out.numeric("315", me, &[mask], "End of /WHO list");
        });
    }

    /// `WHOIS nick`.
    pub(super) async fn whois(&self, nick: &str) {
        let lookup = nick.to_owned();
        let Some(found) = self.ask(move |hub| hub.member_summary(&lookup)).await else {
            return;
        };
        let away = found.as_ref().and_then(|m| self.door.away_of(&m.name));
        self.reply(|out, me| {
            let Some(member) = found else {
                out.numeric("401", me, &[nick], "No such nick/channel");
                out.numeric("318", me, &[nick], "End of /WHOIS list");
                return;
            };
            let name: &str = &member.name;
            out.numeric("311", me, &[name, name, HOST, "*"], name);
            let mark = prefix_of(member.role, false);
            let rooms: Vec<String> = member
                .rooms
                .iter()
                .map(|r| format!("{mark}{}", channel(r)))
                .collect();
            if !rooms.is_empty() {
                out.numeric("319", me, &[name], &rooms.join(" "));
            }
            out.numeric("312", me, &[name, SERVER], "chatpipe");
            if member.role != Role::User {
                out.numeric(
                    "313",
                    me,
                    &[name],
                    &format!("is a chatpipe {}", member.role.as_str()),
                );
            }
            if let Some(away) = away {
                out.numeric("301", me, &[name], &away);
            }
            out.numeric(
                "317",
                me,
                &[name, "0", &connected_since(member.connected_for)],
                "seconds idle, signon time",
            );
            out.numeric("318", me, &[name], "End of /WHOIS list");
        });
    }

    /// `ISON` (`303`) and `USERHOST` (`302`).
    pub(super) async fn presence(&self, command: &str, nicks: &[&str]) {
        let asked: Vec<String> = nicks
            .iter()
            .flat_map(|n| n.split_ascii_whitespace())
            .take(MAX_TARGETS * 4)
            .map(str::to_owned)
            .collect();
        let online: Option<Vec<(Arc<str>, Role)>> = self
            .ask(move |hub| {
                asked
                    .iter()
                    .filter_map(|n| hub.member_summary(n))
                    .map(|m| (m.name, m.role))
                    .collect()
            })
            .await;
        let Some(online) = online else {
            return;
        };
        let away = self.door.away_names();
        if command == "ISON" {
            let names: Vec<&str> = online.iter().map(|(n, _)| &**n).collect();
            self.numeric("303", &[], &names.join(" "));
        } else {
            let replies: Vec<String> = online
                .iter()
                .map(|(name, role)| {
                    let op = if *role == Role::User { "" } else { "*" };
                    let here = if away.iter().any(|a| **a == **name) {
                        '-'
                    } else {
                        '+'
                    };
                    format!("{name}{op}={here}{name}@{HOST}")
                })
                .collect();
            self.numeric("302", &[], &replies.join(" "));
        }
    }

    pub(super) fn help(&self) {
        self.reply(|out, me| {
            for line in [
                "chatpipe over IRC. Channels are rooms: JOIN #games, PART #games.",
                "Supported: PRIVMSG NOTICE JOIN PART TOPIC NAMES LIST WHO WHOIS KICK MODE NICK",
                "  AWAY QUIT PING ISON USERHOST MOTD VERSION LUSERS CAP AUTHENTICATE.",
                "Modes: +m/-m moderated, +v voice, +o/-o moderator role, +b/-b nick!*@* ban.",
                "chatpipe commands, sent as they are (/quote in most clients): HELD, APPROVE n,",
                "  DENY n [reason], REPORT nick [reason], REPORTS, RESOLVE n [note], HISTORY [n],",
                "  MUTE nick [10m], UNMUTE nick, BANS, MUTES, REGISTER password, ROLE nick role.",
            ] {
                out.notice(me, line);
            }
        });
    }
}

/// The signon time of a client connected for `connected_for`, in Unix seconds.
fn connected_since(connected_for: std::time::Duration) -> String {
    std::time::SystemTime::now()
        .checked_sub(connected_for)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
        .to_string()
}
