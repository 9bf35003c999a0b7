//! [`WordMatcher`]: many listed words compiled into one matcher over normalised text.
//!
//! Each listed word is normalised like the text it is matched against, then turned into a
//! pattern in which every letter may repeat (`bad` matches `baaaad`, while `ass` still needs two
//! `s`, so the innocent `as` never matches) and `*` stands for any further letters (`heck*`
//! matches `heckin`). Words match whole: `ass` does not match inside `class`. A phrase's words
//! may be separated by any run of spaces or symbols.
//!
//! Where the normaliser left a placeholder for a character with two readings (`1` is `i` or
//! `l`), each letter of the pattern also accepts the placeholders that may stand for it, so the
//! text is matched against every reading in the same one pass. A word may start or end with edge
//! marks (`(unt`, `what!`): each is read as its letter where that makes a listed word and as
//! punctuation otherwise, and a match never covers the punctuation (`shit!` masks as `****!`).
//!
//! All words go into one regular expression, so hundreds or thousands of words cost one pass
//! over the line, not one pass per word.

use std::fmt::Write as _;
use std::ops::Range;

use regex::{Regex, RegexBuilder};

use super::normalize::{
    EDGE_C, EDGE_I_L, EDGE_T, EITHER_B_G, EITHER_G_Q, EITHER_I_L, is_edge_mark, normalize,
};

/// Size cap for the compiled word and allow-list automata; a 10,000-word list fits well within it.
const MATCHER_SIZE_LIMIT: usize = 64 * 1024 * 1024;

/// A listed word that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadWord {
    /// Index of the word in the list given.
    pub index: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// Matches any of a list of words in normalised text.
#[derive(Debug, Clone)]
pub struct WordMatcher {
    regex: Regex,
}

