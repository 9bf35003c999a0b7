//! Every built-in stage run alone on fixture streams, on a paused clock.

use std::time::Duration;

use chatpipe::config::{RateLimitConfig, RateLimitPolicy};
use chatpipe::filters::{FilterSet, Verdict, filter_fn};
use chatpipe::pipeline::{ParseStage, RateLimitStage, WorkerPoolStage};
use chatpipe::testing::{Fixture, describe, run_pipeline, run_stage};
use chatpipe::{Body, Config, Event, PipelineBuilder};
use futures::StreamExt;

fn shown(events: &[Event]) -> Vec<String> {
    events.iter().map(describe).collect()
}

fn limit(per_second: u32, burst: u32, policy: RateLimitPolicy) -> RateLimitStage {
    RateLimitStage::new(&RateLimitConfig {
        per_second,
        burst,
        policy,
    })
}

/// Eleven lines in one burst with a burst of 10: the eleventh is rejected, with one notice.
#[tokio::test(start_paused = true)]
async fn rate_limit_rejects_over_the_burst_and_says_so_once() {
    let text: String = (0..13).map(|n| format!("alice> line {n}\n")).collect();
    let fixture = Fixture::parse(&text).unwrap();
    let out = run_stage(limit(5, 10, RateLimitPolicy::Reject), fixture.stream()).await;
    let mut expected: Vec<String> = (0..10).map(|n| format!("alice> line {n}")).collect();
    expected.push("alice <- SERVER: Rate limit exceeded. Please slow down.".into());
    assert_eq!(shown(&out), expected);
}

/// `/quit` and `/ping` pass even over the limit, in order with the rest.
#[tokio::test(start_paused = true)]
async fn rate_limit_lets_quit_and_ping_through() {
    let fixture =
        Fixture::parse("alice> a\nalice> b\nalice> c\nalice> /ping\nalice> d\nalice> /QUIT\n")
            .unwrap();
    let out = run_stage(limit(1, 2, RateLimitPolicy::Reject), fixture.stream()).await;
    assert_eq!(
        shown(&out),
        [
            "alice> a",
            "alice> b",
            "alice <- SERVER: Rate limit exceeded. Please slow down.",
            "alice> /ping",
            "alice> /QUIT",
        ]
    );
}

/// The limit refills at the configured rate, and the notice is repeated after a line got through.
#[tokio::test(start_paused = true)]
async fn rate_limit_refills_over_time() {
    let fixture = Fixture::parse(
        "alice> a\nalice> b\nalice> c\n\
         +100ms alice> d\n\
         +500ms alice> e\nalice> f\n",
    )
    .unwrap();
    let out = run_stage(limit(2, 2, RateLimitPolicy::Reject), fixture.stream()).await;
    assert_eq!(
        shown(&out),
        [
            "alice> a",
            "alice> b",
            "alice <- SERVER: Rate limit exceeded. Please slow down.",
            // d at 100 ms: still empty, already warned, dropped quietly.
            // e at 600 ms: one cell refilled (one per 500 ms).
            "alice> e",
            "alice <- SERVER: Rate limit exceeded. Please slow down.",
        ]
    );
}

/// One client's flood does not touch another client's lines.
#[tokio::test(start_paused = true)]
async fn rate_limit_is_per_client() {
    let mut text = String::new();
    for n in 0..5 {
        text.push_str(&format!("flood> f{n}\nbob> b{n}\n"));
    }
    let fixture = Fixture::parse(&text).unwrap();
    let out = run_stage(limit(1, 2, RateLimitPolicy::Reject), fixture.stream()).await;
    let bob: Vec<String> = shown(&out)
        .into_iter()
        .filter(|l| l.starts_with("bob"))
        .collect();
    // bob has the same limit; only his own excess is refused.
    assert_eq!(
        bob,
        [
            "bob> b0",
            "bob> b1",
            "bob <- SERVER: Rate limit exceeded. Please slow down."
        ]
    );
    let flood_notices = shown(&out)
        .iter()
        .filter(|l| l.starts_with("flood <- SERVER"))
        .count();
    assert_eq!(flood_notices, 1);
}

