//! The filter file format (one TOML file per filter in the filters directory) and its validation.
//!
//! [`FilterFile`] is what the operator wrote; [`FilterFile::build`] turns it into a runnable
//! [`RuleFilter`], collecting every problem (with file, line and column) rather than stopping at
//! the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::RegexBuilder;
use serde::Deserialize;
use toml::Spanned;

use super::rule_filter::{Action, RuleFilter};
use super::rules::{LinkRule, LinksConfig, RepetitionConfig, RepetitionRule, ShoutingConfig};
use super::words::WordMatcher;
use crate::config::line_col;
use crate::event::Role;

/// Size cap for one filter's compiled patterns: a pattern that would compile to more is refused
/// instead of costing every message.
const PATTERN_SIZE_LIMIT: usize = 1024 * 1024;

/// A problem in a filter file (or its words file), with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct FilterError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a filters directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct FilterErrors(pub Vec<FilterError>);

/// What a filter does with a match, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    /// Replace each match with `*`.
    Mask,
    /// Drop the line; tell the sender the filter's message.
    #[default]
    Block,
    /// Drop the line; tell nobody.
    Silent,
    /// Deliver; alert the moderators.
    Warn,
    /// Drop; mute the sender for `mute_for`.
    Mute,
    /// Drop; disconnect the sender.
    Kick,
    /// Hold for a moderator to approve or deny.
    Hold,
}

/// One filter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterFile {
    /// What the filter is for.
    #[serde(default)]
    pub description: String,
    /// `false` keeps the filter (and its tests) but does not run it on messages.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// What to do with a match; `block` when absent.
    pub action: Option<Spanned<ActionName>>,
    /// What the sender is told (block, mute, kick).
    pub message: Option<String>,
    /// How long a `mute` lasts.
    #[serde(default, with = "humantime_serde::option")]
    pub mute_for: Option<Duration>,
    /// Senders with these roles are not judged by this filter.
    #[serde(default)]
    pub exempt_roles: Vec<Role>,
    /// Lines sent to these rooms are not judged by this filter (whatever room the sender joined
    /// last; a private message is in no room, so it is always judged).
    #[serde(default)]
    pub exempt_rooms: Vec<String>,
    /// Words and phrases, matched whole and evasion-resistant; `*` is a wildcard.
    #[serde(default)]
    pub words: Vec<Spanned<String>>,
    /// A file of further words, one a line, `#` starting a comment; relative to this file.
    pub words_file: Option<Spanned<String>>,
    /// Regular expressions, case-insensitive, matched against the text as written.
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    /// Phrases that never match, whatever the rules say.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Link detection.
    pub links: Option<Spanned<LinksConfig>>,
    /// Shouting detection.
    pub shouting: Option<Spanned<ShoutingConfig>>,
    /// Repetition detection.
    pub repetition: Option<Spanned<RepetitionConfig>>,
    /// Fixture tests of this filter alone.
    #[serde(default)]
    pub test: Vec<Spanned<FilterTest>>,
    /// Fixture tests of the whole chain: every enabled filter of the directory, in order, as
    /// the server runs them (for interactions, such as one file's mask and another's block).
    #[serde(default)]
    pub chain_test: Vec<Spanned<FilterTest>>,
}

fn enabled_by_default() -> bool {
    true
}

/// A `[[test]]` of a filter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterTest {
    /// The line sent.
    pub input: String,
    /// The delivered text, or `blocked`, `held`, `silent`, `muted`, `kicked`, `warned`.
    pub expect: String,
    /// The sender's name (default `tester`).
    pub sender: Option<String>,
    /// The sender's role (default `user`).
    pub role: Option<Role>,
    /// The room the line is sent to (default `lobby`).
    pub room: Option<String>,
    /// A private message rather than a line to a room: in no room, so no `exempt_rooms`
    /// applies (`room` is then only where the sender is).
    #[serde(default)]
    pub private: bool,
    /// Send the input this many times (for repetition rules); the last one is checked.
    #[serde(default = "once")]
    pub repeat: usize,
}

