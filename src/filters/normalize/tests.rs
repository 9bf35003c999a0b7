//! Unit tests of [`normalize`](super::normalize): each evasion it undoes, each innocent text it
//! leaves readable, and the byte map back to the original (every canonical byte points into the
//! original text, at a character boundary).

use super::*;

fn n(text: &str) -> String {
    normalize(text).text
}

#[test]
fn folds_case_accents_and_width() {
    assert_eq!(n("HeLLo Wörld"), "hello world");
    assert_eq!(n("Ｆｕｌｌ"), "full");
    assert_eq!(n("café"), "cafe");
}

#[test]
fn confusables_become_latin() {
    assert_eq!(n("ѕсаm"), "scam");
    assert_eq!(n("ΒΑΝ"), "ban");
}

#[test]
fn substitutions_only_inside_words_with_letters() {
    assert_eq!(n("h3ll0 w0rld"), "hello world");
    assert_eq!(n("$h1t"), "shLt");
    assert_eq!(n("in 2024 at 5"), "in 2024 at 5");
    assert_eq!(n("me @ home"), "me home");
}

#[test]
fn single_letters_are_joined() {
    assert_eq!(n("b.a.d"), "bad");
    assert_eq!(n("b a d idea"), "bad idea");
    assert_eq!(n("s-h-i-t!"), "shitI", "the `!` is an edge mark");
    assert_eq!(n("a b"), "a b", "two letters are not a word");
}

#[test]
fn symbols_between_letters_read_as_letters() {
    assert_eq!(n("sh!t"), "shLt", "i or l");
    assert_eq!(n("sh|t"), "shLt");
    assert_eq!(n("sh!!t"), "shLLt", "a run of symbols between letters");
    assert_eq!(n("f+ck"), "ftck");
    assert_eq!(n("(ool"), "Cool", "a leading bracket: c or punctuation");
    assert_eq!(n("what! no|yes"), "whatI noLyes");
    assert_eq!(n("what!"), "whatI");
    assert_eq!(n("1+1 (two)"), "1 1 Ctwo");
    assert_eq!(n("€vil"), "evil");
    assert_eq!(n("һell"), "hell", "Cyrillic shha");
}

#[test]
fn more_digits_read_as_letters_inside_words() {
    assert_eq!(n("8itch"), "bitch", "8 for b");
    assert_eq!(n("shi7"), "shit", "7 for t");
    assert_eq!(n("ni99er"), "niQQer", "9 for g or q");
    assert_eq!(n("s1ut"), "sLut", "1 for i or l");
    assert_eq!(n("s|ut"), "sLut", "| for i or l");
    assert_eq!(n("6itch"), "Gitch", "6 for b or g");
}

#[test]
fn symbols_at_a_word_edge_become_edge_marks() {
    assert_eq!(n("(unt"), "Cunt");
    assert_eq!(n("5h1+"), "shLT");
    assert_eq!(n("!diot"), "Idiot");
    assert_eq!(n("|ame"), "Iame");
    let norm = normalize("so (unt!");
    assert_eq!(norm.text, "so CuntI");
    assert_eq!(&"so (unt!"[norm.original_range(3..8)], "(unt!");
    assert!(is_edge_mark(b'C') && is_edge_mark(b'T') && is_edge_mark(b'I'));
    assert!(!is_edge_mark(b'L') && !is_edge_mark(b'c'));
}

#[test]
fn every_letter_doubled() {
    assert_eq!(n("88!!77cchh"), "bbLLttcchh");
    assert_eq!(n("((uunntt"), "CCuunntt");
    assert_eq!(n("55hh11++"), "sshhLLTT");
}

#[test]
fn numbers_and_symbols_alone_stay_what_they_are() {
    assert_eq!(n("1+1=2"), "1 1 2");
    assert_eq!(n("5 + 5 = 10"), "5 5 10");
    assert_eq!(n("7 days"), "7 days");
    assert_eq!(n("route 66"), "route 66");
    assert_eq!(n("B2B"), "b2b", "2 stands for no letter");
    assert_eq!(n("10|20"), "10 20");
    assert_eq!(n("$5.99 or 5$"), "5 99 or 5");
    assert_eq!(n("!!! + ((("), "");
    assert_eq!(n(":( :-) <3"), "3");
}

#[test]
fn invisible_characters_vanish() {
    assert_eq!(n("fu\u{200b}ck"), "fuck");
    assert_eq!(n("sh\u{00ad}it"), "shit");
}

#[test]
fn a_one_letter_word_before_spaced_letters_is_read_both_ways() {
    let norm = normalize("you a s h i t");
    assert_eq!(norm.text, "you ashit");
    let alt = norm.alternative.as_ref().expect("an alternative");
    assert_eq!(alt.text, "you a shit");
    assert_eq!(&"you a s h i t"[alt.original_range(6..10)], "s h i t");
    assert!(
        normalize("a s s").alternative.is_none(),
        "too short to split"
    );
}

#[test]
fn separators_collapse() {
    assert_eq!(n("  what...the   heck?! "), "what the heck");
}

#[test]
fn ascii_fast_path_agrees_with_the_general_path() {
    let samples = [
        "",
        " ",
        "hello",
        "  what...the   heck?! ",
        "b.a.d idea",
        "a b",
        "a b c d e",
        "h3ll0 w0rld",
        "in 2024 at 5",
        "x  .  y  .  z",
        "s-h-i-t!",
        "a  b  c",
        "a$$ @home",
        "l33t sp34k 4 u",
        "trailing  ",
        "...",
        "one,two;three",
        "A B C",
        "4 5 6",
        "what! is this?",
        "(see) this + that | other",
        "a.b.c",
        "i am a cat",
        "so i said: a x",
        "Hello, World! How are you?",
        "x",
        "sh!!t",
        "(unt",
        "5h1+",
        "88!!77cchh",
        "((uunntt",
        "55hh11++",
        "s|ut bu||sh|t",
        "what! hello!!! (see above)",
        "1+1=2",
        "10|20",
        "5 + 5 = 10",
        "C++ (and C)",
        "it+ a+b",
        "$5.99 5$ $5",
        "!!! ((( +++",
        "s-h-i-t!",
        "(f u c k",
        "f! u! c! k!",
        "7 days, route 66, B2B",
        "v1.2 v2.0.1-beta x86_64",
        ":( :-) (y) <3 8) o7 :| |:",
        "7:30pm 9am",
        "a! s h i t",
        "(a s h i t",
    ];
    let fast_paths = samples.iter().flat_map(|&sample| {
        let two_pass = normalize_ascii(sample.as_bytes(), &mut Scratch::default());
        let one_pass = normalize_plain_ascii(sample.as_bytes());
        [(sample, two_pass), (sample, one_pass)]
    });
    for (sample, fast) in fast_paths {
        let general = normalize_general(sample, &mut Scratch::default());
        let Some(fast) = fast else {
            continue;
        };
        assert_eq!(fast.text, general.text, "{sample:?}");
        for start in 0..fast.text.len() {
            for end in start + 1..=fast.text.len() {
                assert_eq!(
                    fast.original_range(start..end),
                    general.original_range(start..end),
                    "{sample:?} {start}..{end}"
                );
            }
        }
    }
}

#[test]
fn maps_back_to_the_original() {
    let text = "b.a.d Ｆｕ";
    let norm = normalize(text);
    assert_eq!(norm.text, "bad fu");
    assert_eq!(&text[norm.original_range(0..3)], "b.a.d");
    assert_eq!(&text[norm.original_range(4..6)], "Ｆｕ");
}
