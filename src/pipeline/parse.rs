//! [`ParseStage`]: turns raw lines into chat, commands, or answers.
//!
//! A line starting with `/` is a command; `//text` is the chat line `/text`. Commands the hub must
//! carry out become [`Body::Command`]; those answered here (`/help`, `/ping`, a bad or unknown
//! command) become a [`Body::Notice`] to the sender, so nothing is dropped without an answer.
//! Lines that are empty after trimming are dropped: the protocol ignores them. Permissions are
//! checked by the hub, which knows roles for certain; `/help` here lists what the sender's role
//! may use.

use std::time::Duration;

use futures::StreamExt;

use super::stage::{EventStream, Stage, StageContext};
use crate::config::MAX_HISTORY_REQUEST;
use crate::event::{Body, Command, Event, Role, Secret};
use crate::names::{validate_room_name, validate_username};

/// The `/help` text every user sees.
pub const HELP: &str = "Commands:
/help - this list
/quit - leave the chat
/me ACTION - say what you are doing, shown as * NAME ACTION
/nick NEW - change your username
/who - list the users in your room (@ marks moderators)
/join ROOM - go to another room (created if new)
/leave - go back to the default room
/rooms - list the rooms
/msg NAME TEXT - a private message
/topic - show the room's topic
/history [N] - the room's last N lines (default 20, at most 200)
/register PASSWORD - make your name yours (at least 8 characters, no spaces)
/password OLD NEW - change your password
/unregister PASSWORD - give your name up
/report NAME [reason] - tell the moderators about someone (their last lines go with it)
/ping - check the connection
//text - send a line that starts with /";

/// The further lines moderators and admins see.
pub const MODERATOR_HELP: &str = "Moderator commands:
/kick NAME [reason] - disconnect a user
/mute NAME [duration] [reason] - silence a user (default 10m), wherever they go
/unmute NAME - lift a mute
/ban NAME [duration] [reason] - ban a name and its address (default: until /unban)
/unban NAME - lift a ban
/bans - list the bans in force
/mutes - list who is muted
/moderated on|off - only moderators and voiced users may speak in this room
/voice NAME - let a user speak in this moderated room
/topic TEXT - set this room's topic
/room keep|drop - keep this room when it is empty, or not
/held [PAGE] - lines waiting for review, a page at a time; /approve ID, /deny ID [reason]
/reports [PAGE] - open reports, a page at a time; /resolve ID [note]
/reload - reload the filters";

/// The further line only admins see: `/help` lists only what the asker may use.
pub const ADMIN_HELP: &str = "Admin commands:
/role NAME user|moderator|admin - set a registered user's role";

/// The longest reason kept for a mute or a ban, in characters: it is shown in `/bans`, `/mutes`
/// and to the person, and kept in the store.
pub const MAX_SANCTION_REASON: usize = 200;

const MUTE_USAGE: &str = "/mute NAME [duration, e.g. 10m] [reason]";
const BAN_USAGE: &str = "/ban NAME [duration, e.g. 1h] [reason]";

/// The parse stage. See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseStage;

impl Stage for ParseStage {
    fn name(&self) -> &str {
        "parse"
    }

    fn apply(self: Box<Self>, input: EventStream, _: &StageContext) -> EventStream {
        Box::pin(input.filter_map(|event| std::future::ready(parse_event(event))))
    }
}

/// Parses one event; `None` when the line is to be ignored.
pub fn parse_event(mut event: Event) -> Option<Event> {
    let Body::Line(line) = &mut event.body else {
        return Some(event);
    };
    // The common case, a chat line with nothing to trim, keeps its buffer: this stage runs on
    // one task for all clients, so an allocation per line here costs the whole pipeline.
    if !line.starts_with('/') && !line.is_empty() && line.trim().len() == line.len() {
        let text = std::mem::take(line);
        return Some(event.with_body(Body::Chat(text)));
    }
    let body = match parse_line(line)? {
        Body::Notice(text) if text == HELP => Body::Notice(help_for(event.client.info().role)),
        body => body,
    };
    Some(event.with_body(body))
}

/// The `/help` text for `role`.
pub fn help_for(role: Role) -> String {
    match role {
        Role::User => HELP.to_owned(),
        Role::Moderator => format!("{HELP}\n{MODERATOR_HELP}"),
        Role::Admin => format!("{HELP}\n{MODERATOR_HELP}\n{ADMIN_HELP}"),
    }
}

