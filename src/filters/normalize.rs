//! Evasion-resistant normalisation of chat text for word matching.
//!
//! [`normalize`] maps a line to a canonical form in which people's tricks to slip a word past a
//! filter disappear, and remembers for every byte of the canonical form which bytes of the
//! original produced it, so a match can be masked in the original text:
//!
//! - case is folded, and compatibility forms and accents are removed (Unicode NFKD without
//!   combining marks: `Ｆ`, `é`, `𝐟` become `f`, `e`, `f`);
//! - confusable letters from other scripts become their Latin look-alikes (Cyrillic `а`, Greek `ο`);
//! - inside a word that has letters, `0 1 3 4 5 @ $` read as `o i e a s a s` (`h3ll0`), while a
//!   number alone stays a number; `€` reads as `e`;
//! - between two letters (or letter-like characters), `! |` read as `i`, `+` as `t` and `(` as
//!   `c` (`sh!t`, `f+ck`), while at the end of a word they stay punctuation (`what!`);
//! - zero-width characters and soft hyphens vanish (`f\u{200b}uck` is `fuck`);
//! - three or more single letters separated by spaces or symbols are joined (`b.a.d`, `b a d`);
//!   when such a run starts with `a` or `i`, which are words of their own, an alternative form
//!   keeps that letter apart ([`Normalized::alternative`]: `a s h i t` is both `ashit` and
//!   `a shit`);
//! - every other separator becomes one space.
//!
//! Repeated letters (`baaaad`) are not squeezed here: the word matcher allows each letter of a
//! listed word to repeat, which catches `baaaad` for `bad` without turning the innocent `as` into
//! `ass`.

use std::ops::Range;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A canonical form of a line and the way back to the original.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    /// The canonical text: lower-case letters, digits, and single spaces between words.
    pub text: String,
    /// The way back from `text` to the original.
    origin: Origin,
    /// A second reading of the line, when joining single letters may have swallowed a one-letter
    /// word (`a s h i t`): matchers look at both.
    pub alternative: Option<Box<Normalized>>,
}

/// How canonical bytes map to original bytes.
#[derive(Debug, Clone)]
enum Origin {
    /// For each byte of the canonical text, the original character's byte range.
    PerByte(Vec<(u32, u32)>),
    /// ASCII input, where every canonical byte comes from one original byte: `(canonical offset,
    /// original offset)` at the start and wherever the mapping jumps (a dropped separator).
    /// Usually a handful of entries, so ordinary lines cost no per-byte bookkeeping.
    Runs(Vec<(u32, u32)>),
}

impl Default for Origin {
    fn default() -> Self {
        Origin::Runs(Vec::new())
    }
}

