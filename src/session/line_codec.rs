//! Line framing and cleaning of client input.
//!
//! [`LineCodec`] splits the byte stream into lines of at most `max_line_bytes` bytes. Unlike
//! tokio-util's `LinesCodec`, a bad line is an ordinary frame ([`Frame::TooLong`],
//! [`Frame::InvalidUtf8`]) rather than a stream error, so the session can answer it and keep the
//! connection. Memory stays bounded: once a line is known to be too long, the rest of it is
//! discarded as it arrives, so a megabyte without a newline costs no more than one line's buffer.
//!
//! [`clean_text`] strips what a terminal would interpret (escape sequences, control characters,
//! bidirectional overrides) so nobody can clear, recolour or reorder another user's screen.

use std::borrow::Cow;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// One unit of client input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n` or `\r\n`.
    Line(String),
    /// A line longer than the limit; the rest of it is discarded.
    TooLong,
    /// A line that is not valid UTF-8.
    InvalidUtf8,
}

/// Splits input into [`Frame`]s of at most `max_line_bytes` bytes.
#[derive(Debug)]
pub struct LineCodec {
    max_line_bytes: usize,
    /// Bytes of the buffer already searched for a newline.
    searched: usize,
    /// Inside an over-long line whose notice was already given: drop input until its newline.
    discarding: bool,
}

impl LineCodec {
    /// A codec accepting lines of up to `max_line_bytes` bytes (the line ending not counted).
    pub fn new(max_line_bytes: usize) -> Self {
        LineCodec {
            max_line_bytes,
            searched: 0,
            discarding: false,
        }
    }

    fn frame(&self, mut line: &[u8]) -> Frame {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > self.max_line_bytes {
            return Frame::TooLong;
        }
        match std::str::from_utf8(line) {
            Ok(text) => Frame::Line(text.to_owned()),
            Err(_) => Frame::InvalidUtf8,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            let newline = buf[self.searched..].iter().position(|&b| b == b'\n');
            match newline {
                Some(offset) => {
                    let end = self.searched + offset;
                    self.searched = 0;
                    let line = buf.split_to(end + 1);
                    if self.discarding {
                        // The tail of a line already answered with TooLong.
                        self.discarding = false;
                        continue;
                    }
                    return Ok(Some(self.frame(&line[..end])));
                }
                None if self.discarding => {
                    buf.clear();
                    self.searched = 0;
                    return Ok(None);
                }
                // `+ 1` leaves room for the `\r` of a `\r\n` that has not fully arrived.
                None if buf.len() > self.max_line_bytes + 1 => {
                    buf.clear();
                    self.searched = 0;
                    self.discarding = true;
                    return Ok(Some(Frame::TooLong));
                }
                None => {
                    self.searched = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A last line without a newline still counts, unless it is the tail of a discarded one.
        self.searched = 0;
        if buf.is_empty() || std::mem::take(&mut self.discarding) {
            buf.clear();
            return Ok(None);
        }
        let line = buf.split();
        Ok(Some(self.frame(&line)))
    }
}

/// Removes terminal escape sequences, control characters and bidirectional overrides; a tab
/// becomes a space. Borrows when there is nothing to remove, which is the common case.
pub fn clean_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_cleaning) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => out.push(' '),
            '\u{1b}' => skip_escape_sequence(&mut chars),
            '\u{3}' => skip_colour_code(&mut chars),
            c if needs_cleaning(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_cleaning(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Skips the colours of an IRC colour code whose `^C` was just read: up to two digits of
/// foreground, then a comma and up to two digits of background. Its digits would otherwise be
/// left in the text (`f^C04uck` read as `f04uck`: a stray number, and a word the filters miss).
/// A comma not followed by a digit is text and stays.
fn skip_colour_code(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    let skip_digits = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let mut skipped = 0;
        while skipped < 2 && chars.peek().is_some_and(char::is_ascii_digit) {
            chars.next();
            skipped += 1;
        }
        skipped
    };
    if skip_digits(chars) == 0 || chars.peek() != Some(&',') {
        return;
    }
    let mut ahead = chars.clone();
    ahead.next();
    if ahead.peek().is_some_and(char::is_ascii_digit) {
        chars.next();
        skip_digits(chars);
    }
}

/// Skips the rest of an escape sequence whose ESC was just read: CSI (`ESC [ … final`), OSC and
/// the other string sequences (`ESC ] … BEL` or `… ESC \`), or a two-character sequence.
fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            // Parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                    chars.next();
                    break;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irc_colour_codes_go_with_their_colours() {
        assert_eq!(clean_text("f\u{3}04u\u{3}ck"), "fuck");
        assert_eq!(clean_text("\u{3}4,12red on blue\u{3}"), "red on blue");
        assert_eq!(clean_text("\u{3}04,x"), ",x");
        assert_eq!(clean_text("\u{3}123"), "3");
        assert_eq!(clean_text("plain \u{3}text"), "plain text");
    }

    fn decode_all(codec: &mut LineCodec, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn splits_lines_and_accepts_crlf() {
        let mut codec = LineCodec::new(16);
        let frames = decode_all(&mut codec, b"hello\r\nworld\n\npartial");
        assert_eq!(
            frames,
            vec![
                Frame::Line("hello".into()),
                Frame::Line("world".into()),
                Frame::Line(String::new())
            ]
        );
    }

    #[test]
    fn over_long_line_is_reported_once_and_its_tail_discarded() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::TooLong));
        assert!(buf.is_empty(), "the over-long prefix is not kept");
        buf.extend_from_slice(b"ijklmnop");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"qr\nok\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Line("ok".into()))
        );
    }

    #[test]
    fn line_of_exactly_the_limit_with_crlf_passes() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcd\r"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Line("abcd".into()))
        );
    }

    #[test]
    fn invalid_utf8_is_a_frame_not_an_error() {
        let mut codec = LineCodec::new(16);
        let frames = decode_all(&mut codec, b"\xff\xfe\nfine\n");
        assert_eq!(frames, vec![Frame::InvalidUtf8, Frame::Line("fine".into())]);
    }

    #[test]
    fn last_line_without_newline_is_delivered_at_eof() {
        let mut codec = LineCodec::new(16);
        let mut buf = BytesMut::from(&b"bye"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(Frame::Line("bye".into()))
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn clean_text_strips_escapes_and_controls() {
        assert!(matches!(clean_text("plain text"), Cow::Borrowed(_)));
        assert_eq!(clean_text("\u{1b}[2J\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(clean_text("a\u{0}b\rc\u{7}"), "abc");
        assert_eq!(clean_text("tab\there"), "tab here");
        assert_eq!(clean_text("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(clean_text("x\u{202e}gnp.exe"), "xgnp.exe");
        assert_eq!(clean_text("\u{9b}31m"), "31m");
    }
}
