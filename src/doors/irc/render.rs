//! [`IrcRender`]: the hub's deliveries as IRC lines.
//!
//! Room lines become `PRIVMSG #room` from `nick!nick@chatpipe` (an action is CTCP `ACTION`),
//! joins and leaves `JOIN`, `PART` and `QUIT`, renames `NICK`, answers and refusals numerics
//! addressed to the recipient (`404` for a line refused in a room, `482` for a moderator command
//! refused, `332`/`353`/`322` for topics, names and lists) or `NOTICE`s, and the end of a
//! session `ERROR`. What is rendered is shared by every IRC client that receives it, so it
//! carries every tag (`time`, `chatpipe/reviewed`, `chatpipe/history`); each client's writer strips what that
//! client did not ask for ([`super::output`]). Tags come first and `time` first among them.
//!
//! Every line fits the 512-byte limit except a chat line at the very edge of the pipeline's own
//! `max_line_bytes`: chatpipe's text limit is counted in bytes of text, IRC's in bytes of line,
//! and clients accept the longer line (they split long member lists, which are kept short here).

use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::Bytes;

use crate::event::Role;
use crate::hub::{Delivery, Render, Scope};
use crate::store::LineKind;

/// The server's name in sources and numerics.
pub(crate) const SERVER: &str = "chatpipe";

/// The host part of every member's source: addresses are nobody's business.
pub(crate) const HOST: &str = "chatpipe";

/// The tag that marks a line a moderator approved after it was held.
pub(crate) const REVIEWED_TAG: &str = "chatpipe/reviewed";

/// The tag that marks a line of history replayed on joining: a client gets its own such lines
/// even without `echo-message` (they are not echoes; it has not seen them in this session).
pub(crate) const HISTORY_TAG: &str = "chatpipe/history";

/// Codes of notices that end the session: IRC says `ERROR` before closing.
const FAREWELLS: &[&str] = &[
    "goodbye",
    "kicked",
    "banned",
    "too_slow",
    "shutting_down",
    "idle",
    "timeout",
    "too_many_invalid_lines",
];

/// Names per `353` line, so a long member list stays well inside 512 bytes.
const NAMES_PER_LINE: usize = 12;

/// What the welcome burst says about this server.
#[derive(Debug, Clone)]
pub struct IrcRender {
    version: String,
    created: String,
    /// `005 RPL_ISUPPORT` tokens.
    isupport: Vec<String>,
}

impl IrcRender {
    /// A renderer announcing these limits in its `ISUPPORT`.
    pub fn new(max_joined: usize, max_text: usize) -> IrcRender {
        let isupport = [
            "AWAYLEN=200".to_owned(),
            "CASEMAPPING=ascii".to_owned(),
            format!("CHANLIMIT=#:{max_joined}"),
            "CHANMODES=b,,,mnt".to_owned(),
            format!("CHANNELLEN={}", crate::names::MAX_NAME_CHARS + 1),
            "CHANTYPES=#".to_owned(),
            format!("KICKLEN={max_text}"),
            "LINELEN=512".to_owned(),
            "MODES=4".to_owned(),
            "NETWORK=chatpipe".to_owned(),
            format!("NICKLEN={}", crate::names::MAX_NAME_CHARS),
            "PREFIX=(ov)@+".to_owned(),
            "TARGMAX=JOIN:,PART:,PRIVMSG:4,NOTICE:4,NAMES:1,WHOIS:1,KICK:1".to_owned(),
            format!("TOPICLEN={max_text}"),
            "UTF8ONLY".to_owned(),
        ]
        .to_vec();
        IrcRender {
            version: format!("chatpipe-{}", env!("CARGO_PKG_VERSION")),
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            isupport,
        }
    }

    /// The welcome burst: `001`–`005` and the message of the day.
    fn welcome(&self, out: &mut Lines, to: &str) {
        out.numeric("001", to, &[], &format!("Welcome to chatpipe, {to}"));
        out.numeric(
            "002",
            to,
            &[],
            &format!("Your host is {SERVER}, running version {}", self.version),
        );
        out.numeric(
            "003",
            to,
            &[],
            &format!("This server was created {}", self.created),
        );
        out.numeric(
            "004",
            to,
            &[SERVER, &self.version, "i", "bmntov", "bov"],
            "",
        );
        for tokens in self.isupport.chunks(12) {
            let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
            out.numeric("005", to, &tokens, "are supported by this server");
        }
        self.motd(out, to);
    }