/// The delay policy holds lines back and releases them at the limit's pace, in order.
#[tokio::test(start_paused = true)]
async fn rate_limit_delay_policy_holds_then_releases() {
    let text: String = (0..6).map(|n| format!("alice> {n}\n")).collect();
    let fixture = Fixture::parse(&text).unwrap();
    let start = tokio::time::Instant::now();
    let stage = Box::new(limit(10, 2, RateLimitPolicy::Delay));
    let out: Vec<(Duration, String)> =
        chatpipe::Stage::apply(stage, fixture.stream(), &Default::default())
            .map(|e| (start.elapsed(), describe(&e)))
            .collect()
            .await;
    let lines: Vec<&str> = out.iter().map(|(_, l)| l.as_str()).collect();
    // Burst 2 passes at once; 2 more are held (max held = burst) and released 100 ms apart;
    // the rest are rejected with one notice.
    assert_eq!(
        lines,
        [
            "alice> 0",
            "alice> 1",
            "alice <- SERVER: Rate limit exceeded. Please slow down.",
            "alice> 2",
            "alice> 3",
        ]
    );
    assert_eq!(out[3].0, Duration::from_millis(100));
    assert_eq!(out[4].0, Duration::from_millis(200));
}

/// A client that leaves while lines are held: the lines are released first, then the departure.
#[tokio::test(start_paused = true)]
async fn rate_limit_delay_keeps_leave_behind_held_lines() {
    let fixture = Fixture::parse("alice> 0\nalice> 1\nalice> 2\nalice left\n").unwrap();
    let out = run_stage(limit(10, 2, RateLimitPolicy::Delay), fixture.stream()).await;
    assert_eq!(
        shown(&out),
        ["alice> 0", "alice> 1", "alice> 2", "alice left"]
    );
}

/// Under the delay policy the held queue is bounded for `/ping` and `/quit` too: a client that
/// floods `/ping` behind held lines gets them rejected, and one `/quit` still gets through.
#[tokio::test(start_paused = true)]
async fn rate_limit_delay_bounds_pings_and_keeps_one_quit() {
    let mut text: String = (0..4).map(|n| format!("alice> {n}\n")).collect();
    text.extend((0..1000).map(|_| "alice> /ping\n".to_owned()));
    text.push_str("alice> /quit\nalice> /quit\nalice left\n");
    let fixture = Fixture::parse(&text).unwrap();
    let out = run_stage(limit(10, 2, RateLimitPolicy::Delay), fixture.stream()).await;
    let shown = shown(&out);
    let pings = shown.iter().filter(|l| *l == "alice> /ping").count();
    let quits = shown.iter().filter(|l| *l == "alice> /quit").count();
    assert_eq!(
        pings, 0,
        "every /ping behind a full queue is rejected: {shown:?}"
    );
    assert_eq!(quits, 1, "{shown:?}");
    assert_eq!(shown.last().map(String::as_str), Some("alice left"));
}

/// Rate limiting off (`per_second = 0`) passes everything.
#[tokio::test(start_paused = true)]
async fn rate_limit_off_passes_everything() {
    let text: String = (0..100).map(|n| format!("alice> {n}\n")).collect();
    let fixture = Fixture::parse(&text).unwrap();
    let out = run_stage(limit(0, 10, RateLimitPolicy::Reject), fixture.stream()).await;
    assert_eq!(out.len(), 100);
}

/// A fixture can be given as a list of lines, offsets included.
#[tokio::test(start_paused = true)]
async fn fixture_from_a_list() {
    let start = tokio::time::Instant::now();
    let fixture = Fixture::from_lines(&["alice> one", "+2s bob> two", "bob left"]).unwrap();
    let timed: Vec<(std::time::Duration, String)> = fixture
        .stream()
        .map(|e| (start.elapsed(), describe(&e)))
        .collect()
        .await;
    assert_eq!(
        timed,
        [
            (Duration::ZERO, "alice> one".to_owned()),
            (Duration::from_secs(2), "bob> two".to_owned()),
            (Duration::from_secs(2), "bob left".to_owned()),
        ]
    );
    assert!(Fixture::from_lines(&["no separator"]).is_err());
}

/// The parse stage turns lines into chat, actions, commands and answers; blank lines vanish.
#[tokio::test(start_paused = true)]
async fn parse_stage_from_fixture() {
    let fixture = Fixture::parse(
        "alice> hello\nalice>    \nalice> /me waves\nalice> //etc\n\
         alice> /nick bob\nalice> /bogus\nalice> /quit\n",
    )
    .unwrap();
    let out = run_stage(ParseStage, fixture.stream()).await;
    assert_eq!(
        shown(&out),
        [
            "alice: hello",
            "* alice waves",
            "alice: /etc",
            "alice /nick bob",
            "alice <- SERVER: Unknown command /bogus. Type /help for the list of commands.",
            "alice /quit",
        ]
    );
}

