//! What one IRC client receives of the lines rendered for all: [`ClientOutput`] is the last
//! step before its socket.
//!
//! The hub renders a delivery once for every IRC client ([`super::IrcRender`]), with every tag
//! and with the sender's own copy of its lines. Clients differ in what they asked for with
//! `CAP REQ`, so each client's writer passes every outgoing line through its `ClientOutput`,
//! which drops the tags it did not ask for (`message-tags` keeps them all, `server-time` only
//! `time`) and, unless it asked for `echo-message`, its own `PRIVMSG`s coming back (but not its
//! own lines in a room's replayed history, tagged `chatpipe/history`: those are news to it).
//! Dropping tags
//! slices the shared buffer when it can, so most lines are not copied.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::event::Client;

/// An IRCv3 capability a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    MultiPrefix,
    ServerTime,
    MessageTags,
    EchoMessage,
    Sasl,
}

impl Cap {
    /// Every capability offered, in `CAP LS` order.
    pub(crate) const ALL: [Cap; 5] = [
        Cap::MultiPrefix,
        Cap::ServerTime,
        Cap::MessageTags,
        Cap::EchoMessage,
        Cap::Sasl,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cap::MultiPrefix => "multi-prefix",
            Cap::ServerTime => "server-time",
            Cap::MessageTags => "message-tags",
            Cap::EchoMessage => "echo-message",
            Cap::Sasl => "sasl",
        }
    }

    /// As listed by `CAP LS 302` (with its value).
    pub(crate) fn advertised(self, v302: bool) -> &'static str {
        match self {
            Cap::Sasl if v302 => "sasl=PLAIN",
            cap => cap.name(),
        }
    }

    pub(crate) fn named(name: &str) -> Option<Cap> {
        Cap::ALL
            .into_iter()
            .find(|cap| cap.name().eq_ignore_ascii_case(name))
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One client's capabilities and name, shared by its session (which changes them) and its
/// writer (which reads them for every line).
#[derive(Debug, Default)]
pub(crate) struct ClientOutput {
    caps: AtomicU8,
    /// Set once the client is registered: whose `PRIVMSG`s are its own.
    client: OnceLock<Arc<Client>>,
}

impl ClientOutput {
    pub(crate) fn has(&self, cap: Cap) -> bool {
        self.caps.load(Ordering::Relaxed) & cap.bit() != 0
    }

    pub(crate) fn set(&self, cap: Cap, on: bool) {
        if on {
            self.caps.fetch_or(cap.bit(), Ordering::Relaxed);
        } else {
            self.caps.fetch_and(!cap.bit(), Ordering::Relaxed);
        }
    }

    /// The capabilities on, by name.
    pub(crate) fn enabled(&self) -> Vec<&'static str> {
        Cap::ALL
            .into_iter()
            .filter(|cap| self.has(*cap))
            .map(Cap::name)
            .collect()
    }

    pub(crate) fn registered(&self, client: Arc<Client>) {
        let _ = self.client.set(client);
    }

    /// `entry` (one or more lines rendered for every IRC client) as this client should get it;
    /// `None` to send nothing. Only an entry's first line carries tags (see the renderer).
    pub(crate) fn adapt(&self, entry: Bytes) -> Option<Bytes> {
        let (tags, body_at) = match entry.first() {
            Some(b'@') => match entry.iter().position(|&b| b == b' ') {
                Some(space) => (Some(&entry[1..space]), space + 1),
                None => return Some(entry),
            },
            _ => (None, 0),
        };
        let replayed = tags.is_some_and(|tags| {
            tags.split(|&b| b == b';')
                .any(|tag| tag == super::render::HISTORY_TAG.as_bytes())
        });
        if !replayed && !self.has(Cap::EchoMessage) && self.is_own_message(&entry[body_at..]) {
            return None;
        }
        let Some(tags) = tags else {
            return Some(entry);
        };
        if self.has(Cap::MessageTags) {
            return Some(entry);
        }
        if self.has(Cap::ServerTime) && tags.starts_with(b"time=") {
            let time_end = tags.iter().position(|&b| b == b';').unwrap_or(tags.len());
            if time_end == tags.len() {
                return Some(entry);
            }
            let mut kept = Vec::with_capacity(entry.len());
            kept.extend_from_slice(&entry[..1 + time_end]);
            kept.push(b' ');
            kept.extend_from_slice(&entry[body_at..]);
            return Some(Bytes::from(kept));
        }
        Some(entry.slice(body_at..))
    }

    /// Whether `line` is `:NAME!… PRIVMSG` or `NOTICE` from this client itself.
    fn is_own_message(&self, line: &[u8]) -> bool {
        let Some(client) = self.client.get() else {
            return false;
        };
        let name = client.name();
        let Some(rest) = line
            .strip_prefix(b":")
            .and_then(|l| l.strip_prefix(name.as_bytes()))
            .and_then(|l| l.strip_prefix(b"!"))
        else {
            return false;
        };
        let command = rest
            .iter()
            .position(|&b| b == b' ')
            .map(|at| &rest[at + 1..])
            .unwrap_or_default();
        command.starts_with(b"PRIVMSG ") || command.starts_with(b"NOTICE ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClientId, ClientInfo, Role};

    fn output(name: &str, caps: &[Cap]) -> ClientOutput {
        let output = ClientOutput::default();
        for cap in caps {
            output.set(*cap, true);
        }
        output.registered(Arc::new(Client::new(
            ClientId(1),
            "127.0.0.1:1".parse().unwrap(),
            ClientInfo {
                name: Arc::from(name),
                room: Arc::from("lobby"),
                role: Role::User,
            },
        )));
        output
    }

    fn adapt(output: &ClientOutput, line: &str) -> Option<String> {
        output
            .adapt(Bytes::from(line.to_owned()))
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    const LINE: &str =
        "@time=2026-01-01T00:00:00.000Z;chatpipe/reviewed :alice!alice@chatpipe PRIVMSG #a :hi\r\n";

    #[test]
    fn tags_only_for_those_who_asked() {
        assert_eq!(
            adapt(&output("bob", &[]), LINE).unwrap(),
            ":alice!alice@chatpipe PRIVMSG #a :hi\r\n"
        );
        assert_eq!(
            adapt(&output("bob", &[Cap::ServerTime]), LINE).unwrap(),
            "@time=2026-01-01T00:00:00.000Z :alice!alice@chatpipe PRIVMSG #a :hi\r\n"
        );
        assert_eq!(
            adapt(&output("bob", &[Cap::MessageTags]), LINE).unwrap(),
            LINE
        );
    }

    #[test]
    fn own_lines_only_with_echo_message() {
        assert_eq!(adapt(&output("alice", &[]), LINE), None);
        assert_eq!(
            adapt(&output("Alice", &[]), LINE).as_deref(),
            Some(":alice!alice@chatpipe PRIVMSG #a :hi\r\n")
        );
        assert!(adapt(&output("alice", &[Cap::EchoMessage]), LINE).is_some());
        // Other things about oneself are always sent.
        assert!(adapt(&output("alice", &[]), ":alice!alice@chatpipe JOIN #a\r\n").is_some());
        assert!(adapt(&output("alice", &[]), ":alice!alice@chatpipe NICK bob\r\n").is_some());
    }

    #[test]
    fn own_lines_in_replayed_history_are_kept() {
        let replayed = "@time=2026-01-01T00:00:00.000Z;chatpipe/history \
            :alice!alice@chatpipe PRIVMSG #a :hi\r\n";
        assert_eq!(
            adapt(&output("alice", &[]), replayed).as_deref(),
            Some(":alice!alice@chatpipe PRIVMSG #a :hi\r\n")
        );
        assert_eq!(
            adapt(&output("alice", &[Cap::ServerTime]), replayed).as_deref(),
            Some("@time=2026-01-01T00:00:00.000Z :alice!alice@chatpipe PRIVMSG #a :hi\r\n")
        );
    }
}
