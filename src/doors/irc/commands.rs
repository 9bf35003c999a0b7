//! Commands that become chat lines: `PRIVMSG` and `NOTICE` to channels and nicks, `JOIN`, and
//! `NICK` after registration; and `AWAY`, which does not: away messages are IRC's own state,
//! kept in the door (`IrcDoor`) and gone with the session.
//!
//! Each of the others turns into the line a text client would type (`/join games`, `/msg bob hi`,
//! `/me waves`, `/nick bob2`) and goes through `chat` into the pipeline, so it costs a line of
//! the rate limit per chat line and meets the same filters and moderation. Text is cleaned
//! before it becomes a line, and a channel line that starts with `/` stays text, never a chat
//! command. One command reaches at most `MAX_TARGETS` targets. A method returning false means
//! the server is shutting down and the session should end.

use super::session::{MAX_TARGETS, Session};
use crate::metrics::DropReason;
use crate::names::validate_username;
use crate::session::line_codec::clean_text;

/// The longest away message kept (`AWAYLEN`).
const MAX_AWAY: usize = 200;

impl Session {
    /// `PRIVMSG` and `NOTICE` to rooms and nicks.
    pub(super) async fn privmsg(&mut self, command: &str, targets: &str, text: &str) -> bool {
        if text.is_empty() {
            self.numeric("412", &[], "No text to send");
            return true;
        }
        let max = self.shared().config.max_line_bytes;
        // CTCP is framed by \x01, which cleaning would strip: look for it first.
        let action = text
            .strip_prefix("\u{1}ACTION ")
            .map(|a| clean_text(a.trim_end_matches('\u{1}')).into_owned());
        if action.is_none() && text.starts_with('\u{1}') {
            // Other CTCP (VERSION, PING…) is not relayed; a NOTICE is never answered.
            if command == "PRIVMSG" {
                self.notice("CTCP requests are not relayed here.");
            }
            return true;
        }
        let text = clean_text(text).into_owned();
        if text.len() > max {
            self.shared().metrics.dropped(DropReason::TooLong, 1);
            self.numeric(
                "417",
                &[],
                &format!("Line too long (the limit is {max} bytes of text); it was discarded"),
            );
            return true;
        }
        for target in targets.split(',').take(MAX_TARGETS) {
            let line = if target.starts_with('#') {
                let Some(room) = self.room_of(target) else {
                    continue;
                };
                let line = match &action {
                    Some(action) => format!("/me {action}"),
                    // A line that starts with `/` is text here, never a chat command.
                    None if text.starts_with('/') => format!("/{text}"),
                    None => text.clone(),
                };
                if !self.chat(Some(&room), line).await {
                    return false;
                }
                continue;
            } else if validate_username(target).is_err() {
                self.numeric("401", &[target], "No such nick/channel");
                continue;
            } else {
                match &action {
                    Some(action) => format!("/msg {target} * {} {action}", self.nick()),
                    None => format!("/msg {target} {text}"),
                }
            };
            if !self.chat(None, line).await {
                return false;
            }
        }
        true
    }

    pub(super) async fn join(&mut self, targets: &str) -> bool {
        if targets == "0" {
            self.notice("JOIN 0 is not supported here; PART the channels one by one.");
            return true;
        }
        for target in targets.split(',').take(MAX_TARGETS) {
            if let Some(room) = self.room_of(target)
                && !self.chat(None, format!("/join {room}")).await
            {
                return false;
            }
        }
        true
    }

    /// `AWAY :text` marks the client away, `AWAY` alone back.
    pub(super) fn away(&self, text: Option<&str>) {
        match text.filter(|t| !t.is_empty()) {
            Some(text) => {
                let text: String = clean_text(text).chars().take(MAX_AWAY).collect();
                if let Some(client) = self.sent.client() {
                    self.door.set_away(client, Some(text));
                }
                self.numeric("306", &[], "You have been marked as being away");
            }
            None => {
                if let Some(client) = self.sent.client() {
                    self.door.set_away(client, None);
                }
                self.numeric("305", &[], "You are no longer marked as being away");
            }
        }
    }

    /// `NICK new` after registration: refused at once when the form is wrong or the name is
    /// online; otherwise the hub decides (registered and banned names) and announces it.
    pub(super) async fn nick_change(&mut self, new: &str) -> bool {
        if let Err(problem) = validate_username(new) {
            self.numeric("432", &[new], &format!("Erroneous nickname: {problem}"));
            return true;
        }
        let lookup = new.to_owned();
        let Some(holder) = self
            .ask(move |hub| hub.member_summary(&lookup).map(|m| m.name))
            .await
        else {
            return true;
        };
        if holder.is_some_and(|h| !h.eq_ignore_ascii_case(&self.nick())) {
            self.numeric("433", &[new], "Nickname is already in use");
            return true;
        }
        self.chat(None, format!("/nick {new}")).await
    }
}
