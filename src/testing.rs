//! Stream fixtures: run a stage, a filter or the whole pipeline without sockets.
//!
//! A fixture is a list of lines `NAME> TEXT`, each optionally preceded by a time offset from the
//! previous line (`+200ms alice> hi`). [`Fixture::stream`] yields the lines as raw
//! [`Body::Line`] events at their times, so under a paused tokio clock
//! (`#[tokio::test(start_paused = true)]`) a fixture spanning minutes runs in milliseconds and a
//! time-based stage sees exactly the timing written down. `NAME> /quit` is an ordinary line;
//! `NAME left` (no `>`) makes the client leave.
//!
//! ```
//! use chatpipe::pipeline::ParseStage;
//! use chatpipe::testing::{Fixture, describe, run_stage};
//!
//! # tokio_test_block_on(async {
//! let fixture = Fixture::parse("alice> hello\n+1s bob> /me waves\n").unwrap();
//! let out = run_stage(ParseStage, fixture.stream()).await;
//! let shown: Vec<String> = out.iter().map(describe).collect();
//! assert_eq!(shown, ["alice: hello", "* bob waves"]);
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true)
//! #         .build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::event::{Body, Client, ClientId, ClientInfo, Command, Event, Role, SanctionKind};
use crate::filters::{Filter, Message, Verdict};
use crate::pipeline::{EventStream, Pipeline, Stage, StageContext};

/// A fixture line that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `[+OFFSET] NAME> TEXT` or `[+OFFSET] NAME left`.
    #[error("fixture line {line}: {problem}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// One step of a fixture.
#[derive(Debug, Clone)]
pub struct Step {
    /// Time since the fixture started.
    pub at: Duration,
    /// Who.
    pub sender: String,
    /// A raw line, or [`Body::Left`].
    pub body: Body,
}

/// A parsed fixture: its steps and one [`Client`] per sender name.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    steps: Vec<Step>,
    clients: HashMap<String, Arc<Client>>,
}

impl Fixture {
    /// Parses fixture text. Blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    /// [`FixtureError::Syntax`] with the line number.
    pub fn parse(text: &str) -> Result<Fixture, FixtureError> {
        let mut fixture = Fixture::default();
        let mut at = Duration::ZERO;
        for (index, raw) in text.lines().enumerate() {
            let syntax = |problem: String| FixtureError::Syntax {
                line: index + 1,
                problem,
            };
            let mut line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('+') {
                let (offset, rest) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| syntax("an offset must be followed by a line".into()))?;
                at += humantime::parse_duration(offset)
                    .map_err(|e| syntax(format!("bad offset `+{offset}`: {e}")))?;
                line = rest.trim_start();
            }
            let (sender, body) = if let Some((name, text)) = line.split_once("> ") {
                (name, Body::Line(text.to_owned()))
            } else if let Some(name) = line.strip_suffix(" left") {
                (name, Body::Left("fixture".to_owned()))
            } else if let Some(name) = line.strip_suffix('>') {
                (name, Body::Line(String::new()))
            } else {
                return Err(syntax(format!(
                    "expected `NAME> TEXT` or `NAME left`, got `{raw}`"
                )));
            };
            fixture.client(sender);
            fixture.steps.push(Step {
                at,
                sender: sender.to_owned(),
                body,
            });
        }
        Ok(fixture)
    }

    /// Parses fixture lines given as a list, one step each (`["alice> hi", "+1s bob left"]`).
    ///
    /// # Errors
    /// [`FixtureError::Syntax`] with the position in the list (1-based).
    pub fn from_lines<S: AsRef<str>>(lines: &[S]) -> Result<Fixture, FixtureError> {
        let text: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
        Fixture::parse(&text.join("\n"))
    }

    /// Reads and parses a fixture file.
    ///
    /// # Errors
    /// [`FixtureError`] when the file cannot be read or parsed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Fixture, FixtureError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Fixture::parse(&text)
    }

    /// The client behind `name`, created (a user in `lobby`) if the fixture does not have it yet.
    /// Clients get ids in order of first appearance.
    pub fn client(&mut self, name: &str) -> Arc<Client> {
        let next = self.clients.len() as u64 + 1;
        self.clients
            .entry(name.to_owned())
            .or_insert_with(|| test_client(next, name, Role::User))
            .clone()
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The events, each yielded at its offset from the moment the stream is first polled, with
    /// per-client sequence numbers.
    pub fn stream(&self) -> EventStream {
        let mut seqs: HashMap<&str, u64> = HashMap::new();
        let events: Vec<(Duration, Event)> = self
            .steps
            .iter()
            .map(|step| {
                let seq = seqs.entry(&step.sender).or_insert(0);
                let event = Event {
                    client: self.clients[&step.sender].clone(),
                    seq: *seq,
                    received_at: tokio::time::Instant::now(),
                    room: None,
                    filter_in_hub: false,
                    body: step.body.clone(),
                };
                *seq += 1;
                (step.at, event)
            })
            .collect();
        let start = std::sync::OnceLock::new();
        Box::pin(futures::stream::iter(events).then(move |(at, mut event)| {
            let start = *start.get_or_init(tokio::time::Instant::now);
            async move {
                tokio::time::sleep_until(start + at).await;
                event.received_at = tokio::time::Instant::now();
                event
            }
        }))
    }
}