    /// `375`/`372`/`376`: how chatpipe differs from other IRC servers, in brief.
    pub(crate) fn motd(&self, out: &mut Lines, to: &str) {
        out.numeric("375", to, &[], &format!("- {SERVER} Message of the day -"));
        for line in [
            "- Channels are chatpipe's rooms; everyone starts in the default room.",
            "- Every line passes the server's filters: some are masked, held or refused.",
            "- KICK and +b disconnect from the whole server; +m, +v and +o map onto its",
            "  moderation. Moderators: /quote HELD, APPROVE n, DENY n, REPORTS, RESOLVE n.",
        ] {
            out.numeric("372", to, &[], line);
        }
        out.numeric("376", to, &[], "End of /MOTD command");
    }

    fn render_for(&self, delivery: &Delivery, to: Option<&str>) -> Option<Bytes> {
        let mut out = Lines::default();
        match delivery {
            Delivery::Message {
                room,
                from,
                text,
                reviewed,
            } => out.said(
                SystemTime::now(),
                tag(*reviewed),
                from,
                &channel(room),
                text,
            ),
            Delivery::Action {
                room,
                from,
                text,
                reviewed,
            } => out.said(
                SystemTime::now(),
                tag(*reviewed),
                from,
                &channel(room),
                &ctcp_action(text),
            ),
            // Both copies read the same: the sender's is what `echo-message` asks for, and the
            // writer drops it for a client that did not ask.
            Delivery::Private { from, to, text, .. } => {
                out.said(SystemTime::now(), None, from, to, text);
            }
            Delivery::History {
                room,
                kind,
                from,
                text,
                at,
            } => {
                let text = match kind {
                    LineKind::Chat => text.to_string(),
                    LineKind::Action => ctcp_action(text),
                };
                out.said(*at, Some(HISTORY_TAG), from, &channel(room), &text);
            }
            Delivery::Joined { room, name, .. } => {
                out.by_member(name, "JOIN", &[&channel(room)], None);
            }
            Delivery::Left { room, name, scope } => match scope {
                Scope::Room => out.by_member(name, "PART", &[&channel(room)], None),
                Scope::Chat => out.by_member(name, "QUIT", &[], Some("Quit")),
            },
            Delivery::Renamed { old, new, .. } => out.by_member(old, "NICK", &[new], None),
            Delivery::Topic {
                room,
                topic,
                by: Some(by),
            } => out.by_member(
                by,
                "TOPIC",
                &[&channel(room)],
                Some(topic.as_deref().unwrap_or("")),
            ),
            Delivery::Topic {
                room,
                topic,
                by: None,
            } => {
                let to = to?;
                match topic {
                    Some(topic) => out.numeric("332", to, &[&channel(room)], topic),
                    None => out.numeric("331", to, &[&channel(room)], "No topic is set"),
                }
            }
            // IRC clients have their own /help; chatpipe's would describe the text protocol.
            Delivery::Notice { text, .. } if **text == *crate::protocol::HELP_HINT => return None,
            Delivery::Notice { text, code, room } => {
                let target = room.as_deref().map(channel);
                match (*code, &target) {
                    (Some(code), _) if FAREWELLS.contains(&code) => {
                        out.raw(&format!("ERROR :Closing link: {}", one_line(text)));
                    }
                    (Some("muted" | "moderated" | "blocked"), Some(target)) if to.is_some() => {
                        out.numeric("404", to?, &[target], &one_line(text));
                    }
                    (Some("permission_denied"), Some(target)) if to.is_some() => {
                        out.numeric("482", to?, &[target], &one_line(text));
                    }
                    _ => {
                        let target = target.as_deref().or(to).unwrap_or("*");
                        for line in text.lines() {
                            out.notice(target, line);
                        }
                    }
                }
            }
            Delivery::Members { room, members } => {
                let to = to?;
                let names: Vec<String> = members
                    .iter()
                    .map(|(name, role)| format!("{}{name}", prefix_of(*role, false)))
                    .collect();
                names_reply(&mut out, to, room, &names);
            }
            // Moderators and admins are both channel operators here: only a change across that
            // line shows.
            Delivery::RoleChanged {
                room,
                name,
                was,
                role,
                ..
            } => {
                let sign = match (prefix_of(*was, false), prefix_of(*role, false)) {
                    (before, after) if before == after => return None,
                    (_, "@") => "+o",
                    _ => "-o",
                };
                out.raw(&format!(":{SERVER} MODE {} {sign} {name}", channel(room)));
            }
            Delivery::Welcome { .. } => self.welcome(&mut out, to?),
            Delivery::Rooms { rooms } => {
                let to = to?;
                out.numeric("321", to, &["Channel"], "Users  Name");
                for (room, count) in rooms {
                    out.numeric("322", to, &[&channel(room), &count.to_string()], "");
                }
                out.numeric("323", to, &[], "End of /LIST");
            }
            Delivery::Held(held) => out.notice(to.unwrap_or("*"), &held.alert()),
            Delivery::Reported(report) => out.notice(to.unwrap_or("*"), &report.alert()),
            Delivery::QueueDone {
                what,
                id,
                outcome,
                by,
            } => out.notice(
                to.unwrap_or("*"),
                &format!("[{what} #{id}] {outcome} by {by}"),
            ),
            Delivery::Queue { .. } | Delivery::Audit(_) => return None,
        }
        Some(out.into_bytes())
    }
}

