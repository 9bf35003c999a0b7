//! Running the `[[test]]` fixtures of filter files (`chatpipe test-filters DIR`).
//!
//! A `[[test]]` checks its filter alone: the input is judged by a chain holding only that filter,
//! as a line from a sender with the test's name and role to the test's room (or as a private
//! message), and the outcome compared with `expect`. A
//! `[[chain_test]]` (in any file) is judged by the whole chain of enabled filters, in order, as
//! the server runs them.

use std::path::PathBuf;
use std::sync::Arc;

use super::chain::{FilterChain, Judgement};
use super::file::{FilterTest, LoadedFilter};
use super::filter::{Filter, Message};
use crate::event::{ClientId, ClientInfo};

/// One failed fixture test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// The filter file.
    pub path: PathBuf,
    /// The line of the `[[test]]`.
    pub line: usize,
    /// The input.
    pub input: String,
    /// What the test expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// Which filters made it happen: the one whose verdict won, with its file (`20-profanity
    /// (filters/20-profanity.toml)`), or those that rewrote a delivered line; `None` when no
    /// filter acted.
    pub decided_by: Option<String>,
}

impl std::fmt::Display for TestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: input {:?}\n  expected: {:?}\n  actual:   {:?}",
            self.path.display(),
            self.line,
            self.input,
            self.expected,
            self.actual
        )?;
        if let Some(by) = &self.decided_by {
            write!(f, "\n  decided:  {by}")?;
        }
        Ok(())
    }
}

/// The result of running fixture tests.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failures: Vec<TestFailure>,
}

/// Runs every fixture test of every filter (enabled or not), then every chain test against the
/// enabled filters.
pub fn run_fixture_tests(filters: &[LoadedFilter]) -> TestReport {
    let mut report = TestReport::default();
    let mut next_client = 0;
    let whole = FilterChain::new(
        filters
            .iter()
            .filter(|f| f.enabled)
            .map(|f| f.filter.clone() as Arc<dyn Filter>)
            .collect(),
    );
    // A filter's name with its file, so a failing chain test says which file's verdict won.
    let named = |name: &str| match filters.iter().find(|f| f.name == name) {
        Some(loaded) => format!("{name} ({})", loaded.path.display()),
        None => name.to_owned(),
    };
    for loaded in filters {
        let alone = FilterChain::new(vec![loaded.filter.clone() as Arc<dyn Filter>]);
        let suites = [(&alone, &loaded.tests), (&whole, &loaded.chain_tests)];
        for (chain, tests) in suites {
            for (line, test) in tests {
                // A client of its own per test, so rules with memory start fresh.
                next_client += 1;
                let (actual, judgement) = outcome(chain, test, ClientId(next_client));
                if actual == test.expect {
                    report.passed += 1;
                } else {
                    report.failures.push(TestFailure {
                        path: loaded.path.clone(),
                        line: *line,
                        input: test.input.clone(),
                        expected: test.expect.clone(),
                        actual,
                        decided_by: decided_by(&judgement, &named),
                    });
                }
            }
        }
    }
    report
}

/// The filters behind a judgement, each shown by `named`: the one whose verdict won, else those
/// that rewrote the line, else those that warned.
fn decided_by(judgement: &Judgement, named: &dyn Fn(&str) -> String) -> Option<String> {
    if let Some(filter) = judgement.outcome.filter() {
        let verdict = judgement.outcome.as_expectation();
        return Some(format!("{verdict} by {}", named(filter)));
    }
    let list = |filters: Vec<&str>| filters.into_iter().map(named).collect::<Vec<_>>();
    if !judgement.rewritten_by.is_empty() {
        let rewriters = list(judgement.rewritten_by.iter().map(String::as_str).collect());
        return Some(format!("rewritten by {}", rewriters.join(", ")));
    }
    if !judgement.warnings.is_empty() {
        let warners = list(judgement.warnings.iter().map(|(f, _)| f.as_str()).collect());
        return Some(format!("warned by {}", warners.join(", ")));
    }
    None
}

/// What `chain` did with `test`'s input, as the fixture words it, and the judgement itself.
fn outcome(chain: &FilterChain, test: &FilterTest, client: ClientId) -> (String, Judgement) {
    let sender = ClientInfo {
        name: Arc::from(test.sender.as_deref().unwrap_or("tester")),
        room: Arc::from(test.room.as_deref().unwrap_or("lobby")),
        role: test.role.unwrap_or_default(),
    };
    let room = (!test.private).then_some(&*sender.room);
    let message =
        Message::new(&test.input, &sender, client, tokio::time::Instant::now()).in_room(room);
    let mut judged = chain.judge(&message);
    for _ in 1..test.repeat {
        judged = chain.judge(&message);
    }
    let actual = if test.expect == "warned" && !judged.warnings.is_empty() {
        "warned".to_owned()
    } else {
        judged.outcome.as_expectation().to_owned()
    };
    (actual, judged)
}
