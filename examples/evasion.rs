//! Evasion resistance and false positives: chatpipe's shipped profanity filter against
//! [rustrict](https://crates.io/crates/rustrict), the Rust profanity crate, on one corpus of
//! evasions and innocent lines (`examples/data/evasion_corpus.txt`), both judging the same lines.
//! Prints, per class of evasion, how many lines each caught, every line either got wrong, and
//! each one's throughput on one core.
//!
//! ```sh
//! cargo run --release --example evasion
//! ```

use std::sync::Arc;
use std::time::Instant;

use chatpipe::filters::{Filter, FilterChain, Message, Outcome, load_dir};
use chatpipe::{ClientId, ClientInfo, Role};

/// One corpus line.
#[derive(Debug, Clone)]
pub struct Case {
    /// Whether a profanity filter should catch it.
    pub bad: bool,
    /// The kind of evasion (or `innocent`).
    pub class: String,
    /// The line.
    pub text: String,
}

/// The corpus, with `\uXXXX` escapes turned into the characters they name.
pub fn corpus() -> Vec<Case> {
    let text = include_str!("data/evasion_corpus.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let bad = parts.next()? == "bad";
            let class = parts.next()?.to_owned();
            let text = unescape(parts.next()?);
            Some(Case { bad, class, text })
        })
        .collect()
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 2..at + 6).unwrap_or("");
        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 6..];
            }
            None => {
                out.push_str("\\u");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// chatpipe's shipped profanity filter (`filters/20-profanity.toml`) as a chain of its own.
pub fn profanity_chain() -> FilterChain {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/filters"));
    let filters = load_dir(dir).expect("the shipped filters load");
    let profanity = filters
        .into_iter()
        .find(|f| f.name == "20-profanity")
        .expect("filters/20-profanity.toml");
    FilterChain::new(vec![profanity.filter as Arc<dyn Filter>])
}

/// True when chatpipe's chain would not deliver `text` unchanged.
pub fn chatpipe_flags(chain: &FilterChain, text: &str) -> bool {
    let sender = ClientInfo {
        name: "tester".into(),
        room: "lobby".into(),
        role: Role::User,
    };
    let message = Message::new(text, &sender, ClientId(1), tokio::time::Instant::now());
    !matches!(chain.judge(&message).outcome, Outcome::Deliver(ref out) if out == text)
}

fn rustrict_flags(text: &str) -> bool {
    use rustrict::CensorStr;
    text.is_inappropriate()
}

/// Lines per second of `flags` over the corpus, repeated.
fn rate(cases: &[Case], mut flags: impl FnMut(&str) -> bool) -> f64 {
    let rounds = 2000;
    let start = Instant::now();
    let mut flagged = 0usize;
    for _ in 0..rounds {
        for case in cases {
            flagged += usize::from(flags(&case.text));
        }
    }
    std::hint::black_box(flagged);
    (rounds * cases.len()) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let cases = corpus();
    let chain = profanity_chain();
    let mut classes: Vec<String> = cases.iter().map(|c| c.class.clone()).collect();
    classes.dedup();
    println!(
        "{:<12} {:>6} {:>10} {:>10}",
        "class", "lines", "chatpipe", "rustrict"
    );
    let (mut chatpipe_right, mut rustrict_right) = (0, 0);
    let mut wrong = Vec::new();
    for class in &classes {
        let of_class: Vec<&Case> = cases.iter().filter(|c| &c.class == class).collect();
        let (mut ours, mut theirs) = (0, 0);
        for case in &of_class {
            let (a, b) = (
                chatpipe_flags(&chain, &case.text),
                rustrict_flags(&case.text),
            );
            ours += usize::from(a == case.bad);
            theirs += usize::from(b == case.bad);
            if a != case.bad {
                wrong.push(format!(
                    "chatpipe {}: {:?}",
                    if case.bad { "missed" } else { "flagged" },
                    case.text
                ));
            }
            if b != case.bad {
                wrong.push(format!(
                    "rustrict {}: {:?}",
                    if case.bad { "missed" } else { "flagged" },
                    case.text
                ));
            }
        }
        chatpipe_right += ours;
        rustrict_right += theirs;
        println!(
            "{:<12} {:>6} {:>10} {:>10}",
            class,
            of_class.len(),
            format!("{ours}/{}", of_class.len()),
            format!("{theirs}/{}", of_class.len())
        );
    }
    println!(
        "{:<12} {:>6} {:>10} {:>10}",
        "all",
        cases.len(),
        format!("{chatpipe_right}/{}", cases.len()),
        format!("{rustrict_right}/{}", cases.len())
    );
    for line in &wrong {
        println!("  {line}");
    }
    let ours = rate(&cases, |t| chatpipe_flags(&chain, t));
    let theirs = rate(&cases, rustrict_flags);
    println!(
        "throughput on one core: chatpipe {:.2} M lines/s, rustrict {:.2} M lines/s",
        ours / 1e6,
        theirs / 1e6
    );
}