impl Render for IrcRender {
    fn render(&self, delivery: &Delivery) -> Option<Bytes> {
        self.render_for(delivery, None)
    }

    fn render_to(&self, delivery: &Delivery, to: &str) -> Option<Bytes> {
        self.render_for(delivery, Some(to))
    }

    fn joins_add(&self) -> bool {
        true
    }

    fn shows_members(&self) -> bool {
        true
    }
}

/// The tag of a live room line: the reviewed mark, if a moderator approved it.
fn tag(reviewed: bool) -> Option<&'static str> {
    reviewed.then_some(REVIEWED_TAG)
}

/// An action (`/me`) as IRC clients send and show it: CTCP `ACTION`.
fn ctcp_action(text: &str) -> String {
    format!("\u{1}ACTION {text}\u{1}")
}

/// `#room`.
pub(crate) fn channel(room: &str) -> String {
    format!("#{room}")
}

/// The mark before a name in `NAMES` and `WHO`: `@` for moderators and admins, `+` for voice.
pub(crate) fn prefix_of(role: Role, voiced: bool) -> &'static str {
    match (role, voiced) {
        (Role::Moderator | Role::Admin, _) => "@",
        (Role::User, true) => "+",
        (Role::User, false) => "",
    }
}

/// `353` lines of names (a few per line) and `366`.
pub(crate) fn names_reply(out: &mut Lines, to: &str, room: &str, names: &[String]) {
    let target = channel(room);
    for chunk in names.chunks(NAMES_PER_LINE) {
        out.numeric("353", to, &["=", &target], &chunk.join(" "));
    }
    out.numeric("366", to, &[&target], "End of /NAMES list");
}

/// The first line of a notice (numerics carry one line).
fn one_line(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join(" ")
}

/// IRC lines being built, each ending in `\r\n`.
#[derive(Debug, Default)]
pub(crate) struct Lines(String);

impl Lines {
    /// A line as it is.
    pub(crate) fn raw(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push_str("\r\n");
    }

    /// `:chatpipe CODE to params... :trailing` (no trailing when it is empty and there are
    /// parameters).
    pub(crate) fn numeric(&mut self, code: &str, to: &str, params: &[&str], trailing: &str) {
        let _ = write!(self.0, ":{SERVER} {code} {to}");
        for param in params {
            let _ = write!(self.0, " {param}");
        }
        if !trailing.is_empty() || params.is_empty() {
            let _ = write!(self.0, " :{trailing}");
        }
        self.0.push_str("\r\n");
    }

    /// `:chatpipe NOTICE target :text`.
    pub(crate) fn notice(&mut self, target: &str, text: &str) {
        let _ = write!(self.0, ":{SERVER} NOTICE {target} :{text}\r\n");
    }

    /// `:nick!nick@chatpipe COMMAND params... [:trailing]`.
    pub(crate) fn by_member(
        &mut self,
        nick: &str,
        command: &str,
        params: &[&str],
        trailing: Option<&str>,
    ) {
        let _ = write!(self.0, ":{nick}!{nick}@{HOST} {command}");
        for param in params {
            let _ = write!(self.0, " {param}");
        }
        if let Some(trailing) = trailing {
            let _ = write!(self.0, " :{trailing}");
        }
        self.0.push_str("\r\n");
    }

    /// A `PRIVMSG` with its tags: the time it was said, and one more (a moderator approved it,
    /// or it is replayed history).
    fn said(&mut self, at: SystemTime, tag: Option<&str>, from: &str, target: &str, text: &str) {
        let _ = write!(self.0, "@time={}", humantime::format_rfc3339_millis(at));
        if let Some(tag) = tag {
            let _ = write!(self.0, ";{tag}");
        }
        let _ = write!(
            self.0,
            " :{from}!{from}@{HOST} PRIVMSG {target} :{text}\r\n"
        );
    }

