//! Pipeline and filter throughput benchmarks. Prints tables; nothing here asserts a speed.
//!
//! ```sh
//! cargo run --release --example bench_pipeline            # full run (~30 s)
//! cargo run --release --example bench_pipeline -- --quick # a smoke run
//! ```
//!
//! 1. Filter throughput on one core: the shipped filters (`filters/`) and a 10,000-word list,
//!    judged directly on 60-byte chat lines.
//! 2. Lines per second through the whole pipeline (rate limit off, shipped filters, parse, worker
//!    pool, merge) with 1, 2 and N workers, against a pass-through pipeline (no stages).
//! 3. Worker scaling on filter-heavy input (10,000-word list, 200-byte lines): 2 workers vs 1.

use std::sync::Arc;
use std::time::Instant;

use chatpipe::event::{Body, Event};
use chatpipe::filters::{Filter, FilterChain, FilterRules, Message, RuleFilter, load_dir};
use chatpipe::testing::test_client;
use chatpipe::{ClientInfo, Config, PipelineBuilder, Role, StageContext};
use futures::StreamExt;

/// A small deterministic generator (xorshift), so every run sees the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const VOCABULARY: &[&str] = &[
    "the", "a", "chat", "server", "hello", "there", "how", "are", "you", "today", "great", "game",
    "last", "night", "did", "see", "that", "play", "really", "nice", "thanks", "everyone", "for",
    "coming", "lol", "what", "time", "is", "it", "ok", "see", "later", "anyone", "here", "from",
    "rust", "tokio", "async", "stream", "pipeline", "filters", "work", "well", "shit", "damn",
];

/// Chat lines of about `len` bytes; a few contain listed words.
fn lines(count: usize, len: usize, rng: &mut Rng) -> Vec<String> {
    (0..count)
        .map(|_| {
            let mut line = String::with_capacity(len + 10);
            while line.len() < len {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(VOCABULARY[rng.below(VOCABULARY.len())]);
            }
            line
        })
        .collect()
}

/// 10,000 distinct made-up words.
fn big_word_list(rng: &mut Rng) -> Vec<String> {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let mut words = std::collections::BTreeSet::new();
    while words.len() < 10_000 {
        let len = 5 + rng.below(6);
        let word: String = (0..len).map(|_| letters[rng.below(26)] as char).collect();
        words.insert(word);
    }
    words.into_iter().collect()
}

fn big_list_filter(words: &[String]) -> Arc<RuleFilter> {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    let toml = format!("action = \"mask\"\nwords = [{}]\n", quoted.join(","));
    chatpipe::filters::FilterFile::load(std::path::Path::new("big.toml"), &toml)
        .expect("the generated list loads")
        .filter
}

fn shipped_chain() -> FilterChain {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/filters");
    let loaded = load_dir(std::path::Path::new(dir)).expect("the shipped filters load");
    FilterChain::new(
        loaded
            .into_iter()
            .filter(|f| f.enabled)
            .map(|f| f.filter as Arc<dyn Filter>)
            .collect(),
    )
}

/// Lines per second judging `lines` with `chain` on this thread.
fn judge_rate(chain: &FilterChain, lines: &[String], rounds: usize) -> f64 {
    let sender = ClientInfo {
        name: Arc::from("bench"),
        room: Arc::from("lobby"),
        role: Role::User,
    };
    let now = tokio::time::Instant::now();
    let start = Instant::now();
    let mut delivered = 0usize;
    for round in 0..rounds {
        for (i, text) in lines.iter().enumerate() {
            // 1000 senders, as in a busy room.
            let client = chatpipe::ClientId(((round * lines.len() + i) % 1000) as u64);
            let judged = chain.judge(&Message::new(text, &sender, client, now));
            delivered += usize::from(judged.warnings.is_empty());
        }
    }
    std::hint::black_box(delivered);
    (rounds * lines.len()) as f64 / start.elapsed().as_secs_f64()
}

/// Events from `senders` clients, round robin.
fn events(lines: &[String], senders: usize) -> Vec<Event> {
    let clients: Vec<_> = (0..senders)
        .map(|i| test_client(i as u64 + 1, &format!("user{i}"), Role::User))
        .collect();
    let at = tokio::time::Instant::now();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| Event {
            client: clients[i % senders].clone(),
            seq: (i / senders) as u64,
            received_at: at,
            room: None,
            filter_in_hub: false,
            body: Body::Line(line.clone()),
        })
        .collect()
}