impl Normalized {
    /// The original byte range behind `range` of the canonical text.
    pub fn original_range(&self, range: Range<usize>) -> Range<usize> {
        if range.is_empty() || range.end > self.text.len() {
            return 0..0;
        }
        match &self.origin {
            Origin::PerByte(origin) => {
                origin[range.start].0 as usize..origin[range.end - 1].1 as usize
            }
            Origin::Runs(runs) => {
                let at = |k: usize| {
                    let i = runs.partition_point(|&(out, _)| out as usize <= k);
                    let (out, orig) = runs[i.saturating_sub(1)];
                    orig as usize + (k - out as usize)
                };
                at(range.start)..at(range.end - 1) + 1
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    /// A digit or symbol that reads as a letter inside a word.
    LetterLike,
    /// A symbol that reads as a letter only between two letter-ish characters (`sh!t`), and is
    /// punctuation elsewhere (`what!`).
    Inner,
    /// A digit that is not letter-like.
    Digit,
    Separator,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    c: char,
    start: u32,
    end: u32,
    class: Class,
}

/// Working buffers reused across calls on one thread: normalisation runs for every message, and
/// three allocations per message were a measurable share of a filter's cost.
#[derive(Default)]
struct Scratch {
    units: Vec<Unit>,
    words: Vec<Range<usize>>,
    joined: Vec<bool>,
    /// ASCII path: whether each word has a letter.
    letters_in: Vec<bool>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Normalises `text`. See the module documentation.
pub fn normalize(text: &str) -> Normalized {
    if text.is_ascii()
        && let Some(normalized) = normalize_plain_ascii(text.as_bytes())
    {
        return normalized;
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => normalize_with(text, &mut scratch),
        // Only reachable if normalisation re-entered itself; fresh buffers are correct too.
        Err(_) => normalize_with(text, &mut Scratch::default()),
    })
}

fn normalize_with(text: &str, scratch: &mut Scratch) -> Normalized {
    if text.is_ascii()
        && let Some(normalized) = normalize_ascii(text.as_bytes(), scratch)
    {
        return normalized;
    }
    normalize_general(text, scratch)
}

fn normalize_general(text: &str, scratch: &mut Scratch) -> Normalized {
    let Scratch {
        units,
        words,
        joined,
        ..
    } = scratch;
    collect_units(text, units);
    let single_letters = split_words(units, words);
    joined.clear();
    joined.resize(units.len(), false);
    let mut kept_apart = Vec::new();
    if single_letters >= 3 {
        join_single_letters(units, words, joined, &mut kept_apart);
    }
    let mut normalized = emit(units, joined);
    if !kept_apart.is_empty() {
        for gap in kept_apart {
            joined[gap].fill(false);
        }
        normalized.alternative = Some(Box::new(emit(units, joined)));
    }
    normalized
}

/// The canonical text of `units`, leaving out the separators marked in `joined`.
fn emit(units: &[Unit], joined: &[bool]) -> Normalized {
    let mut text = String::with_capacity(units.len());
    let mut origin = Vec::with_capacity(units.len());
    let mut last_was_space = true;
    for (unit, &dropped) in units.iter().zip(joined.iter()) {
        let c = if unit.class == Class::Separator {
            if dropped || last_was_space {
                continue;
            }
            ' '
        } else {
            unit.c
        };
        last_was_space = c == ' ';
        text.push(c);
        for _ in 0..c.len_utf8() {
            origin.push((unit.start, unit.end));
        }
    }
    if text.ends_with(' ') {
        text.pop();
        origin.pop();
    }
    Normalized {
        text,
        origin: Origin::PerByte(origin),
        alternative: None,
    }
}

/// The same result as the general path for ASCII input, in two passes over the bytes and without
/// per-byte bookkeeping. `None` for the rare input it leaves to the general path (a word of only
/// digits and `@`/`$`, where those symbols split the word).
fn normalize_ascii(bytes: &[u8], scratch: &mut Scratch) -> Option<Normalized> {
    let Scratch {
        words,
        joined,
        letters_in,
        ..
    } = scratch;
    words.clear();
    letters_in.clear();
    let mut single_letters = 0;
    let mut i = 0;
    while let Some((word, has_letter)) = next_ascii_word(bytes, &mut i)? {
        single_letters += usize::from(word.len() == 1 && has_letter);
        words.push(word);
        letters_in.push(has_letter);
    }
    // Gaps between words that are dropped (`b.a.d`); gap k lies between word k and k + 1.
    joined.clear();
    joined.resize(words.len(), false);
    if single_letters >= 3 {
        let single = |k: usize| words[k].len() == 1 && letters_in[k];
        let mut k = 0;
        while k < words.len() {
            let mut j = k;
            while j + 1 < words.len()
                && single(j)
                && single(j + 1)
                && words[j + 1].start - words[j].end <= MAX_GAP
            {
                j += 1;
            }
            if j - k + 1 >= 3 {
                if j - k + 1 >= 4 && matches!(bytes[words[k].start] | 0x20, b'a' | b'i') {
                    // A one-letter word may start the run: the general path reads it both ways.
                    return None;
                }
                joined[k..j].fill(true);
            }
            k = j + 1;
        }
    }
    // Within a word canonical and original bytes advance together, so the mapping can only
    // jump at a word's start or at the space before it.
    let mut text: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut runs = Vec::new();
    let mut next_orig = usize::MAX;
    let mut jump_check = |text: &Vec<u8>, orig: usize, len: usize| {
        if orig != next_orig {
            runs.push((text.len() as u32, orig as u32));
        }
        next_orig = orig + len;
    };
    for (k, word) in words.iter().enumerate() {
        if k > 0 && !joined[k - 1] {
            // The space stands for the first separator after the previous word.
            jump_check(&text, words[k - 1].end, 1);
            text.push(b' ');
        }
        jump_check(&text, word.start, word.len());
        let table = if letters_in[k] { &AS_LETTERS } else { &LOWER };
        text.extend(bytes[word.clone()].iter().map(|&b| table[usize::from(b)]));
    }
    // Only ASCII bytes were written, so this cannot fail.
    let text = String::from_utf8(text).unwrap_or_default();
    Some(Normalized {
        text,
        origin: Origin::Runs(runs),
        alternative: None,
    })
}

/// The same result as [`normalize_ascii`] for the commonest line: ASCII with fewer than three
/// single-letter words, so no letters can be joined and the canonical text is written in the one
/// pass that finds the words, with no scratch buffers. `None` sends the line down the two-pass
/// path (three single letters, or what [`normalize_ascii`] itself leaves to the general path).
fn normalize_plain_ascii(bytes: &[u8]) -> Option<Normalized> {
    let mut text: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut runs = Vec::new();
    let mut next_orig = usize::MAX;
    let mut jump_check = |at: usize, orig: usize, len: usize| {
        if orig != next_orig {
            runs.push((at as u32, orig as u32));
        }
        next_orig = orig + len;
    };
    let mut single_letters = 0;
    let mut previous_end = None;
    let mut i = 0;
    while let Some((word, has_letter)) = next_ascii_word(bytes, &mut i)? {
        let (start, end) = (word.start, word.end);
        if word.len() == 1 && has_letter {
            single_letters += 1;
            if single_letters >= 3 {
                return None;
            }
        }
        if let Some(end) = previous_end {
            // The space stands for the first separator after the previous word.
            jump_check(text.len(), end, 1);
            text.push(b' ');
        }
        jump_check(text.len(), start, end - start);
        let table = if has_letter { &AS_LETTERS } else { &LOWER };
        text.extend(bytes[start..end].iter().map(|&b| table[usize::from(b)]));
        previous_end = Some(end);
    }
    // Only ASCII bytes were written, so this cannot fail.
    let text = String::from_utf8(text).unwrap_or_default();
    Some(Normalized {
        text,
        origin: Origin::Runs(runs),
        alternative: None,
    })
}

/// The next word of ASCII `bytes` at or after `*at` (moving `*at` past it), and whether it has
/// a letter; `Some(None)` when there are no more words. `None` for what only the general path
/// reads: punctuation between two letter-ish bytes (`sh!t`; elsewhere, as in `what!`, it is a
/// separator like any other), or a word of only digits and `@`/`$`.
fn next_ascii_word(bytes: &[u8], at: &mut usize) -> Option<Option<(Range<usize>, bool)>> {
    let wordish = |b: u8| {
        matches!(
            ascii_class(b),
            Class::Letter | Class::LetterLike | Class::Digit
        )
    };
    let is_separator = |i: usize| match ascii_class(bytes[i]) {
        Class::Separator => Some(true),
        Class::Inner => {
            let inside =
                i > 0 && wordish(bytes[i - 1]) && bytes.get(i + 1).is_some_and(|&b| wordish(b));
            if inside { None } else { Some(true) }
        }
        _ => Some(false),
    };
    let mut i = *at;
    while i < bytes.len() && is_separator(i)? {
        i += 1;
    }
    if i == bytes.len() {
        *at = i;
        return Some(None);
    }
    let start = i;
    let (mut has_letter, mut has_symbol) = (false, false);
    while i < bytes.len() && !is_separator(i)? {
        has_letter |= bytes[i].is_ascii_alphabetic();
        has_symbol |= matches!(bytes[i], b'@' | b'$');
        i += 1;
    }
    *at = i;
    if has_symbol && !has_letter {
        return None;
    }
    Some(Some((start..i, has_letter)))
}

/// ASCII lower-casing as a table, for the byte loops above.
const LOWER: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    table
};

/// Lower-casing plus reading letter-like characters as letters, for words with letters.
const AS_LETTERS: [u8; 128] = {
    let mut table = LOWER;
    table[b'0' as usize] = b'o';
    table[b'1' as usize] = b'i';
    table[b'3' as usize] = b'e';
    table[b'4' as usize] = b'a';
    table[b'@' as usize] = b'a';
    table[b'5' as usize] = b's';
    table[b'$' as usize] = b's';
    table[b'!' as usize] = b'i';
    table[b'|' as usize] = b'i';
    table[b'+' as usize] = b't';
    table[b'(' as usize] = b'c';
    table
};

/// The class of each ASCII byte (case does not matter).
const ASCII_CLASS: [Class; 128] = {
    let mut table = [Class::Separator; 128];
    let mut b = 0;
    while b < 128 {
        let c = (b as u8).to_ascii_lowercase();
        table[b] = match c {
            b'a'..=b'z' => Class::Letter,
            b'0' | b'1' | b'3' | b'4' | b'5' | b'@' | b'$' => Class::LetterLike,
            b'!' | b'|' | b'+' | b'(' => Class::Inner,
            b'0'..=b'9' => Class::Digit,
            _ => Class::Separator,
        };
        b += 1;
    }
    table
};

/// Longer gaps between single letters (`a   .   b`) are deliberate spacing, not an evasion.
const MAX_GAP: usize = 3;

fn ascii_class(b: u8) -> Class {
    ASCII_CLASS[usize::from(b & 0x7f)]
}

/// One unit per character of the canonical form, before words are looked at.
fn collect_units(text: &str, units: &mut Vec<Unit>) {
    units.clear();
    if text.is_ascii() {
        // The common case: no decoding, no decomposition.
        units.extend(text.bytes().enumerate().map(|(i, b)| {
            let c = char::from(b.to_ascii_lowercase());
            Unit {
                c,
                start: i as u32,
                end: i as u32 + 1,
                class: classify(c),
            }
        }));
        settle_inner(units);
        return;
    }
    for (offset, c) in text.char_indices() {
        let start = offset as u32;
        let end = (offset + c.len_utf8()) as u32;
        if is_invisible(c) {
            continue;
        }
        decompose_compatible(c, |d| {
            if is_combining_mark(d) {
                return;
            }
            for lower in confusable_capital(d).to_lowercase() {
                let c = confusable(lower);
                units.push(Unit {
                    c,
                    start,
                    end,
                    class: classify(c),
                });
            }
        });
    }
    settle_inner(units);
}

/// Characters that show nothing and split nothing: zero-width spaces and joiners, the word
/// joiner, the byte-order mark, the soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}'
    )
}

