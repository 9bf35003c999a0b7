//! [`ParseStage`]: turns raw lines into chat, commands, or answers.
//!
//! A line starting with `/` is a command; `//text` is the chat line `/text`. Commands the hub must
//! carry out become [`Body::Command`]; those answered here (`/help`, a bad or unknown command)
//! become a [`Body::Notice`] to the sender, so nothing is dropped without an answer. Lines that are
//! empty after trimming are dropped: the protocol ignores them.

use futures::StreamExt;

use super::stage::{EventStream, Stage, StageContext};
use crate::event::{Body, Command, Event};
use crate::names::validate_username;

/// The `/help` text.
pub const HELP: &str = "Commands:
/help - this list
/quit - leave the chat
/me ACTION - say what you are doing, shown as * NAME ACTION
/nick NEW - change your username
/who - list the users in your room
//text - send a line that starts with /";

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
pub fn parse_event(event: Event) -> Option<Event> {
    let Body::Line(line) = &event.body else {
        return Some(event);
    };
    let body = parse_line(line)?;
    Some(event.with_body(body))
}

/// Parses one line of client input.
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
    Some(match (word.to_ascii_lowercase().as_str(), rest) {
        ("help", "") => Body::Notice(HELP.to_owned()),
        ("quit", "") => Body::Command(Command::Quit),
        ("who", "") => Body::Command(Command::Who),
        ("me", "") => usage("/me ACTION"),
        ("me", action) => Body::Action(action.to_owned()),
        ("nick", new) if new.is_empty() || new.contains(char::is_whitespace) => usage("/nick NEW"),
        ("nick", new) => match validate_username(new) {
            Ok(()) => Body::Command(Command::Nick(new.to_owned())),
            Err(e) => Body::Notice(format!("Invalid username: {e}")),
        },
        ("help" | "quit" | "who", _) => usage(&format!("/{}", word.to_ascii_lowercase())),
        _ => Body::Notice(format!(
            "Unknown command /{}. Type /help for the list of commands.",
            truncate(word, 32)
        )),
    })
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

    #[test]
    fn chat_and_escapes() {
        assert_eq!(parse_line("  hello  "), Some(Body::Chat("hello".into())));
        assert_eq!(parse_line("//shrug"), Some(Body::Chat("/shrug".into())));
        assert_eq!(parse_line("   "), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn commands() {
        assert_eq!(parse_line("/quit"), Some(Body::Command(Command::Quit)));
        assert_eq!(parse_line("/QUIT"), Some(Body::Command(Command::Quit)));
        assert_eq!(parse_line("/who"), Some(Body::Command(Command::Who)));
        assert_eq!(
            parse_line("/me waves  hi"),
            Some(Body::Action("waves  hi".into()))
        );
        assert_eq!(
            parse_line("/nick Bob_2"),
            Some(Body::Command(Command::Nick("Bob_2".into())))
        );
        assert!(notice("/help").starts_with("Commands:"));
    }

    #[test]
    fn bad_commands_are_answered() {
        assert!(notice("/frobnicate now").contains("Unknown command /frobnicate"));
        assert!(notice("/frobnicate").contains("/help"));
        assert_eq!(notice("/nick"), "Usage: /nick NEW");
        assert_eq!(notice("/nick a b"), "Usage: /nick NEW");
        assert_eq!(notice("/quit now"), "Usage: /quit");
        assert_eq!(notice("/me"), "Usage: /me ACTION");
        assert!(notice("/nick server").contains("reserved"));
        assert!(notice("/").contains("Unknown command"));
    }
}
