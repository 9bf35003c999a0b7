//! The wire format of everything the server writes (wire protocol version 1).
//!
//! Keeping every line shape in one module keeps the protocol reviewable in one place and lets the
//! tests and the load generator use the same definitions as the server.

use bytes::Bytes;

/// The prefix of every line the server says on its own behalf.
pub const SERVER_PREFIX: &str = "SERVER: ";

/// Asked on connect.
pub const GREETING: &str = "Welcome to chatpipe! Please enter your username:";
/// Asked again after a refused username.
pub const ASK_AGAIN: &str = "Please enter your username:";
/// Said to every client when the server shuts down.
pub const SHUTTING_DOWN: &str = "Chat server is shutting down";
/// Said to every client when the server stops because of an internal error.
pub const STOPPED_AFTER_ERROR: &str =
    "Chat server is shutting down after an internal error; please reconnect later";
/// Said to a client whose outbox overflowed.
pub const TOO_SLOW: &str = "Disconnected: too slow to keep up";
/// Said to a client over the rate limit.
pub const RATE_LIMITED: &str = "Rate limit exceeded. Please slow down.";
/// Said once to a client that has just joined, right after its own join line.
pub const HELP_HINT: &str = "Type /help for the list of commands.";
/// Said to a client that sends `/quit`.
pub const GOODBYE: &str = "Goodbye!";

/// `SERVER: TEXT\n`, one such line per line of `text`.
pub fn server_line(text: &str) -> Bytes {
    let mut out = String::with_capacity(text.len() + SERVER_PREFIX.len() + 1);
    for line in text.lines() {
        out.push_str(SERVER_PREFIX);
        out.push_str(line);
        out.push('\n');
    }
    Bytes::from(out)
}

/// `NAME: TEXT\n`.
pub fn chat_line(name: &str, text: &str) -> Bytes {
    Bytes::from(format!("{name}: {text}\n"))
}

/// `* NAME ACTION\n`.
pub fn action_line(name: &str, action: &str) -> Bytes {
    Bytes::from(format!("* {name} {action}\n"))
}

/// `NAME has joined the chat\n`.
pub fn joined_line(name: &str) -> Bytes {
    Bytes::from(format!("{name} has joined the chat\n"))
}

/// `NAME has left the chat\n`.
pub fn left_line(name: &str) -> Bytes {
    Bytes::from(format!("{name} has left the chat\n"))
}

/// `NAME has joined the room\n`, to a room someone moved into with `/join`.
pub fn joined_room_line(name: &str) -> Bytes {
    Bytes::from(format!("{name} has joined the room\n"))
}

/// `NAME has left the room\n`, to a room someone moved out of with `/join` or `/leave`.
pub fn left_room_line(name: &str) -> Bytes {
    Bytes::from(format!("{name} has left the room\n"))
}

/// Marks a replayed history line: `[history] alice: hi`.
pub const HISTORY_PREFIX: &str = "[history] ";

/// A line from a room's history, marked: `[history] LINE`.
pub fn history_line(line: &[u8]) -> Bytes {
    let mut marked = Vec::with_capacity(HISTORY_PREFIX.len() + line.len());
    marked.extend_from_slice(HISTORY_PREFIX.as_bytes());
    marked.extend_from_slice(line);
    Bytes::from(marked)
}

/// `[PM from SENDER] TEXT\n`, to the recipient of a private message.
pub fn pm_from_line(sender: &str, text: &str) -> Bytes {
    Bytes::from(format!("[PM from {sender}] {text}\n"))
}

/// `[PM to RECIPIENT] TEXT\n`, to the sender of a private message.
pub fn pm_to_line(recipient: &str, text: &str) -> Bytes {
    Bytes::from(format!("[PM to {recipient}] {text}\n"))
}

/// `OLD is now known as NEW\n`.
pub fn renamed_line(old: &str, new: &str) -> Bytes {
    Bytes::from(format!("{old} is now known as {new}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines_prefix_every_line() {
        assert_eq!(server_line("a\nb"), Bytes::from("SERVER: a\nSERVER: b\n"));
        assert_eq!(chat_line("al", "hi"), Bytes::from("al: hi\n"));
    }
}