/// Settles each [`Class::Inner`] unit: a letter-like character between two letter-ish ones, a
/// separator elsewhere.
fn settle_inner(units: &mut [Unit]) {
    let wordish = |u: &Unit| matches!(u.class, Class::Letter | Class::LetterLike | Class::Digit);
    for i in 0..units.len() {
        if units[i].class != Class::Inner {
            continue;
        }
        let inside = i > 0
            && wordish(&units[i - 1])
            && units
                .get(i + 1)
                .is_some_and(|next| wordish(next) || next.class == Class::Inner);
        units[i].class = if inside {
            Class::LetterLike
        } else {
            Class::Separator
        };
    }
}

fn classify(c: char) -> Class {
    match c {
        c if c.is_ascii() => ascii_class(c as u8),
        c if c.is_alphabetic() => Class::Letter,
        _ => Class::Separator,
    }
}

/// Finds the words (runs of non-separators) and settles their letter-like characters: in a word
/// with a letter they become letters (`h3ll0`); elsewhere digits stay digits and `@ $` are
/// separators. Returns how many words are a single letter.
fn split_words(units: &mut [Unit], words: &mut Vec<Range<usize>>) -> usize {
    words.clear();
    let mut single_letters = 0;
    let mut i = 0;
    while i < units.len() {
        if units[i].class == Class::Separator {
            i += 1;
            continue;
        }
        let start = i;
        let mut has_letter = false;
        while i < units.len() && units[i].class != Class::Separator {
            has_letter |= units[i].class == Class::Letter;
            i += 1;
        }
        for unit in &mut units[start..i] {
            if unit.class != Class::LetterLike {
                continue;
            }
            if has_letter {
                // Letter-like characters are ASCII, so the table covers them.
                unit.c = char::from(AS_LETTERS[usize::from(unit.c as u8 & 0x7f)]);
                unit.class = Class::Letter;
            } else if unit.c.is_ascii_digit() {
                unit.class = Class::Digit;
            } else {
                unit.c = ' ';
                unit.class = Class::Separator;
            }
        }
        // A word of only `@`/`$` turned into separators is no word.
        let span = start..i;
        if units[span.clone()]
            .iter()
            .any(|u| u.class != Class::Separator)
        {
            if span.len() == 1 && units[start].class == Class::Letter {
                single_letters += 1;
            }
            words.push(span);
        }
    }
    single_letters
}