/// Parses one line of client input (`/help` gives the ordinary user's help).
pub fn parse_line(line: &str) -> Option<Body> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    let Some(command_line) = trimmed.strip_prefix('/') else {
        return Some(Body::Chat(trimmed.to_owned()));
    };
    if command_line.starts_with('/') {
        return Some(Body::Chat(command_line.to_owned()));
    }
    let (word, rest) = match command_line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (command_line, ""),
    };
    let word = word.to_ascii_lowercase();
    let args: Vec<&str> = rest.split_whitespace().collect();
    let command = |c| Body::Command(c);
    Some(match (word.as_str(), args.as_slice()) {
        ("help", []) => Body::Notice(HELP.to_owned()),
        ("ping", []) => Body::Notice("PONG".to_owned()),
        ("quit", []) => command(Command::Quit),
        ("who", []) => command(Command::Who),
        ("leave", []) => command(Command::Leave),
        ("rooms", []) => command(Command::Rooms),
        ("reload", []) => command(Command::Reload),
        ("me", [_, ..]) => Body::Action(rest.to_owned()),
        ("nick", [new]) => match validate_username(new) {
            Ok(()) => command(Command::Nick((*new).to_owned())),
            Err(e) => Body::Notice(format!("Invalid username: {e}")),
        },
        ("join", [room]) => {
            let room = room.to_ascii_lowercase();
            match validate_room_name(&room) {
                Ok(()) => command(Command::Join(room)),
                Err(e) => Body::Notice(format!("Invalid room name: {e}")),
            }
        }
        ("msg", [to, _, ..]) => Body::Private {
            to: (*to).to_owned(),
            text: rest[to.len()..].trim().to_owned(),
        },
        ("kick", [name, ..]) => {
            let reason = rest[name.len()..].trim();
            command(Command::Kick {
                name: (*name).to_owned(),
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
            })
        }
        ("mute" | "ban", [name, more @ ..]) => {
            // `/ban NAME [duration] [reason]`: a second word that starts with a digit is a
            // duration (a typo in it is a usage error, never a reason and a ban until lifted);
            // whatever follows the duration, or the name when there is none, is the reason.
            let after_name = rest[name.len()..].trim_start();
            let (duration, reason) = match more.first() {
                Some(first) if first.starts_with(|c: char| c.is_ascii_digit()) => {
                    match parse_duration(first) {
                        Some(d) => (Some(d), after_name[first.len()..].trim()),
                        None if word == "mute" => return Some(usage(MUTE_USAGE)),
                        None => return Some(usage(BAN_USAGE)),
                    }
                }
                _ => (None, after_name.trim()),
            };
            let reason =
                (!reason.is_empty()).then(|| truncate(reason, MAX_SANCTION_REASON).to_owned());
            let name = (*name).to_owned();
            command(if word == "mute" {
                Command::Mute {
                    name,
                    duration,
                    reason,
                }
            } else {
                Command::Ban {
                    name,
                    duration,
                    reason,
                }
            })
        }
        ("unmute", [name]) => command(Command::Unmute((*name).to_owned())),
        ("unban", [name]) => command(Command::Unban((*name).to_owned())),
        ("moderated", [switch]) => match switch.to_ascii_lowercase().as_str() {
            "on" => command(Command::Moderated(true)),
            "off" => command(Command::Moderated(false)),
            _ => usage("/moderated on|off"),
        },
        ("voice", [name]) => command(Command::Voice((*name).to_owned())),
        ("held", []) => command(Command::Held(1)),
        ("reports", []) => command(Command::Reports(1)),
        ("held" | "reports", [page]) => match page.parse::<usize>() {
            Ok(page) if page > 0 => command(if word == "held" {
                Command::Held(page)
            } else {
                Command::Reports(page)
            }),
            _ => usage(if word == "held" {
                "/held [PAGE]"
            } else {
                "/reports [PAGE]"
            }),
        },
        ("approve", [id]) => match id.trim_start_matches('#').parse() {
            Ok(id) => command(Command::Approve(id)),
            Err(_) => usage("/approve ID"),
        },
        ("deny", [id, ..]) => match id.trim_start_matches('#').parse() {
            Ok(n) => {
                let reason = rest[id.len()..].trim();
                command(Command::Deny {
                    id: n,
                    reason: (!reason.is_empty()).then(|| reason.to_owned()),
                })
            }
            Err(_) => usage("/deny ID [reason]"),
        },
        ("resolve", [id, ..]) => match id.trim_start_matches('#').parse() {
            Ok(n) => {
                let note = rest[id.len()..].trim();
                command(Command::Resolve {
                    id: n,
                    note: (!note.is_empty()).then(|| note.to_owned()),
                })
            }
            Err(_) => usage("/resolve ID [note]"),
        },
        ("report", [name, ..]) => {
            let reason = rest[name.len()..].trim();
            command(Command::Report {
                name: (*name).to_owned(),
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
            })
        }
        ("bans", []) => command(Command::Bans),
        ("mutes", []) => command(Command::Mutes),
        ("topic", []) => command(Command::Topic(None)),
        ("topic", [_, ..]) => command(Command::Topic(Some(
            truncate(rest, MAX_TOPIC_CHARS).to_owned(),
        ))),
        ("room", [switch]) => match switch.to_ascii_lowercase().as_str() {
            "keep" => command(Command::KeepRoom(true)),
            "drop" => command(Command::KeepRoom(false)),
            _ => usage("/room keep|drop"),
        },
        ("history", []) => command(Command::History(DEFAULT_HISTORY)),
        ("history", [n]) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY_REQUEST).contains(&n) => command(Command::History(n)),
            _ => usage("/history [N] (1 to 200)"),
        },
        ("register", [password]) => match check_password(password) {
            Ok(()) => command(Command::Register(Secret::new(*password))),
            Err(problem) => Body::Notice(problem),
        },
        ("password", [old, new]) => match check_password(new) {
            Ok(()) => command(Command::Password {
                old: Secret::new(*old),
                new: Secret::new(*new),
            }),
            Err(problem) => Body::Notice(problem),
        },
        ("unregister", [password]) => command(Command::Unregister(Secret::new(*password))),
        ("role", [name, role]) => match role.to_ascii_lowercase().as_str() {
            "user" => command(Command::Role {
                name: (*name).to_owned(),
                role: Role::User,
            }),
            "moderator" => command(Command::Role {
                name: (*name).to_owned(),
                role: Role::Moderator,
            }),
            "admin" => command(Command::Role {
                name: (*name).to_owned(),
                role: Role::Admin,
            }),
            _ => usage("/role NAME user|moderator|admin"),
        },
        (known, _) => match USAGES.iter().find(|(name, _)| *name == known) {
            Some((_, form)) => usage(form),
            None => Body::Notice(format!(
                "Unknown command /{}. Type /help for the list of commands.",
                truncate(known, 32)
            )),
        },
    })
}

