//! The [`Filter`] trait: a synchronous, per-message rule.
//!
//! A filter sees one chat line and its sender and returns a [`Verdict`]. Filters are called
//! through `&self` and must be `Send + Sync`, which is what lets the worker pool run them on many
//! messages at once. A filter that remembers something across messages keeps it behind its own
//! synchronisation (the shipped repetition rule keeps a small per-sender memory under a mutex,
//! lost when the rules are reloaded); anything that depends on timing or must hold messages back
//! is a [`Stage`](crate::pipeline::Stage) instead.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::normalize::{Normalized, normalize};
use crate::event::{ClientId, ClientInfo};

/// One chat line as a filter sees it.
///
/// Build one with [`Message::new`]. Inside a [`FilterChain`](super::FilterChain) the normalised
/// form of the text ([`Message::normalized`]) is computed once per text and shared by every
/// filter that asks for it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The text, after earlier filters' rewrites.
    pub text: &'a str,
    /// The sender's name, room and role when the line was judged. For a line to a room,
    /// `sender.room` is that room; for a private message it is the room the sender is in, which
    /// the message has nothing to do with: judge by [`Message::room`].
    pub sender: &'a ClientInfo,
    /// The room the line goes to, which room rules (`exempt_rooms`) judge by; `None` for a
    /// private message, which belongs to no room.
    pub room: Option<&'a str>,
    /// The sender's connection, for filters that remember something per sender.
    pub client: ClientId,
    /// When the line was received (for time windows; a paused clock in tests).
    pub received_at: Instant,
    /// The normalised text, once computed; `None` outside a chain.
    pub(crate) normalized: Option<&'a OnceCell<Normalized>>,
}

impl<'a> Message<'a> {
    /// A message from `sender` (connection `client`) received at `received_at`, for the
    /// sender's room (`sender.room`); [`Message::in_room`] says otherwise.
    pub fn new(
        text: &'a str,
        sender: &'a ClientInfo,
        client: ClientId,
        received_at: Instant,
    ) -> Self {
        Message {
            text,
            sender,
            room: Some(&sender.room),
            client,
            received_at,
            normalized: None,
        }
    }

    /// The same message for `room` (`None`: a private message).
    pub fn in_room(self, room: Option<&'a str>) -> Self {
        Message { room, ..self }
    }

    /// The text normalised for evasion-resistant matching (see [`super::normalize`]).
    pub fn normalized(&self) -> Cow<'a, Normalized> {
        match self.normalized {
            Some(cell) => Cow::Borrowed(cell.get_or_init(|| normalize(self.text))),
            None => Cow::Owned(normalize(self.text)),
        }
    }
}

/// What a filter decides about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through unchanged.
    Pass,
    /// Let it through with this text instead (masking).
    Rewrite(String),
    /// Nobody sees it; the sender gets `SERVER: ` and this notice.
    Block(String),
    /// Nobody sees it and the sender is not told.
    Silent,
    /// Let it through, and alert the moderators online; the string says why.
    Warn(String),
    /// Nobody sees it, and the sender may not speak for `duration`; they are told `notice`.
    Mute {
        /// How long.
        duration: Duration,
        /// What the sender is told.
        notice: String,
    },
    /// Nobody sees it, and the sender is disconnected with this notice.
    Kick(String),
    /// Nobody sees it until a moderator approves it; the string says why it was held.
    Hold(String),
}

/// A per-message rule. See the module documentation.
///
/// # Example
/// ```
/// use chatpipe::filters::{Filter, Message, Verdict};
///
/// /// Blocks lines that are all capitals.
/// struct NoShouting;
///
/// impl Filter for NoShouting {
///     fn name(&self) -> &str {
///         "no-shouting"
///     }
///     fn check(&self, message: &Message<'_>) -> Verdict {
///         let letters = message.text.chars().filter(|c| c.is_alphabetic());
///         if letters.clone().count() >= 5 && letters.clone().all(char::is_uppercase) {
///             Verdict::Block("Please don't shout.".into())
///         } else {
///             Verdict::Pass
///         }
///     }
/// }
/// ```
pub trait Filter: Send + Sync + 'static {
    /// The filter's name, used in logs, metrics and notices.
    fn name(&self) -> &str;

    /// Judges one message.
    fn check(&self, message: &Message<'_>) -> Verdict;
}

/// A filter made from a closure; see [`filter_fn`].
pub struct FnFilter<F> {
    name: String,
    check: F,
}

impl<F> Filter for FnFilter<F>
where
    F: Fn(&Message<'_>) -> Verdict + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, message: &Message<'_>) -> Verdict {
        (self.check)(message)
    }
}

/// Makes a filter from a closure.
///
/// ```
/// use chatpipe::filters::{filter_fn, Verdict};
///
/// let no_spoilers = filter_fn("no-spoilers", |m| {
///     if m.text.contains("snape") { Verdict::Block("No spoilers!".into()) } else { Verdict::Pass }
/// });
/// ```
pub fn filter_fn<F>(name: impl Into<String>, check: F) -> Arc<dyn Filter>
where
    F: Fn(&Message<'_>) -> Verdict + Send + Sync + 'static,
{
    Arc::new(FnFilter {
        name: name.into(),
        check,
    })
}