/// Marks the separators between three or more single-letter words (`b.a.d`) to be dropped, and
/// notes in `kept_apart` the gap after a run's first letter where that letter is a word of its
/// own (`a`, `i`) and the rest is still three letters or more.
fn join_single_letters(
    units: &[Unit],
    words: &[Range<usize>],
    joined: &mut [bool],
    kept_apart: &mut Vec<Range<usize>>,
) {
    let single = |w: &Range<usize>| w.len() == 1 && units[w.start].class == Class::Letter;
    let mut i = 0;
    while i < words.len() {
        let mut j = i;
        while j + 1 < words.len()
            && single(&words[j])
            && single(&words[j + 1])
            && words[j + 1].start - words[j].end <= MAX_GAP
        {
            j += 1;
        }
        if j - i + 1 >= 3 {
            for k in i..j {
                for flag in &mut joined[words[k].end..words[k + 1].start] {
                    *flag = true;
                }
            }
            if j - i + 1 >= 4 && matches!(units[words[i].start].c, 'a' | 'i') {
                kept_apart.push(words[i].end..words[i + 1].start);
            }
        }
        i = j + 1;
    }
}

/// Latin look-alikes of capitals from other scripts, checked before lower-casing because some
/// capitals and their small letters look like different Latin letters (Greek `Ν` is N, `ν` is v).
fn confusable_capital(c: char) -> char {
    match c {
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'Ζ' => 'Z',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'С' => 'C',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'У' | 'Υ' => 'Y',
        'Х' | 'Χ' => 'X',
        other => other,
    }
}

