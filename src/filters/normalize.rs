//! Evasion-resistant normalisation of chat text for word matching.
//!
//! [`normalize`] maps a line to a canonical form in which people's tricks to slip a word past a
//! filter disappear, and remembers for every byte of the canonical form which bytes of the
//! original produced it, so a match can be masked in the original text:
//!
//! - case is folded, and compatibility forms and accents are removed (Unicode NFKD without
//!   combining marks: `Ｆ`, `é`, `𝐟` become `f`, `e`, `f`);
//! - confusable letters from other scripts become their Latin look-alikes (Cyrillic `а`, Greek `ο`);
//! - inside a word that has letters, digits and `@ $` read as letters (`h3ll0`, `8itch`,
//!   `shi7`), while a number alone stays a number (`7 days`, `B2B` keeps its `2`); `€` reads as
//!   `e`;
//! - between two letter-ish characters, `! | + (` read as letters too (`sh!t`, `bi+ch`, `di(k`);
//! - a character that may stand for more than one letter is written as a capital placeholder the
//!   word matcher reads either way: [`EITHER_I_L`] for `1 | !` (`sh1t`, `s|ut`), [`EITHER_B_G`]
//!   for `6`, [`EITHER_G_Q`] for `9`;
//! - `! | + (` at the start or end of a word with letters may be punctuation (`what!`) or a
//!   letter (`(unt`, `5h1+`): they become [edge marks](is_edge_mark), which the word matcher
//!   reads as the letter or as nothing, whichever makes a listed word;
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

mod tables;

use tables::{AS_LETTERS, ASCII_CLASS, EDGE_MARKS, confusable, confusable_capital};

/// A canonical form of a line and the way back to the original.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    /// The canonical text: lower-case letters, digits, single spaces between words, and the
    /// capital placeholders and edge marks for characters with more than one reading
    /// ([`EITHER_I_L`] and the rest).
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

/// Placeholder in the canonical text for a character that reads as `i` or `l` (`1`, and `|` or
/// `!` inside a word). Capitals never occur in the canonical text otherwise.
pub const EITHER_I_L: char = 'L';
/// Placeholder for a character that reads as `b` or `g` (`6`).
pub const EITHER_B_G: char = 'G';
/// Placeholder for a character that reads as `g` or `q` (`9`).
pub const EITHER_G_Q: char = 'Q';
/// Edge mark for `(` at a word's edge: `c` or nothing.
pub const EDGE_C: char = 'C';
/// Edge mark for `+` at a word's edge: `t` or nothing.
pub const EDGE_T: char = 'T';
/// Edge mark for `!` or `|` at a word's edge: `i`, `l` or nothing.
pub const EDGE_I_L: char = 'I';

/// Whether `b`, a byte of canonical text, is an edge mark: a symbol at a word's start or end
/// that may be punctuation (`what!`) or a letter (`(unt`). Whoever compares lines by their
/// canonical text and wants `what!` to be `what` skips these.
pub fn is_edge_mark(b: u8) -> bool {
    matches!(char::from(b), EDGE_C | EDGE_T | EDGE_I_L)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    /// A digit or symbol that reads as a letter anywhere in a word with letters.
    LetterLike,
    /// A symbol (`! | + (`) that reads as a letter between two letter-ish characters (`sh!t`),
    /// is an edge mark at the start or end of a word with letters (`what!`, `(unt`), and a
    /// separator anywhere else.
    Inner,
    /// A digit that is not letter-like.
    Digit,
    /// An [`Class::Inner`] symbol settled at a word's edge: emitted as an edge mark.
    Edge,
    Separator,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    c: char,
    start: u32,
    end: u32,
    class: Class,
}

/// One word of an ASCII line: `span` is what the canonical text holds of it (edge marks
/// included), `core` runs from its first to its last letter-ish byte.
#[derive(Debug, Clone)]
struct AsciiWord {
    span: Range<usize>,
    core: Range<usize>,
    has_letter: bool,
}

impl AsciiWord {
    fn is_single_letter(&self) -> bool {
        self.has_letter && self.core.len() == 1
    }
}

