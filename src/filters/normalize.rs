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
//!   number alone stays a number;
//! - three or more single letters separated by spaces or symbols are joined (`b.a.d`, `b a d`);
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
    /// For each byte of `text`, the byte range of the original character that produced it.
    origin: Vec<(u32, u32)>,
}

impl Normalized {
    /// The original byte range behind `range` of the canonical text.
    pub fn original_range(&self, range: Range<usize>) -> Range<usize> {
        if range.is_empty() || range.end > self.origin.len() {
            return 0..0;
        }
        let start = self.origin[range.start].0 as usize;
        let end = self.origin[range.end - 1].1 as usize;
        start..end
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    /// A digit or symbol that reads as a letter inside a word.
    LetterLike,
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

/// Normalises `text`. See the module documentation.
pub fn normalize(text: &str) -> Normalized {
    let mut units = Vec::with_capacity(text.len());
    for (offset, c) in text.char_indices() {
        let start = offset as u32;
        let end = (offset + c.len_utf8()) as u32;
        if c.is_ascii() {
            let c = c.to_ascii_lowercase();
            units.push(Unit {
                c,
                start,
                end,
                class: classify(c),
            });
        } else {
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
    let words = word_spans(&units);
    read_letter_likes(&mut units, &words);
    let joined = joined_separators(&units, &words);

    let mut out = Normalized {
        text: String::with_capacity(units.len()),
        origin: Vec::with_capacity(units.len()),
    };
    let mut last_was_space = true;
    for (i, unit) in units.iter().enumerate() {
        let c = if unit.class == Class::Separator {
            if joined[i] || last_was_space {
                continue;
            }
            ' '
        } else {
            unit.c
        };
        last_was_space = c == ' ';
        out.text.push(c);
        for _ in 0..c.len_utf8() {
            out.origin.push((unit.start, unit.end));
        }
    }
    if out.text.ends_with(' ') {
        out.text.pop();
        out.origin.pop();
    }
    out
}

fn classify(c: char) -> Class {
    match c {
        '0' | '1' | '3' | '4' | '5' | '@' | '$' => Class::LetterLike,
        c if c.is_ascii_digit() => Class::Digit,
        c if c.is_alphabetic() => Class::Letter,
        _ => Class::Separator,
    }
}

/// Runs of non-separators, as index ranges into `units`.
fn word_spans(units: &[Unit]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, unit) in units.iter().enumerate() {
        match (unit.class == Class::Separator, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push(s..units.len());
    }
    spans
}

/// In words that contain a letter, letter-like characters become letters; elsewhere `@`, `$` are
/// separators and digits stay digits.
fn read_letter_likes(units: &mut [Unit], words: &[Range<usize>]) {
    for word in words {
        let has_letter = units[word.clone()].iter().any(|u| u.class == Class::Letter);
        for unit in &mut units[word.clone()] {
            if unit.class != Class::LetterLike {
                continue;
            }
            if has_letter {
                unit.c = match unit.c {
                    '0' => 'o',
                    '1' => 'i',
                    '3' => 'e',
                    '4' | '@' => 'a',
                    '5' | '$' => 's',
                    other => other,
                };
                unit.class = Class::Letter;
            } else if unit.c.is_ascii_digit() {
                unit.class = Class::Digit;
            } else {
                unit.c = ' ';
                unit.class = Class::Separator;
            }
        }
    }
}

/// Marks the separators between three or more single-letter words (`b.a.d`) to be dropped.
fn joined_separators(units: &[Unit], words: &[Range<usize>]) -> Vec<bool> {
    /// Longer gaps (`a   .   b`) are deliberate spacing, not an evasion.
    const MAX_GAP: usize = 3;
    let mut joined = vec![false; units.len()];
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
        }
        i = j + 1;
    }
    joined
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
    fn separators_collapse() {
        assert_eq!(n("  what...the   heck?! "), "what the heck");
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