/// A client for tests, at 127.0.0.1, in `lobby`.
pub fn test_client(id: u64, name: &str, role: Role) -> Arc<Client> {
    Arc::new(Client::new(
        ClientId(id),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ClientInfo {
            name: Arc::from(name),
            room: Arc::from("lobby"),
            role,
        },
    ))
}

/// Runs one stage on `input` and collects everything it outputs.
pub async fn run_stage(stage: impl Stage, input: EventStream) -> Vec<Event> {
    let ctx = StageContext::default();
    Box::new(stage).apply(input, &ctx).collect().await
}

/// Runs a whole pipeline on `input` (no hub, no sockets) and collects what would reach the hub.
pub async fn run_pipeline(pipeline: Pipeline, input: EventStream) -> Vec<Event> {
    let ctx = StageContext::default();
    pipeline.apply(input, &ctx).collect().await
}

/// Runs one filter on `text` from a user `alice` in `lobby`.
pub fn run_filter(filter: &dyn Filter, text: &str) -> Verdict {
    let sender = ClientInfo {
        name: Arc::from("alice"),
        room: Arc::from("lobby"),
        role: Role::User,
    };
    filter.check(&Message::new(
        text,
        &sender,
        ClientId(1),
        tokio::time::Instant::now(),
    ))
}

/// A one-line description of an event, for comparing a stage's output with an expectation:
/// `alice: hi` (chat), `* alice waves` (action), `alice /nick bob` (command),
/// `alice <- SERVER: …` (a notice to alice), `alice left`, `alice> raw` (unparsed).
pub fn describe(event: &Event) -> String {
    let name = event.client.name();
    match &event.body {
        Body::Line(text) => format!("{name}> {text}"),
        Body::Chat(text) => format!("{name}: {text}"),
        Body::Action(text) => format!("* {name} {text}"),
        Body::Notice(text) | Body::Blocked(text) => format!("{name} <- SERVER: {text}"),
        Body::Left(_) => format!("{name} left"),
        Body::Command(Command::Quit) => format!("{name} /quit"),
        Body::Command(Command::Who) => format!("{name} /who"),
        Body::Command(Command::Nick(new)) => format!("{name} /nick {new}"),
        Body::Command(other) => format!("{name} {other:?}"),
        Body::Private { to, text } => format!("{name} -> {to}: {text}"),
        Body::Sanction(s) => match s.kind {
            SanctionKind::Mute(d) => {
                format!("{name} muted for {d:?} by {}: {}", s.filter, s.notice)
            }
            SanctionKind::Kick => format!("{name} kicked by {}: {}", s.filter, s.notice),
        },
        Body::Alert(text) => format!("moderators <- SERVER: {text}"),
        Body::Held { filter, text, .. } => format!("{name} held by {filter}: {text}"),
        Body::Query(query) => format!("{name} asks (cost {})", query.cost()),
    }
}