/// Working buffers reused across calls on one thread: normalisation runs for every message, and
/// three allocations per message were a measurable share of a filter's cost.
#[derive(Default)]
struct Scratch {
    units: Vec<Unit>,
    words: Vec<Range<usize>>,
    joined: Vec<bool>,
    /// ASCII path: the words.
    ascii_words: Vec<AsciiWord>,
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
/// per-byte bookkeeping. `None` for the rare input it leaves to the general path (see
/// [`next_ascii_word`], and a run of spaced letters starting with `a` or `i`).
fn normalize_ascii(bytes: &[u8], scratch: &mut Scratch) -> Option<Normalized> {
    let Scratch {
        ascii_words: words,
        joined,
        ..
    } = scratch;
    words.clear();
    let mut single_letters = 0;
    let mut i = 0;
    while let Some(word) = next_ascii_word(bytes, &mut i)? {
        single_letters += usize::from(word.is_single_letter());
        words.push(word);
    }
    // Gaps between words that are dropped (`b.a.d`); gap k lies between word k and k + 1.
    joined.clear();
    joined.resize(words.len(), false);
    if single_letters >= 3 {
        let single = |k: usize| words[k].is_single_letter();
        let mut k = 0;
        while k < words.len() {
            let mut j = k;
            while j + 1 < words.len()
                && single(j)
                && single(j + 1)
                && words[j + 1].span.start - words[j].span.end <= MAX_GAP
            {
                j += 1;
            }
            if j - k + 1 >= 3 {
                if j - k + 1 >= 4 && matches!(bytes[words[k].core.start] | 0x20, b'a' | b'i') {
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
            jump_check(&text, words[k - 1].span.end, 1);
            text.push(b' ');
        }
        jump_check(&text, word.span.start, word.span.len());
        push_ascii_word(&mut text, bytes, word);
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
    while let Some(word) = next_ascii_word(bytes, &mut i)? {
        if word.is_single_letter() {
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
        jump_check(text.len(), word.span.start, word.span.len());
        push_ascii_word(&mut text, bytes, &word);
        previous_end = Some(word.span.end);
    }
    // Only ASCII bytes were written, so this cannot fail.
    let text = String::from_utf8(text).unwrap_or_default();
    Some(Normalized {
        text,
        origin: Origin::Runs(runs),
        alternative: None,
    })
}

/// Appends the canonical form of one ASCII word: edge marks, then its core read as letters (or,
/// in a number, lower-cased: a number's core holds only digits).
fn push_ascii_word(text: &mut Vec<u8>, bytes: &[u8], word: &AsciiWord) {
    if !word.has_letter {
        text.extend_from_slice(&bytes[word.span.clone()]);
        return;
    }
    let edge = |b: &u8| EDGE_MARKS[usize::from(*b)];
    text.extend(bytes[word.span.start..word.core.start].iter().map(edge));
    text.extend(
        bytes[word.core.clone()]
            .iter()
            .map(|&b| AS_LETTERS[usize::from(b)]),
    );
    text.extend(bytes[word.core.end..word.span.end].iter().map(edge));
}

/// The next word of ASCII `bytes` at or after `*at` (moving `*at` past it); `Some(None)` when
/// there are no more words. A word is a run of letters, digits and the symbols `@ $ ! | + (`
/// with at least one letter or digit; in a number (no letter) the symbols at its edges are
/// separators and it is the digits between. `None` for what only the general path reads: a
/// number with a symbol inside (`1+1`, `10|20`, `5$5`), which the symbols split.
fn next_ascii_word(bytes: &[u8], at: &mut usize) -> Option<Option<AsciiWord>> {
    let mut i = *at;
    loop {
        while i < bytes.len() && ascii_class(bytes[i]) == Class::Separator {
            i += 1;
        }
        if i == bytes.len() {
            *at = i;
            return Some(None);
        }
        let start = i;
        let mut core: Option<Range<usize>> = None;
        let mut has_letter = false;
        while i < bytes.len() {
            match ascii_class(bytes[i]) {
                Class::Separator => break,
                Class::Inner => {}
                class => {
                    has_letter |= class == Class::Letter;
                    match &mut core {
                        Some(core) => core.end = i + 1,
                        None => core = Some(i..i + 1),
                    }
                }
            }
            i += 1;
        }
        // A run of symbols alone (`!!!`, ` + `) is separators: look further.
        let Some(core) = core else { continue };
        *at = i;
        if has_letter {
            return Some(Some(AsciiWord {
                span: start..i,
                core,
                has_letter,
            }));
        }
        if !bytes[core.clone()].iter().all(u8::is_ascii_digit) {
            return None;
        }
        return Some(Some(AsciiWord {
            span: core.clone(),
            core,
            has_letter,
        }));
    }
}

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
}

/// Characters that show nothing and split nothing: zero-width spaces and joiners, the word
/// joiner, the byte-order mark, the soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{00ad}'
    )
}

fn classify(c: char) -> Class {
    match c {
        c if c.is_ascii() => ascii_class(c as u8),
        c if c.is_alphabetic() => Class::Letter,
        _ => Class::Separator,
    }
}

/// Finds the words (runs of non-separators with a letter-ish character) and settles their
/// characters. In a word with a letter, letter-like characters and symbols inside become
/// letters (`h3ll0`, `sh!t`) and symbols at its edges become edge marks (`what!`, `(unt`); in a
/// number, digits stay digits and symbols are separators. Returns how many words are a single
/// letter (edge marks aside: `t!` is one).
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
        let mut core: Option<Range<usize>> = None;
        while i < units.len() && units[i].class != Class::Separator {
            if units[i].class != Class::Inner {
                has_letter |= units[i].class == Class::Letter;
                match &mut core {
                    Some(core) => core.end = i + 1,
                    None => core = Some(i..i + 1),
                }
            }
            i += 1;
        }
        let Some(core) = core else {
            // Symbols alone are separators.
            for unit in &mut units[start..i] {
                unit.class = Class::Separator;
            }
            continue;
        };
        for (k, unit) in units[start..i].iter_mut().enumerate() {
            let at_edge = !core.contains(&(start + k));
            match unit.class {
                Class::Inner if has_letter && at_edge => {
                    unit.c = char::from(EDGE_MARKS[usize::from(unit.c as u8 & 0x7f)]);
                    unit.class = Class::Edge;
                }
                Class::LetterLike | Class::Inner if has_letter => {
                    // Letter-like characters are ASCII, so the table covers them.
                    unit.c = char::from(AS_LETTERS[usize::from(unit.c as u8 & 0x7f)]);
                    unit.class = Class::Letter;
                }
                Class::LetterLike if unit.c.is_ascii_digit() => unit.class = Class::Digit,
                Class::LetterLike | Class::Inner => {
                    unit.c = ' ';
                    unit.class = Class::Separator;
                }
                _ => {}
            }
        }
        if core.len() == 1 && units[core.start].class == Class::Letter {
            single_letters += 1;
        }
        // A number's word is its digits; the symbols at its edges are separators now.
        words.push(if has_letter { start..i } else { core });
    }
    single_letters
}

/// The unit a word's letters start at: past its leading edge marks.
fn first_letter(units: &[Unit], word: &Range<usize>) -> usize {
    units[word.clone()]
        .iter()
        .position(|u| u.class != Class::Edge)
        .map_or(word.start, |k| word.start + k)
}

/// Whether a word is one letter, edge marks aside.
fn is_single_letter(units: &[Unit], word: &Range<usize>) -> bool {
    let mut core = units[word.clone()]
        .iter()
        .filter(|u| u.class != Class::Edge);
    matches!(core.next(), Some(u) if u.class == Class::Letter) && core.next().is_none()
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
    let single = |w: &Range<usize>| is_single_letter(units, w);
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
            if j - i + 1 >= 4 && matches!(units[first_letter(units, &words[i])].c, 'a' | 'i') {
                kept_apart.push(words[i].end..words[i + 1].start);
            }
        }
        i = j + 1;
    }
}

#[cfg(test)]
mod tests;