    /// The finished lines.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn text(bytes: Option<Bytes>) -> String {
        String::from_utf8(bytes.unwrap().to_vec()).unwrap()
    }

    /// The names the server speaks under on IRC cannot be taken by a user.
    #[test]
    fn the_servers_irc_names_are_reserved() {
        assert!(crate::names::validate_username(SERVER).is_err());
        assert!(crate::names::validate_username(HOST).is_err());
    }

    #[test]
    fn room_lines_carry_time_and_the_reviewed_mark() {
        let render = IrcRender::new(20, 400);
        let said = text(render.render(&Delivery::Message {
            room: "games".into(),
            from: "alice".into(),
            text: "hi".into(),
            reviewed: true,
        }));
        assert!(said.starts_with("@time="), "{said}");
        assert!(
            said.ends_with(";chatpipe/reviewed :alice!alice@chatpipe PRIVMSG #games :hi\r\n"),
            "{said}"
        );
    }

    #[test]
    fn refusals_are_numerics_addressed_to_the_recipient() {
        let render = IrcRender::new(20, 400);
        let room: Arc<str> = "games".into();
        let refused = Delivery::room_coded("muted", &room, "You are muted.");
        assert_eq!(
            text(render.render_to(&refused, "bob")),
            ":chatpipe 404 bob #games :You are muted.\r\n"
        );
        let denied = Delivery::room_coded("permission_denied", &room, "Permission denied");
        assert_eq!(
            text(render.render_to(&denied, "bob")),
            ":chatpipe 482 bob #games :Permission denied\r\n"
        );
        let kicked = Delivery::coded("kicked", "You were kicked by alice: rude");
        assert_eq!(
            text(render.render_to(&kicked, "bob")),
            "ERROR :Closing link: You were kicked by alice: rude\r\n"
        );
        let plain = Delivery::notice("two\nlines");
        assert_eq!(
            text(render.render_to(&plain, "bob")),
            ":chatpipe NOTICE bob :two\r\n:chatpipe NOTICE bob :lines\r\n"
        );
    }

    #[test]
    fn the_welcome_burst_is_honest() {
        let render = IrcRender::new(20, 400);
        let burst = text(render.render_to(
            &Delivery::Welcome {
                name: "bob".into(),
                role: Role::User,
                rooms: vec![],
            },
            "bob",
        ));
        for needle in [
            ":chatpipe 001 bob :Welcome",
            "CHANTYPES=#",
            "NICKLEN=32",
            "CHANNELLEN=33",
            "CASEMAPPING=ascii",
            "PREFIX=(ov)@+",
            "CHANLIMIT=#:20",
            ":chatpipe 376 bob",
        ] {
            assert!(burst.contains(needle), "{needle} missing from {burst}");
        }
        assert!(burst.lines().all(|l| l.len() <= 510), "{burst}");
    }

    #[test]
    fn role_changes_across_operator_show_as_modes() {
        let render = IrcRender::new(20, 400);
        let change = |was, role| {
            render.render(&Delivery::RoleChanged {
                room: "lobby".into(),
                name: "carol".into(),
                was,
                role,
                members: Arc::from(vec![]),
            })
        };
        assert_eq!(
            text(change(Role::User, Role::Moderator)),
            ":chatpipe MODE #lobby +o carol\r\n"
        );
        assert_eq!(
            text(change(Role::Admin, Role::User)),
            ":chatpipe MODE #lobby -o carol\r\n"
        );
        assert_eq!(change(Role::Moderator, Role::Admin), None);
    }

    #[test]
    fn long_member_lists_are_split() {
        let render = IrcRender::new(20, 400);
        let members: Arc<[(Arc<str>, Role)]> = (0..30)
            .map(|n| (Arc::from(format!("user{n}").as_str()), Role::User))
            .collect();
        let names = text(render.render_to(
            &Delivery::Members {
                room: "lobby".into(),
                members,
            },
            "bob",
        ));
        assert_eq!(names.matches(" 353 bob = #lobby :").count(), 3, "{names}");
        assert!(names.ends_with(":chatpipe 366 bob #lobby :End of /NAMES list\r\n"));
        assert_eq!(
            render.render(&Delivery::Members {
                room: "lobby".into(),
                members: Arc::from(vec![]),
            }),
            None
        );
    }
}
