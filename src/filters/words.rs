//! [`WordMatcher`]: many listed words compiled into one matcher over normalised text.
//!
//! Each listed word is normalised like the text it is matched against, then turned into a
//! pattern in which every letter may repeat (`bad` matches `baaaad`, while `ass` still needs two
//! `s`, so the innocent `as` never matches) and `*` stands for any further letters (`heck*`
//! matches `heckin`). Words match whole: `ass` does not match inside `class`. A phrase's words
//! may be separated by any run of spaces or symbols.
//!
//! All words go into one regular expression, so hundreds or thousands of words cost one pass
//! over the line, not one pass per word.

use std::fmt::Write as _;
use std::ops::Range;

use regex::{Regex, RegexBuilder};

use super::normalize::normalize;

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
        let pattern = format!(r"(?-u:\b)(?:{})(?-u:\b)", alternatives.join("|"));
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

    /// The byte ranges of `normalized` text that match a word.
    pub fn find_iter<'a>(&'a self, normalized: &'a str) -> impl Iterator<Item = Range<usize>> + 'a {
        self.regex.find_iter(normalized).map(|m| m.range())
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
            pattern.push_str("[a-z0-9]*");
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

/// Appends `token` with each run of a letter allowed to repeat: `good` → `g+o{2,}d+`; a `u` may
/// also be written `v`.
fn push_repeatable(pattern: &mut String, token: &str) {
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        let mut run = 1;
        while chars.peek() == Some(&c) {
            chars.next();
            run += 1;
        }
        if c == 'u' {
            // `v` stands in for `u` (`fvck`); the other way round would turn innocent words
            // with a `v` into listed ones.
            pattern.push_str("[uv]");
        } else {
            pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
        if run == 1 {
            pattern.push('+');
        } else {
            let _ = write!(pattern, "{{{run},}}");
        }
    }
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
    fn words_without_content_are_errors() {
        let err = WordMatcher::new(&["ok", "***", " "]).unwrap_err();
        assert_eq!(err.iter().map(|b| b.index).collect::<Vec<_>>(), [1, 2]);
        assert!(WordMatcher::new::<&str>(&[]).unwrap().is_none());
    }
}