fn once() -> usize {
    1
}

/// A filter file, loaded and built.
#[derive(Debug, Clone)]
pub struct LoadedFilter {
    /// The file stem.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// What it is for.
    pub description: String,
    /// Whether it runs on messages.
    pub enabled: bool,
    /// The runnable filter.
    pub filter: Arc<RuleFilter>,
    /// The fixture tests with their line numbers.
    pub tests: Vec<(usize, FilterTest)>,
    /// The whole-chain fixture tests with their line numbers.
    pub chain_tests: Vec<(usize, FilterTest)>,
}

/// Collects problems with positions in one file.
struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    found: Vec<FilterError>,
}

impl Problems<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.found.push(FilterError {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }
}

impl FilterFile {
    /// Parses and builds the filter in `path` whose contents are `text`.
    ///
    /// # Errors
    /// Every problem in the file and its words file.
    pub fn load(path: &Path, text: &str) -> Result<LoadedFilter, Vec<FilterError>> {
        let file: FilterFile = toml::from_str(text).map_err(|e| {
            let (line, column, message) = crate::config::toml_error_position(text, &e);
            vec![FilterError {
                path: path.to_owned(),
                line,
                column,
                message,
            }]
        })?;
        file.build(path, text)
    }

    /// Builds the runnable filter. `text` is the file's contents, for positions.
    ///
    /// # Errors
    /// Every problem found.
    pub fn build(self, path: &Path, text: &str) -> Result<LoadedFilter, Vec<FilterError>> {
        let name = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let mut problems = Problems {
            path,
            text,
            found: Vec::new(),
        };
        let action = self.action(&name, &mut problems);
        let words = self.words(path, &mut problems);
        let allow = self.allow(&mut problems);
        let patterns = self.patterns(&mut problems);
        if let Some(shouting) = &self.shouting {
            for problem in shouting.get_ref().problems() {
                problems.at(shouting.span(), format!("[shouting] {problem}"));
            }
        }
        if let Some(repetition) = &self.repetition {
            for problem in repetition.get_ref().problems() {
                problems.at(repetition.span(), format!("[repetition] {problem}"));
            }
        }
        let has_rule = words.is_some()
            || patterns.is_some()
            || self.links.is_some()
            || self.shouting.is_some()
            || self.repetition.is_some();
        if !has_rule && problems.found.is_empty() {
            problems.at(
                0..0,
                "the filter has no rules: give words, words_file, patterns, [links], [shouting] or [repetition]",
            );
        }
        for test in self.test.iter().chain(&self.chain_test) {
            if test.get_ref().repeat == 0 {
                problems.at(test.span(), "repeat must be at least 1");
            }
        }
        if !problems.found.is_empty() {
            return Err(problems.found);
        }
        let filter = RuleFilter {
            name: name.clone(),
            action,
            exempt_roles: self.exempt_roles,
            exempt_rooms: self.exempt_rooms,
            words,
            allow,
            patterns,
            links: self.links.map(|l| LinkRule::new(l.get_ref())),
            shouting: self.shouting.map(Spanned::into_inner),
            repetition: self.repetition.map(|r| RepetitionRule::new(r.into_inner())),
        };
        let with_lines = |tests: Vec<Spanned<FilterTest>>| {
            tests
                .into_iter()
                .map(|t| (line_col(text, t.span().start).0, t.into_inner()))
                .collect()
        };
        let tests = with_lines(self.test);
        let chain_tests = with_lines(self.chain_test);
        Ok(LoadedFilter {
            name,
            path: path.to_owned(),
            description: self.description,
            enabled: self.enabled,
            filter: Arc::new(filter),
            tests,
            chain_tests,
        })
    }

