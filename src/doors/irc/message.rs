//! IRC messages: parsing what a client sends, and the limits on it.
//!
//! A message is `[@tags ] [:source ] COMMAND [params...] [:trailing]`. The limits are the modern
//! ones: at most 512 bytes for everything after the tags (the line ending included), and at most
//! 8,191 bytes of tags (the `@` and the space after them included). A client's source prefix is
//! ignored, as servers do: the server knows who sent a line. Parsing never allocates more than
//! the line and never fails on content; only the shape can be wrong.

/// The most bytes of a line after its tags, the line ending included.
pub(crate) const MAX_LINE: usize = 512;

/// The most bytes of a line's tags, the `@` and the space after them included.
pub(crate) const MAX_TAGS: usize = 8191;

/// The longest line the codec accepts before answering `417 ERR_INPUTTOOLONG`.
pub(crate) const MAX_FRAME: usize = MAX_TAGS + MAX_LINE;

/// The most parameters a message carries (RFC 2812).
const MAX_PARAMS: usize = 15;

/// A parsed client message, borrowing from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// The command, upper-cased (`PRIVMSG`, `001`).
    pub(crate) command: String,
    /// The parameters, the trailing one included (without its `:`).
    pub(crate) params: Vec<&'a str>,
}

/// Why a line is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Nothing but spaces (clients may send these; they are ignored).
    Empty,
    /// More than [`MAX_LINE`] bytes after the tags, or more than [`MAX_TAGS`] of tags.
    TooLong,
}

impl<'a> Message<'a> {
    /// Parses one line (without its line ending).
    pub(crate) fn parse(line: &'a str) -> Result<Message<'a>, Malformed> {
        let mut rest = line;
        if let Some(tagged) = rest.strip_prefix('@') {
            let (tags, after) = tagged.split_once(' ').unwrap_or((tagged, ""));
            if tags.len() + 2 > MAX_TAGS {
                return Err(Malformed::TooLong);
            }
            rest = after;
        }
        if rest.len() + 2 > MAX_LINE {
            return Err(Malformed::TooLong);
        }
        rest = rest.trim_start_matches(' ');
        if rest.starts_with(':') {
            rest = rest.split_once(' ').map_or("", |(_, after)| after);
        }
        let mut words = rest.trim_start_matches(' ');
        let command = match words.split_once(' ') {
            Some((command, after)) => {
                words = after;
                command
            }
            None => std::mem::take(&mut words),
        };
        if command.is_empty() {
            return Err(Malformed::Empty);
        }
        let mut params = Vec::new();
        loop {
            words = words.trim_start_matches(' ');
            if words.is_empty() {
                break;
            }
            if let Some(trailing) = words.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            if params.len() == MAX_PARAMS - 1 {
                // The fifteenth parameter takes the rest of the line, as if it were trailing.
                params.push(words);
                break;
            }
            match words.split_once(' ') {
                Some((word, after)) => {
                    params.push(word);
                    words = after;
                }
                None => {
                    params.push(words);
                    break;
                }
            }
        }
        Ok(Message {
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    /// The parameter at `index`, if there is one.
    pub(crate) fn param(&self, index: usize) -> Option<&'a str> {
        self.params.get(index).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Message<'_> {
        Message::parse(line).unwrap()
    }

    #[test]
    fn commands_and_parameters() {
        let m = parse("privmsg #games :hello there  ");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#games", "hello there  "]);
        let m = parse("@label=1;+draft/x :alice!a@b JOIN   #a,#b  key");
        assert_eq!(m.command, "JOIN");
        assert_eq!(m.params, vec!["#a,#b", "key"]);
        assert_eq!(parse("QUIT").params, Vec::<&str>::new());
        assert_eq!(parse("TOPIC #a :").params, vec!["#a", ""]);
        assert_eq!(
            parse("USER u 0 * :Real Name").params,
            vec!["u", "0", "*", "Real Name"]
        );
    }

    #[test]
    fn shapes_that_are_not_messages() {
        assert_eq!(Message::parse(""), Err(Malformed::Empty));
        assert_eq!(Message::parse("   "), Err(Malformed::Empty));
        assert_eq!(Message::parse(":only.a.source"), Err(Malformed::Empty));
        assert_eq!(Message::parse("@tags-only"), Err(Malformed::Empty));
    }

    #[test]
    fn limits() {
        let body = format!("PRIVMSG #a :{}", "x".repeat(MAX_LINE - 2 - 12));
        assert!(Message::parse(&body).is_ok());
        assert_eq!(Message::parse(&format!("{body}x")), Err(Malformed::TooLong));
        let tags = format!("@{} PING :x", "t".repeat(MAX_TAGS - 2));
        assert!(Message::parse(&tags).is_ok());
        let tags = format!("@{} PING :x", "t".repeat(MAX_TAGS - 1));
        assert_eq!(Message::parse(&tags), Err(Malformed::TooLong));
    }

    #[test]
    fn at_most_fifteen_parameters() {
        let line = format!(
            "X {}",
            (1..=20)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let m = parse(&line);
        assert_eq!(m.params.len(), 15);
        assert_eq!(m.params[14], "15 16 17 18 19 20");
    }
}
