//! `MODE`: a channel's modes shown, or changed by mapping each flag onto a moderation command
//! (`+m`/`-m` `/moderated`, `+v` `/voice`, `+o`/`-o` `/role`, `+b`/`-b` `/ban` and `/unban` by
//! nickname) or its ban list asked for (`MODE #room b`), and the client's own user modes, which
//! change nothing here.
//!
//! Each change is a chat line for the room, so the hub checks the sender's role exactly as for
//! a text client; one `MODE` carries out at most `MAX_MODES` changes. `+n` and `+t` always hold
//! and are ignored; `-v` and ban masks other than `nick!*@*` are refused with a notice saying
//! why, never half done.

use super::message::Message;
use super::session::Session;
use crate::names::validate_username;

/// The most mode changes with a parameter in one `MODE` (`MODES`).
const MAX_MODES: usize = 4;

impl Session {
    /// `MODE`: a room's modes shown or changed (mapped onto moderation), or the client's own.
    pub(super) async fn mode(&mut self, message: &Message<'_>) -> bool {
        let target = message.param(0).unwrap_or("");
        if !target.starts_with('#') {
            if !self.turn().await {
                return true;
            }
            if !target.eq_ignore_ascii_case(&self.nick()) {
                self.numeric("502", &[], "Cannot change mode for other users");
            } else if let Some(modes) = message.param(1) {
                // +i and +w change nothing here; anything else is unknown.
                if modes.chars().any(|c| !matches!(c, '+' | '-' | 'i' | 'w')) {
                    self.numeric("501", &[], "Unknown MODE flag");
                }
            } else {
                self.numeric("221", &["+"], "");
            }
            return true;
        }
        let Some(room) = self.room_of(target) else {
            return true;
        };
        let Some(modes) = message.param(1) else {
            let lookup = room.clone();
            let Some(moderated) = self
                .ask(move |hub| hub.room_summary(&lookup).map(|s| s.moderated))
                .await
            else {
                return true;
            };
            match moderated {
                Some(moderated) => {
                    let modes = if moderated { "+mnt" } else { "+nt" };
                    self.numeric("324", &[target, modes], "");
                }
                None => self.numeric("403", &[target], "No such channel"),
            }
            return true;
        };
        let mut args = message.params.iter().skip(2).copied();
        let mut adding = true;
        let mut changes = 0;
        for flag in modes.chars() {
            let line = match flag {
                '+' => {
                    adding = true;
                    continue;
                }
                '-' => {
                    adding = false;
                    continue;
                }
                'n' | 't' => continue,
                'm' => format!("/moderated {}", if adding { "on" } else { "off" }),
                'b' => match args.next() {
                    None => {
                        self.ban_list(target).await;
                        continue;
                    }
                    Some(mask) => {
                        let nick = mask.split('!').next().unwrap_or("");
                        if validate_username(nick).is_err() {
                            self.notice(&format!(
                                "Bans here are by nickname (nick!*@*); `{mask}` is not one."
                            ));
                            continue;
                        }
                        format!("/{} {nick}", if adding { "ban" } else { "unban" })
                    }
                },
                'v' | 'o' => {
                    let Some(nick) = args.next() else {
                        self.numeric("461", &["MODE"], "Not enough parameters");
                        continue;
                    };
                    match (flag, adding) {
                        ('v', true) => format!("/voice {nick}"),
                        ('v', false) => {
                            self.notice(
                                "Voice is taken away by turning moderation off and on (-m, +m).",
                            );
                            continue;
                        }
                        (_, true) => format!("/role {nick} moderator"),
                        (_, false) => format!("/role {nick} user"),
                    }
                }
                other => {
                    self.numeric("472", &[&other.to_string()], "is unknown mode char to me");
                    continue;
                }
            };
            changes += 1;
            if changes > MAX_MODES {
                break;
            }
            if !self.chat(Some(&room), line).await {
                return false;
            }
        }
        true
    }

    /// `MODE #room b`: `367`s and `368`. Bans are server-wide, so every room lists them all.
    async fn ban_list(&self, target: &str) {
        let Some(banned) = self.ask(|hub| hub.banned_names()).await else {
            return;
        };
        self.reply(|out, me| {
            for (name, reason) in &banned {
                out.numeric("367", me, &[target, &format!("{name}!*@*")], reason);
            }
            out.numeric("368", me, &[target], "End of channel ban list");
        });
    }
}
