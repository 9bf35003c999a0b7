//! Property tests: arbitrary input to everything a client controls never panics, and each part
//! either succeeds or says clearly what is wrong.

mod common;

use bytes::BytesMut;
use chatpipe::Body;
use chatpipe::filters::normalize::normalize;
use chatpipe::names::validate_username;
use chatpipe::pipeline::parse::parse_line;
use chatpipe::session::line_codec::{Frame, LineCodec, clean_text};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

const MAX: usize = 64;

/// Feeds `chunks` to a fresh codec, as a socket would deliver them, then ends the stream.
fn decode(chunks: &[Vec<u8>]) -> Vec<Frame> {
    let mut codec = LineCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).expect("decoding never fails") {
            frames.push(frame);
        }
        assert!(buf.len() <= MAX + 2, "the buffer stays within one line");
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("decoding never fails") {
        frames.push(frame);
    }
    frames
}

proptest! {
    /// Any bytes in any chunking: frames are bounded lines or clear errors, and the buffer never
    /// holds more than one line.
    #[test]
    fn codec_survives_arbitrary_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        for frame in decode(&chunks) {
            if let Frame::Line(line) = frame {
                prop_assert!(line.len() <= MAX);
                prop_assert!(!line.contains('\n'));
            }
        }
    }

    /// Well-formed short lines come back exactly, however they are split.
    #[test]
    fn codec_round_trips_lines(lines in proptest::collection::vec("[^\r\n]{0,20}", 1..10), split in 1usize..50) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let chunks: Vec<Vec<u8>> = text.as_bytes().chunks(split).map(<[u8]>::to_vec).collect();
        let frames = decode(&chunks);
        let expected: Vec<Frame> = lines.into_iter().map(Frame::Line).collect();
        prop_assert_eq!(frames, expected);
    }

    /// Cleaning leaves no control character, no escape sequence and no bidirectional override
    /// (which `is_control` does not cover) behind; the input mixes them into ordinary text.
    #[test]
    fn clean_text_leaves_no_controls(
        text in proptest::collection::vec(
            prop_oneof![
                any::<char>(),
                Just('\u{1b}'),
                Just('\u{202e}'),
                Just('\u{2066}'),
                Just('\u{200f}'),
                Just('a'),
            ],
            0..40,
        )
    ) {
        let text: String = text.into_iter().collect();
        let cleaned = clean_text(&text);
        let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        prop_assert!(!cleaned.chars().any(|c| c.is_control() || bidi(c)), "{:?}", cleaned);
    }

    /// Username validation accepts exactly the documented alphabet and lengths.
    #[test]
    fn usernames_are_checked_not_trusted(name in any::<String>()) {
        if validate_username(&name).is_ok() {
            prop_assert!((1..=32).contains(&name.len()));
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            prop_assert!(!name.eq_ignore_ascii_case("server"));
        }
    }

    /// The command parser answers anything: chat is trimmed and non-empty, a notice is never empty.
    #[test]
    fn parser_answers_anything(line in any::<String>()) {
        match parse_line(&line) {
            None => prop_assert!(line.trim().is_empty()),
            Some(Body::Chat(text)) => prop_assert!(!text.is_empty()),
            Some(Body::Notice(text)) => prop_assert!(!text.is_empty()),
            Some(_) => {}
        }
    }

    /// Normalisation of anything maps every canonical range back to whole original characters.
    #[test]
    fn normaliser_maps_back_inside_the_original(text in any::<String>()) {
        let normalized = normalize(&text);
        let len = normalized.text.len();
        for start in (0..len).filter(|i| normalized.text.is_char_boundary(*i)) {
            let range = normalized.original_range(start..len);
            prop_assert!(range.start <= range.end && range.end <= text.len());
            prop_assert!(text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
        }
    }
}

/// What the server answers to `bytes` sent as a username (the line without its newline): the
/// join notice for a valid name, else the `SERVER:` line naming what is wrong with it.
fn expected_answer(bytes: &[u8]) -> String {
    // The codec drops one `\r` before the newline; the handshake trims the name.
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return "SERVER: Invalid username: not valid UTF-8".to_owned();
    };
    let name = text.trim();
    match validate_username(name) {
        Ok(()) => format!("{name} has joined the chat"),
        Err(problem) => format!("SERVER: Invalid username: {problem}"),
    }
}

/// Arbitrary bytes as a username over real TCP: the server answers each with exactly the join
/// notice (for a valid name) or the reason the name is refused, and keeps serving.
#[test]
fn handshake_answers_arbitrary_names() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(common::TestServer::with_config(common::test_config()));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    // Half arbitrary bytes, half names of the allowed characters (padded with spaces), so both
    // answers are exercised.
    let names = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ ]{0,2}[A-Za-z0-9_-]{1,20}[ ]{0,2}".prop_map(String::into_bytes),
    ];
    runner
        .run(&names, |bytes| {
            runtime.block_on(async {
                let mut client = server.connect().await;
                client.expect_contains("Please enter your username").await;
                let mut line = bytes.clone();
                line.retain(|b| *b != b'\n');
                let expected = expected_answer(&line);
                line.push(b'\n');
                client.send_raw(&line).await;
                let answer = client.next_line().await.expect("an answer");
                assert_eq!(answer, expected, "the answer to {bytes:?}");
                if !expected.starts_with("SERVER: ") {
                    // Leave, so a later case may take the same name.
                    client.send("/quit").await;
                    client.expect_contains("Goodbye").await;
                    client.expect_eof().await;
                }
            });
            Ok(())
        })
        .unwrap();
    runtime.block_on(async {
        let _still_serving = server.login("survivor").await;
        server.shutdown().await;
    });
}