/// The usage line of each command, for a call with the wrong arguments.
const USAGES: &[(&str, &str)] = &[
    ("help", "/help"),
    ("ping", "/ping"),
    ("quit", "/quit"),
    ("who", "/who"),
    ("leave", "/leave"),
    ("rooms", "/rooms"),
    ("reload", "/reload"),
    ("me", "/me ACTION"),
    ("nick", "/nick NEW"),
    ("join", "/join ROOM"),
    ("msg", "/msg NAME TEXT"),
    ("kick", "/kick NAME [reason]"),
    ("mute", "/mute NAME [duration] [reason]"),
    ("unmute", "/unmute NAME"),
    ("ban", "/ban NAME [duration] [reason]"),
    ("unban", "/unban NAME"),
    ("moderated", "/moderated on|off"),
    ("voice", "/voice NAME"),
    ("bans", "/bans"),
    ("mutes", "/mutes"),
    ("room", "/room keep|drop"),
    ("held", "/held [PAGE]"),
    ("reports", "/reports [PAGE]"),
    ("approve", "/approve ID"),
    ("deny", "/deny ID [reason]"),
    ("resolve", "/resolve ID [note]"),
    ("report", "/report NAME [reason]"),
    ("history", "/history [N] (1 to 200)"),
    // Never echo a password back: these usages name the arguments only.
    ("register", "/register PASSWORD"),
    ("password", "/password OLD NEW"),
    ("unregister", "/unregister PASSWORD"),
    ("role", "/role NAME user|moderator|admin"),
];

/// `/history` without a count.
const DEFAULT_HISTORY: usize = 20;

/// The longest topic, in characters.
const MAX_TOPIC_CHARS: usize = 300;

/// The shortest password `/register` and `/password` accept.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Whether `password` may become one.
fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Err(format!(
            "A password needs at least {MIN_PASSWORD_CHARS} characters (and no spaces)."
        ))
    } else {
        Ok(())
    }
}

/// A positive duration such as `30s`, `10m`, `2h`.
fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
}

fn usage(form: &str) -> Body {
    Body::Notice(format!("Usage: {form}"))
}