    fn action(&self, name: &str, problems: &mut Problems<'_>) -> Action {
        let (kind, span) = self
            .action
            .as_ref()
            .map_or((ActionName::default(), 0..0), |a| (*a.get_ref(), a.span()));
        let message = |default: String| self.message.clone().unwrap_or(default);
        match kind {
            ActionName::Mask => Action::Mask,
            ActionName::Block => Action::Block(message(format!(
                "Your message was blocked by the {name} filter."
            ))),
            ActionName::Silent => Action::Silent,
            ActionName::Warn => Action::Warn,
            ActionName::Mute => {
                let duration = self.mute_for.unwrap_or_else(|| {
                    problems.at(span, "action = \"mute\" needs mute_for, e.g. \"5m\"");
                    Duration::ZERO
                });
                let shown = humantime::format_duration(duration);
                Action::Mute(
                    duration,
                    message(format!(
                        "You have been muted for {shown} by the {name} filter."
                    )),
                )
            }
            ActionName::Hold => Action::Hold,
            ActionName::Kick => Action::Kick(message(format!(
                "You have been removed by the {name} filter."
            ))),
        }
    }

    fn words(&self, path: &Path, problems: &mut Problems<'_>) -> Option<WordMatcher> {
        // Each word with where it came from: a span in this file, or a line of the words file.
        let mut words: Vec<String> = self.words.iter().map(|w| w.get_ref().clone()).collect();
        let mut file_lines: Vec<(PathBuf, usize)> = Vec::new();
        if let Some(file) = &self.words_file {
            let words_path = path.parent().unwrap_or(Path::new(".")).join(file.get_ref());
            match std::fs::read_to_string(&words_path) {
                Ok(contents) => {
                    for (index, line) in contents.lines().enumerate() {
                        let word = line.split('#').next().unwrap_or("").trim();
                        if !word.is_empty() {
                            words.push(word.to_owned());
                            file_lines.push((words_path.clone(), index + 1));
                        }
                    }
                }
                Err(e) => problems.at(
                    file.span(),
                    format!("cannot read words_file {}: {e}", words_path.display()),
                ),
            }
        }
        let inline = self.words.len();
        match WordMatcher::new(&words) {
            Ok(matcher) => matcher,
            Err(bad) => {
                for word in bad {
                    if word.index < inline {
                        problems.at(self.words[word.index].span(), word.problem);
                    } else {
                        let (file, line) = &file_lines[word.index - inline];
                        problems.found.push(FilterError {
                            path: file.clone(),
                            line: *line,
                            column: 1,
                            message: word.problem,
                        });
                    }
                }
                None
            }
        }
    }

    fn allow(&self, problems: &mut Problems<'_>) -> Option<WordMatcher> {
        let phrases: Vec<&str> = self.allow.iter().map(|a| a.get_ref().as_str()).collect();
        WordMatcher::new(&phrases).unwrap_or_else(|bad| {
            for phrase in bad {
                problems.at(self.allow[phrase.index].span(), phrase.problem);
            }
            None
        })
    }

    fn patterns(&self, problems: &mut Problems<'_>) -> Option<regex::Regex> {
        let compile = |pattern: &str| {
            RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
        };
        let mut valid = Vec::new();
        for pattern in &self.patterns {
            match compile(pattern.get_ref()) {
                Ok(_) => valid.push(format!("(?:{})", pattern.get_ref())),
                Err(e) => problems.at(pattern.span(), format!("bad pattern: {}", one_line(&e))),
            }
        }
        if valid.is_empty() || valid.len() < self.patterns.len() {
            return None;
        }
        match compile(&valid.join("|")) {
            Ok(regex) => Some(regex),
            Err(e) => {
                let message = format!("patterns too large together: {}", one_line(&e));
                problems.at(self.patterns[0].span(), message);
                None
            }
        }
    }
}

/// A multi-line error message (the regex crate draws a caret under the fault) on one line.
fn one_line(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "^")
        .collect::<Vec<_>>()
        .join(" ")
}