/// The worker pool keeps each sender's order across parallel workers, commands included.
#[tokio::test]
async fn worker_pool_keeps_per_sender_order() {
    let mut text = String::new();
    for n in 0..500 {
        for sender in ["a", "b", "c", "d", "e"] {
            text.push_str(&format!("{sender}> {n}\n"));
        }
    }
    let fixture = Fixture::parse(&text).unwrap();
    let filters = FilterSet::new();
    // A filter that costs something, so the workers really interleave.
    filters.push_last(filter_fn("busy", |m| {
        Verdict::Rewrite(
            m.text
                .chars()
                .rev()
                .collect::<String>()
                .chars()
                .rev()
                .collect(),
        )
    }));
    let parsed = run_stage(ParseStage, fixture.stream()).await;
    let out = run_stage(
        WorkerPoolStage::new(4, filters),
        Box::pin(futures::stream::iter(parsed)),
    )
    .await;
    assert_eq!(out.len(), 2500);
    for sender in ["a", "b", "c", "d", "e"] {
        let numbers: Vec<usize> = out
            .iter()
            .filter(|e| &*e.client.name() == sender)
            .map(|e| match &e.body {
                Body::Chat(t) => t.parse().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(numbers, (0..500).collect::<Vec<_>>(), "{sender}");
    }
}

/// A filter that panics loses only that message (the sender is told); the pool keeps going.
#[tokio::test]
async fn worker_pool_contains_a_panicking_filter() {
    let filters = FilterSet::new();
    filters.push_last(filter_fn("fragile", |m| {
        if m.text == "boom" {
            panic!("filter bug");
        }
        Verdict::Pass
    }));
    let fixture = Fixture::parse("alice> one\nalice> boom\nalice> two\n").unwrap();
    let parsed = run_stage(ParseStage, fixture.stream()).await;
    let out = run_stage(
        WorkerPoolStage::new(2, filters),
        Box::pin(futures::stream::iter(parsed)),
    )
    .await;
    assert_eq!(
        shown(&out),
        [
            "alice: one",
            "alice <- SERVER: Your message could not be processed.",
            "alice: two"
        ]
    );
}

/// The whole standard pipeline from a fixture: limits, parsing, filters, order across paths.
#[tokio::test(start_paused = true)]
async fn whole_pipeline_from_fixture() {
    let mut config = Config::default();
    config.rate_limit.per_second = 1;
    config.rate_limit.burst = 3;
    config.pipeline.workers = 2;
    let pipeline = PipelineBuilder::standard(&config)
        .filter(filter_fn("mask-heck", |m| {
            Verdict::Rewrite(m.text.replace("heck", "****"))
        }))
        .build()
        .unwrap();
    let fixture = Fixture::parse(
        "alice> hello\nalice> what the heck\nalice> /nick alicia\nalice> one too many\n\
         bob> hi\n+2s alice> bye\nalice> /quit\n",
    )
    .unwrap();
    let out = run_pipeline(pipeline, fixture.stream()).await;
    let alice: Vec<String> = shown(&out)
        .into_iter()
        .filter(|l| l.starts_with("alice"))
        .collect();
    assert_eq!(
        alice,
        [
            "alice: hello",
            "alice: what the ****",
            "alice /nick alicia",
            "alice <- SERVER: Rate limit exceeded. Please slow down.",
            "alice: bye",
            "alice /quit",
        ]
    );
    assert!(shown(&out).contains(&"bob: hi".to_owned()));
}

/// Stages can be inserted at named points; an unknown point is an error, not a panic.
#[test]
fn builder_inserts_at_named_points() {
    use chatpipe::{EventStream, Stage, StageContext};
    struct Probe;
    impl Stage for Probe {
        fn name(&self) -> &str {
            "probe"
        }
        fn apply(self: Box<Self>, input: EventStream, _: &StageContext) -> EventStream {
            input
        }
    }
    let config = Config::default();
    let pipeline = PipelineBuilder::standard(&config)
        .stage_after("parse", Probe)
        .stage_before("rate_limit", Probe)
        .build()
        .unwrap();
    assert_eq!(
        pipeline.stage_names(),
        ["probe", "rate_limit", "parse", "probe", "worker_pool"]
    );
    let err = PipelineBuilder::standard(&config)
        .stage_after("nope", Probe)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("nope"));
}