impl WordMatcher {
    /// Compiles `words`; `None` when the list is empty.
    ///
    /// # Errors
    /// Every word that normalises to nothing, and a list too large to compile.
    pub fn new<S: AsRef<str>>(words: &[S]) -> Result<Option<WordMatcher>, Vec<BadWord>> {
        let mut alternatives = Vec::with_capacity(words.len());
        let mut bad = Vec::new();
        for (index, word) in words.iter().enumerate() {
            match word_pattern(word.as_ref()) {
                Some(pattern) => alternatives.push(pattern),
                None => bad.push(BadWord {
                    index,
                    problem: format!("`{}` has no letters or digits to match", word.as_ref()),
                }),
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        if alternatives.is_empty() {
            return Ok(None);
        }
        // Longer alternatives first, so `heck*` and `heck` prefer the longer match.
        alternatives.sort_by_key(|p| std::cmp::Reverse(p.len()));
        alternatives.dedup();
        // Edge marks the words themselves do not use are punctuation: outside the group, so
        // never masked. The leading ones are taken lazily, so a word reads as many as it can
        // as letters (`((uunntt` is all word).
        let edges = format!("[{EDGE_C}{EDGE_T}{EDGE_I_L}]*");
        let pattern = format!(
            r"(?-u:\b){edges}?({}){edges}(?-u:\b)",
            alternatives.join("|")
        );
        RegexBuilder::new(&pattern)
            .size_limit(MATCHER_SIZE_LIMIT)
            .dfa_size_limit(MATCHER_SIZE_LIMIT)
            .build()
            .map(|regex| Some(WordMatcher { regex }))
            .map_err(|e| {
                vec![BadWord {
                    index: 0,
                    problem: format!("the word list is too large to compile: {e}"),
                }]
            })
    }

    /// The byte ranges of `normalized` text that match a word (without the edge marks read as
    /// punctuation around it).
    pub fn find_iter<'a>(&'a self, normalized: &'a str) -> impl Iterator<Item = Range<usize>> + 'a {
        self.regex.find_iter(normalized).map(move |m| {
            let range = m.range();
            let bytes = normalized.as_bytes();
            if !is_edge_mark(bytes[range.start]) && !is_edge_mark(bytes[range.end - 1]) {
                return range;
            }
            // Only a match with an edge mark at its ends needs group 1 (the word) worked out,
            // which costs more than finding the match. The match alone is a whole word, so it
            // matches the same way on its own.
            self.regex
                .captures(&normalized[range.clone()])
                .and_then(|c| c.get(1))
                .map_or(range.clone(), |word| {
                    range.start + word.start()..range.start + word.end()
                })
        })
    }

    /// True if any word matches `normalized` text.
    pub fn is_match(&self, normalized: &str) -> bool {
        self.regex.is_match(normalized)
    }
}

/// The pattern for one listed word, or `None` if it has nothing to match.
fn word_pattern(word: &str) -> Option<String> {
    let mut pattern = String::new();
    let mut has_content = false;
    for (i, piece) in word.split('*').enumerate() {
        if i > 0 {
            // Any further letters, including placeholders (not edge marks: `shit*` in `shit!`
            // leaves the `!` as punctuation).
            let _ = write!(pattern, "[a-z0-9{EITHER_I_L}{EITHER_B_G}{EITHER_G_Q}]*");
        }
        let normalized = normalize(piece).text;
        for (j, token) in normalized.split(' ').filter(|t| !t.is_empty()).enumerate() {
            if j > 0 {
                // Words of a phrase: separated by anything non-alphanumeric in the original,
                // which normalisation turned into one space.
                pattern.push(' ');
            }
            has_content = true;
            push_repeatable(&mut pattern, token);
        }
    }
    has_content.then_some(pattern)
}

/// Appends `token` with each run of a letter allowed to repeat: `good` → `g+o{2,}d+`; each
/// letter also accepts the placeholders and edge marks that may stand for it, and a `u` may also
/// be written `v`.
fn push_repeatable(pattern: &mut String, token: &str) {
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        let mut run = 1;
        while chars.peek() == Some(&c) {
            chars.next();
            run += 1;
        }
        match readings(c) {
            Some(class) => pattern.push_str(class),
            None => pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
        if run == 1 {
            pattern.push('+');
        } else {
            let _ = write!(pattern, "{{{run},}}");
        }
    }
}

/// The characters of normalised text that may stand for `c` of a listed word, where there is
/// more than `c` itself. Must agree with the placeholders [`normalize`] writes.
fn readings(c: char) -> Option<&'static str> {
    Some(match c {
        // `v` stands in for `u` (`fvck`); the other way round would turn innocent words with a
        // `v` into listed ones.
        'u' => "[uv]",
        'b' => "[bG]",
        'c' => "[cC]",
        'g' => "[gGQ]",
        'i' => "[iLI]",
        'l' => "[lLI]",
        'q' => "[qQ]",
        't' => "[tT]",
        // Placeholders in a listed word itself (`s1ut`): any of their readings.
        EITHER_I_L | EDGE_I_L => "[ilLI]",
        EITHER_B_G => "[bgGQ]",
        EITHER_G_Q => "[gqGQ]",
        EDGE_C => "[cC]",
        EDGE_T => "[tT]",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(words: &[&str]) -> WordMatcher {
        WordMatcher::new(words).unwrap().unwrap()
    }

    fn hits(m: &WordMatcher, text: &str) -> Vec<String> {
        let n = normalize(text);
        m.find_iter(&n.text)
            .map(|r| text[n.original_range(r)].to_owned())
            .collect()
    }

    #[test]
    fn whole_words_only() {
        let m = matcher(&["ass", "heck"]);
        assert_eq!(hits(&m, "what the heck, ass"), ["heck", "ass"]);
        assert!(hits(&m, "a class of passengers; heckle; as").is_empty());
    }

    #[test]
    fn repeated_letters_and_evasions() {
        let m = matcher(&["bad", "ass"]);
        assert_eq!(hits(&m, "baaaad"), ["baaaad"]);
        assert_eq!(hits(&m, "B.A.D"), ["B.A.D"]);
        assert_eq!(hits(&m, "b4d"), ["b4d"]);
        assert_eq!(hits(&m, "bаd"), ["bаd"], "Cyrillic а");
        assert_eq!(hits(&m, "a$$"), ["a$$"]);
        assert!(hits(&m, "as").is_empty());
        let m = matcher(&["fuck"]);
        assert_eq!(hits(&m, "fvck off"), ["fvck"]);
    }

    #[test]
    fn wildcards_and_phrases() {
        let m = matcher(&["heck*", "*dang", "free v bucks"]);
        assert_eq!(hits(&m, "heckin heck"), ["heckin", "heck"]);
        assert_eq!(hits(&m, "gosh-dang it"), ["dang"]);
        assert_eq!(hits(&m, "superdang"), ["superdang"]);
        assert_eq!(hits(&m, "get FREE  V-bucks"), ["FREE  V-bucks"]);
    }

    #[test]
    fn digits_with_two_readings_match_either_letter() {
        let m = matcher(&["bitch", "slut", "shit*", "nigger", "bullshit", "idiot"]);
        assert_eq!(hits(&m, "8itch"), ["8itch"], "8 for b");
        assert_eq!(hits(&m, "6itch"), ["6itch"], "6 for b");
        assert_eq!(hits(&m, "shi7"), ["shi7"], "7 for t");
        assert_eq!(hits(&m, "ni99er"), ["ni99er"], "9 for g");
        assert_eq!(hits(&m, "s1ut"), ["s1ut"], "1 for l");
        assert_eq!(hits(&m, "sh1t"), ["sh1t"], "1 for i");
        assert_eq!(hits(&m, "s|ut"), ["s|ut"], "| for l");
        assert_eq!(hits(&m, "bu||sh|t"), ["bu||sh|t"]);
        assert_eq!(hits(&m, "bu1lsh!t"), ["bu1lsh!t"]);
    }

    #[test]
    fn symbols_at_a_word_edge_read_as_letters_or_punctuation() {
        let m = matcher(&["cunt", "shit*", "twat", "idiot", "what"]);
        assert_eq!(hits(&m, "(unt"), ["(unt"]);
        assert_eq!(hits(&m, "5h1+"), ["5h1+"]);
        assert_eq!(hits(&m, "+wat"), ["+wat"]);
        assert_eq!(hits(&m, "!diot"), ["!diot"]);
        // As punctuation the symbol is left out of the match, so a mask keeps it.
        assert_eq!(hits(&m, "what!"), ["what"]);
        assert_eq!(hits(&m, "(what)"), ["what"]);
        assert_eq!(hits(&m, "shit! shitting!!"), ["shit", "shitting"]);
        assert_eq!(hits(&m, "it's (unt!"), ["(unt"]);
    }

    #[test]
    fn every_letter_doubled_with_digits_and_symbols() {
        let m = matcher(&["bitch", "cunt", "shit*"]);
        assert_eq!(hits(&m, "88!!77cchh"), ["88!!77cchh"]);
        assert_eq!(hits(&m, "((uunntt"), ["((uunntt"]);
        assert_eq!(hits(&m, "55hh11++"), ["55hh11++"]);
    }

    #[test]
    fn innocent_digits_and_symbols_match_nothing() {
        let m = matcher(&[
            "ass", "bitch", "cock", "cunt", "dick", "fuck*", "shit*", "slut", "spic", "tit", "twat",
        ]);
        for text in [
            "1+1=2",
            "what!",
            "B2B",
            "7 days",
            "route 66",
            "$5.99, 5$ or €5",
            "7:30pm or 9am",
            "v1.2 and v2.0.1-beta on x86_64",
            "a+b = c",
            "C++ (and C)",
            ":( :-) (y) <3 8) o7 :| |: xD",
            "it+ 10|20 a|b|c",
            "hi!!! (see above) cool!",
            "the 80s, 1970s, 4th and 7th",
            "i18n k8s mp3 h264 4x4",
            "as! as+ (as)",
        ] {
            assert!(hits(&m, text).is_empty(), "{text:?}: {:?}", hits(&m, text));
        }
    }

    #[test]
    fn words_without_content_are_errors() {
        let err = WordMatcher::new(&["ok", "***", " "]).unwrap_err();
        assert_eq!(err.iter().map(|b| b.index).collect::<Vec<_>>(), [1, 2]);
        assert!(WordMatcher::new::<&str>(&[]).unwrap().is_none());
    }
}
