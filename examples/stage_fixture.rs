//! Testing a stage from a fixture file, on a paused clock.
//!
//! `NoRepeatStage` drops a line that repeats the sender's previous line within a window. It needs
//! memory across messages and the clock, so it is a `Stage`, not a `Filter`. The fixture
//! `examples/fixtures/repeats.fixture` spans eight seconds; on tokio's paused clock it runs in
//! microseconds, and the result is exact.
//!
//! ```sh
//! cargo run --example stage_fixture
//! ```

use std::collections::HashMap;
use std::time::Duration;

use chatpipe::testing::{Fixture, describe, run_stage};
use chatpipe::{Body, ClientId, EventStream, Stage, StageContext};
use futures::StreamExt;
use tokio::time::Instant;

/// Drops a line equal to the sender's previous line if it comes within `window`, and tells them.
pub struct NoRepeatStage {
    /// How long a line counts as "just said".
    pub window: Duration,
}

impl Stage for NoRepeatStage {
    fn name(&self) -> &str {
        "no_repeat"
    }

    fn apply(self: Box<Self>, input: EventStream, _: &StageContext) -> EventStream {
        let mut last: HashMap<ClientId, (String, Instant)> = HashMap::new();
        Box::pin(input.map(move |event| {
            let id = event.client.id();
            match &event.body {
                Body::Left(_) => {
                    last.remove(&id);
                    event
                }
                Body::Chat(text) | Body::Line(text) => {
                    let now = event.received_at;
                    let repeat = last
                        .get(&id)
                        .is_some_and(|(prev, at)| prev == text && now - *at < self.window);
                    last.insert(id, (text.clone(), now));
                    if repeat {
                        event.with_body(Body::Notice("You just said that.".into()))
                    } else {
                        event
                    }
                }
                _ => event,
            }
        }))
    }
}

pub fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/fixtures/repeats.fixture"
        );
        let fixture = Fixture::from_file(path).expect("a valid fixture");
        let stage = NoRepeatStage {
            window: Duration::from_secs(5),
        };
        let out: Vec<String> = run_stage(stage, fixture.stream())
            .await
            .iter()
            .map(describe)
            .collect();
        for line in &out {
            println!("{line}");
        }
        let expected = [
            "alice> hello",
            "alice <- SERVER: You just said that.",
            "bob> hello",
            "alice <- SERVER: You just said that.",
            "alice> hello",
            "alice> something else",
        ];
        assert_eq!(
            out, expected,
            "the stage did not do what the fixture expects"
        );
        println!("ok: output matches the expectation");
    });
}