/// Latin look-alikes of letters from other scripts, after lower-casing.
fn confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' | 'є' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'һ' => 'h',
        'ԍ' => 'g',
        // Currency and other symbols that stand for letters
        '€' => 'e',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ω' => 'w',
        // Latin letters NFKD leaves alone
        'ı' => 'i',
        'ł' => 'l',
        'ø' => 'o',
        'đ' => 'd',
        'ɡ' => 'g',
        other => other,
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(n("$h1t"), "shit");
        assert_eq!(n("in 2024 at 5"), "in 2024 at 5");
        assert_eq!(n("me @ home"), "me home");
    }

    #[test]
    fn single_letters_are_joined() {
        assert_eq!(n("b.a.d"), "bad");
        assert_eq!(n("b a d idea"), "bad idea");
        assert_eq!(n("s-h-i-t!"), "shit");
        assert_eq!(n("a b"), "a b", "two letters are not a word");
    }

    #[test]
    fn symbols_between_letters_read_as_letters() {
        assert_eq!(n("sh!t"), "shit");
        assert_eq!(n("sh|t"), "shit");
        assert_eq!(n("f+ck"), "ftck");
        assert_eq!(n("(ool"), "ool", "a leading bracket is punctuation");
        assert_eq!(n("what! no|yes"), "what noiyes");
        assert_eq!(n("what!"), "what");
        assert_eq!(n("1+1 (two)"), "1 1 two");
        assert_eq!(n("€vil"), "evil");
        assert_eq!(n("һell"), "hell", "Cyrillic shha");
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
}
