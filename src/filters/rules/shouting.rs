//! Shouting: a line with enough letters, most of them capitals.

use serde::Deserialize;

/// `[shouting]` in a filter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShoutingConfig {
    /// Lines with fewer letters are never shouting ("OK", "LOL").
    pub min_letters: usize,
    /// Share of capitals among the letters above which a line is shouting (0.0–1.0).
    pub max_caps_ratio: f64,
}

impl Default for ShoutingConfig {
    fn default() -> Self {
        ShoutingConfig {
            min_letters: 10,
            max_caps_ratio: 0.7,
        }
    }
}

impl ShoutingConfig {
    /// True when `text` is shouting.
    pub fn is_shouting(&self, text: &str) -> bool {
        if text.len() < self.min_letters {
            return false;
        }
        let (mut letters, mut capitals) = (0usize, 0usize);
        if text.is_ascii() {
            for b in text.bytes() {
                letters += usize::from(b.is_ascii_alphabetic());
                capitals += usize::from(b.is_ascii_uppercase());
            }
        } else {
            for c in text.chars().filter(|c| c.is_alphabetic()) {
                letters += 1;
                capitals += usize::from(c.is_uppercase());
            }
        }
        letters >= self.min_letters && capitals as f64 > self.max_caps_ratio * letters as f64
    }

    /// Problems with the values, if any.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.max_caps_ratio) {
            problems.push("max_caps_ratio must be between 0.0 and 1.0".to_owned());
        }
        if self.min_letters == 0 {
            problems.push("min_letters must be at least 1".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_capital_lines_are_shouting() {
        let rule = ShoutingConfig::default();
        assert!(rule.is_shouting("WHY IS NOBODY ANSWERING ME"));
        assert!(!rule.is_shouting("OK LOL"), "too short");
        assert!(!rule.is_shouting("I met NASA and the FBI at the UN today"));
    }
}