/// Lines per second through `builder`'s pipeline.
async fn pipeline_rate(builder: PipelineBuilder, input: Vec<Event>) -> f64 {
    let count = input.len();
    let pipeline = builder.build().expect("a valid pipeline");
    let ctx = StageContext::default();
    let start = Instant::now();
    let out = pipeline
        .apply(Box::pin(futures::stream::iter(input)), &ctx)
        .fold(0usize, |n, _| async move { n + 1 })
        .await;
    let elapsed = start.elapsed();
    assert!(
        out >= count * 9 / 10,
        "most lines come out ({out} of {count})"
    );
    count as f64 / elapsed.as_secs_f64()
}

fn config(workers: usize) -> Config {
    let mut config = Config::default();
    config.rate_limit.per_second = 0;
    config.pipeline.workers = workers;
    config
}

fn standard_with_rules(workers: usize) -> PipelineBuilder {
    let builder = PipelineBuilder::standard(&config(workers));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/filters");
    FilterRules::load(dir, builder.filters().clone()).expect("the shipped filters load");
    builder
}

fn mega(rate: f64) -> String {
    format!("{:>8.3} M lines/s", rate / 1e6)
}

/// Filter and pipeline throughput: the shipped filter chain on one core, each filter alone, the
/// worker pool with 1 and N workers, and the whole pipeline. Takes about a minute in a release
/// build (a few seconds with --quick).
#[derive(Debug, clap::Parser)]
#[command(name = "bench_pipeline")]
struct Cli {
    /// One round of 20,000 lines instead of five of 200,000: a smoke run, not a measurement.
    #[arg(long)]
    quick: bool,
}

fn main() {
    let quick = <Cli as clap::Parser>::parse().quick;
    let (count, rounds) = if quick { (20_000, 1) } else { (200_000, 5) };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let short = lines(count, 60, &mut rng);
    let long = lines(count / 4, 200, &mut rng);
    let words = big_word_list(&mut rng);

    println!("## Filter throughput, one core, 60-byte lines");
    let shipped = shipped_chain();
    println!(
        "shipped filters ({}):  {}",
        shipped.names().join(", "),
        mega(judge_rate(&shipped, &short, rounds))
    );
    for loaded in load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/filters"
    )))
    .expect("loads")
    {
        let chain = FilterChain::new(vec![loaded.filter as Arc<dyn Filter>]);
        println!(
            "  {} alone: {}",
            loaded.name,
            mega(judge_rate(&chain, &short, rounds))
        );
    }
    let start = Instant::now();
    let mut total = 0;
    for _ in 0..rounds {
        for line in &short {
            total += chatpipe::filters::normalize::normalize(line).text.len();
        }
    }
    std::hint::black_box(total);
    let rate = (rounds * short.len()) as f64 / start.elapsed().as_secs_f64();
    println!("  normalisation alone: {}", mega(rate));
    let compile = Instant::now();
    let big = FilterChain::new(vec![big_list_filter(&words) as Arc<dyn Filter>]);
    let compile = compile.elapsed();
    println!(
        "10,000-word list:  {}   (compiled in {:.0?})",
        mega(judge_rate(&big, &short, rounds)),
        compile
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!();
        println!("## Whole pipeline, {count} lines of 60 bytes from 1000 senders, rate limit off");
        println!("| pipeline | lines/s |");
        println!("|---|---|");
        let input = events(&short, 1000);
        let passthrough = pipeline_rate(PipelineBuilder::empty(), input.clone()).await;
        println!("| pass-through (no stages) | {} |", mega(passthrough));
        let mut worker_counts = vec![1, 2];
        if cores > 2 {
            worker_counts.push(cores);
        }
        for workers in worker_counts {
            let rate = pipeline_rate(standard_with_rules(workers), input.clone()).await;
            println!(
                "| rate_limit(off) + parse + {workers} worker(s) with shipped filters | {} |",
                mega(rate)
            );
        }

        println!();
        println!("## Worker scaling on filter-heavy input (10,000 words, 200-byte lines)");
        let heavy =
            |workers| PipelineBuilder::standard(&config(workers)).filter(big_list_filter(&words));
        let input = events(&long, 1000);
        let one = pipeline_rate(heavy(1), input.clone()).await;
        let two = pipeline_rate(heavy(2), input).await;
        println!("| workers | lines/s |");
        println!("|---|---|");
        println!("| 1 | {} |", mega(one));
        println!("| 2 | {} |", mega(two));
        println!("2 workers / 1 worker: {:.2}x", two / one);
    });
}