fn truncate(text: &str, max_chars: usize) -> &str {
    text.char_indices()
        .nth(max_chars)
        .map_or(text, |(i, _)| &text[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(line: &str) -> String {
        match parse_line(line) {
            Some(Body::Notice(text)) => text,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn cmd(line: &str) -> Command {
        match parse_line(line) {
            Some(Body::Command(c)) => c,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn chat_and_escapes() {
        assert_eq!(parse_line("  hello  "), Some(Body::Chat("hello".into())));
        assert_eq!(parse_line("//shrug"), Some(Body::Chat("/shrug".into())));
        assert_eq!(parse_line("   "), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn commands() {
        assert_eq!(cmd("/quit"), Command::Quit);
        assert_eq!(cmd("/QUIT"), Command::Quit);
        assert_eq!(cmd("/who"), Command::Who);
        assert_eq!(
            parse_line("/me waves  hi"),
            Some(Body::Action("waves  hi".into()))
        );
        assert_eq!(cmd("/nick Bob_2"), Command::Nick("Bob_2".into()));
        assert_eq!(cmd("/join Games"), Command::Join("games".into()));
        assert_eq!(
            parse_line("/msg bob  hi there"),
            Some(Body::Private {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(
            cmd("/kick bob being rude"),
            Command::Kick {
                name: "bob".into(),
                reason: Some("being rude".into())
            }
        );
        assert_eq!(
            cmd("/mute bob 10m"),
            Command::Mute {
                name: "bob".into(),
                duration: Some(Duration::from_secs(600)),
                reason: None
            }
        );
        assert_eq!(
            cmd("/ban bob"),
            Command::Ban {
                name: "bob".into(),
                duration: None,
                reason: None
            }
        );
        assert_eq!(cmd("/moderated ON"), Command::Moderated(true));
        assert!(notice("/help").starts_with("Commands:"));
        assert_eq!(notice("/ping"), "PONG");
    }

    #[test]
    fn bad_commands_are_answered() {
        assert!(notice("/frobnicate now").contains("Unknown command /frobnicate"));
        assert!(notice("/frobnicate").contains("/help"));
        assert_eq!(notice("/nick"), "Usage: /nick NEW");
        assert_eq!(notice("/nick a b"), "Usage: /nick NEW");
        assert_eq!(notice("/quit now"), "Usage: /quit");
        assert_eq!(notice("/me"), "Usage: /me ACTION");
        assert_eq!(notice("/msg bob"), "Usage: /msg NAME TEXT");
        assert_eq!(
            notice("/mute bob 10 minutes"),
            "Usage: /mute NAME [duration, e.g. 10m] [reason]"
        );
        assert_eq!(
            notice("/ban bob 1x spam"),
            "Usage: /ban NAME [duration, e.g. 1h] [reason]"
        );
        assert_eq!(notice("/ban"), "Usage: /ban NAME [duration] [reason]");
        assert_eq!(notice("/moderated maybe"), "Usage: /moderated on|off");
        assert!(notice("/join bad!room").starts_with("Invalid room name"));
        assert!(notice("/nick server").contains("reserved"));
        assert!(notice("/").contains("Unknown command"));
    }

    /// `/ban` and `/mute` take a reason, after the duration or in its place.
    #[test]
    fn sanctions_take_a_reason() {
        assert_eq!(
            cmd("/ban eve 1d spamming  the lobby"),
            Command::Ban {
                name: "eve".into(),
                duration: Some(Duration::from_secs(86_400)),
                reason: Some("spamming  the lobby".into())
            }
        );
        assert_eq!(
            cmd("/ban eve spamming"),
            Command::Ban {
                name: "eve".into(),
                duration: None,
                reason: Some("spamming".into())
            }
        );
        assert_eq!(
            cmd("/mute 1eve 1h flooding"),
            Command::Mute {
                name: "1eve".into(),
                duration: Some(Duration::from_secs(3600)),
                reason: Some("flooding".into())
            }
        );
        let long = format!("/mute eve 5m {}", "x".repeat(1000));
        match cmd(&long) {
            Command::Mute {
                reason: Some(reason),
                ..
            } => assert_eq!(reason.chars().count(), MAX_SANCTION_REASON),
            other => panic!("{other:?}"),
        }
    }

    /// `/help` lists only what the asker may use: `/role` is for admins alone.
    #[test]
    fn help_depends_on_role() {
        assert!(!help_for(Role::User).contains("/kick"));
        assert!(!help_for(Role::User).contains("/role"));
        assert!(help_for(Role::Moderator).contains("/kick"));
        assert!(!help_for(Role::Moderator).contains("/role"));
        assert!(help_for(Role::Admin).contains("/kick"));
        assert!(help_for(Role::Admin).contains("/role NAME"));
    }
}
