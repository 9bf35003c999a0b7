//! Soak test: a few hundred clients joining, chatting, flooding, idling, sending junk and
//! vanishing, against an in-process server, for a configurable time. Prints a report and exits
//! non-zero if anything is wrong:
//! - a well-behaved client lost or got out of order any line of another well-behaved client;
//! - a misbehaving client did not get its notice (rate limit, idle warning and disconnect,
//!   over-long line);
//! - resident memory grew by more than a tenth after the warm-up (the first third of the run);
//! - in the burst phase (a second server with the rate limit off, where a few clients paste
//!   2,000 lines at once, several times), a reading client was cut off as too slow or missed a
//!   line.
//!
//! ```sh
//! cargo run --release --example soak -- --seconds 60 --clients 300
//! ```
//! `.ci/run` runs a short one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatpipe::{Config, Server};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Barrier;

/// How long the end-of-run drain may take before lines count as lost.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Settings {
    seconds: u64,
    clients: usize,
}

fn settings() -> Settings {
    let cli = <Cli as clap::Parser>::parse();
    Settings {
        seconds: cli.seconds,
        clients: cli.clients,
    }
}

/// Soak test: runs a chatpipe server in-process and a crowd of clients against it (chatting,
/// flooding, pasting bursts, idling, sending junk, vanishing), then checks that nothing leaked,
/// nobody who reads was cut off, and the room still works.
#[derive(Debug, clap::Parser)]
#[command(name = "soak")]
struct Cli {
    /// How long the crowd runs.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Clients in the crowd.
    #[arg(long, default_value_t = 200)]
    clients: usize,
}

struct Client {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn join(addr: SocketAddr, name: &str) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        let (r, w) = stream.into_split();
        let mut client = Client {
            lines: BufReader::new(r).lines(),
            writer: w,
        };
        client
            .read_until(|l| l.contains("enter your username"))
            .await?;
        client.send(name).await?;
        let joined = format!("{name} has joined the chat");
        client.read_until(|l| l == joined).await?;
        Ok(client)
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.writer.write_all(format!("{line}\n").as_bytes()).await
    }

    /// Reads until a line matches; an error at end of stream or after 20 s.
    async fn read_until(&mut self, want: impl Fn(&str) -> bool) -> std::io::Result<String> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
                .await
                .map_err(|_| std::io::Error::other("timed out"))??
                .ok_or_else(|| std::io::Error::other("end of stream"))?;
            if want(&line) {
                return Ok(line);
            }
        }
    }
}

/// What a well-behaved client saw of each other well-behaved sender. Constant memory per
/// sender, so the checker itself does not grow during a long soak.
#[derive(Debug, Default, Clone, Copy)]
struct FromSender {
    /// The next sequence number expected (= lines received in order so far).
    next: usize,
    /// Lines that skipped ahead (a loss) or went back (a reordering).
    out_of_order: usize,
}

struct Seen {
    sent: usize,
    received: HashMap<String, FromSender>,
}

async fn well_behaved(
    addr: SocketAddr,
    i: usize,
    run: Duration,
    senders: usize,
    all_joined: Arc<Barrier>,
) -> std::io::Result<(String, Seen)> {
    let name = format!("good{i}");
    let client = Client::join(addr, &name).await;
    // Everyone waits for everyone (even after a failed join), so all see every line.
    all_joined.wait().await;
    let client = client?;
    let Client {
        mut lines,
        mut writer,
    } = client;
    let reader = tokio::spawn(async move {
        let mut received: HashMap<String, FromSender> = HashMap::new();
        let mut ended = 0;
        let deadline = tokio::time::Instant::now() + run + DRAIN;
        while ended < senders {
            let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await
            else {
                break;
            };
            let Some((sender, text)) = line.split_once(": ") else {
                continue;
            };
            if !sender.starts_with("good") {
                continue;
            }
            if text.starts_with("END") {
                ended += 1;
            } else if let Some(n) = text
                .strip_prefix("line ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                let from = received.entry(sender.to_owned()).or_default();
                if n != from.next {
                    from.out_of_order += 1;
                }
                from.next = n + 1;
            }
        }
        received
    });
    let start = Instant::now();
    let mut sent = 0;
    // Staggered so the room gets a steady stream rather than waves.
    tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 1000)).await;
    while start.elapsed() < run {
        writer
            .write_all(format!("line {sent}\n").as_bytes())
            .await?;
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    writer.write_all(format!("END {sent}\n").as_bytes()).await?;
    let received = reader.await.map_err(std::io::Error::other)?;
    Ok((name, Seen { sent, received }))
}

async fn flooder(addr: SocketAddr, i: usize, run: Duration) -> std::io::Result<bool> {
    let mut client = Client::join(addr, &format!("flood{i}")).await?;
    let burst: String = (0..40).map(|n| format!("flood {n}\n")).collect();
    client.writer.write_all(burst.as_bytes()).await?;
    client
        .read_until(|l| l.contains("Rate limit exceeded"))
        .await?;
    let start = Instant::now();
    while start.elapsed() < run {
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.writer.write_all(burst.as_bytes()).await?;
        // Keep reading so this client is not also a slow reader.
        while let Ok(Ok(Some(_))) =
            tokio::time::timeout(Duration::from_millis(10), client.lines.next_line()).await
        {
        }
    }
    Ok(true)
}

async fn idler(addr: SocketAddr, i: usize) -> std::io::Result<bool> {
    let mut client = Client::join(addr, &format!("idle{i}")).await?;
    client
        .read_until(|l| l.contains("You have been idle"))
        .await?;
    client
        .read_until(|l| l.contains("Disconnected: idle"))
        .await?;
    Ok(true)
}

async fn junk_sender(addr: SocketAddr, i: usize, run: Duration) -> std::io::Result<bool> {
    let mut client = Client::join(addr, &format!("junk{i}")).await?;
    let start = Instant::now();
    while start.elapsed() < run {
        client.writer.write_all(&vec![b'j'; 5000]).await?;
        client.writer.write_all(b"\n\x1b[2Jclear?\n").await?;
        client.read_until(|l| l.contains("Line too long")).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(true)
}

async fn vanisher(addr: SocketAddr, i: usize, run: Duration) -> std::io::Result<bool> {
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < run {
        let mut client = Client::join(addr, &format!("gone{i}x{round}")).await?;
        client.send("here one moment").await?;
        let stream = client
            .lines
            .into_inner()
            .into_inner()
            .reunite(client.writer)
            .map_err(std::io::Error::other)?;
        // Vanish without a goodbye: a reset, as when a network dies.
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        drop(stream);
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(true)
}

/// Lines in one paste of the burst phase.
const PASTE_LINES: usize = 2_000;

/// The burst phase: `pasters` clients each paste `PASTE_LINES` lines at once, `rounds` times, to
/// a room of `readers` clients that read as fast as they can, on a server with the rate limit
/// off. Every reader (pasters included) must get every line, each paster's in order, and nobody
/// may be cut off. Returns what went wrong.
async fn burst_phase(readers: usize, pasters: usize, rounds: usize) -> Vec<String> {
    let mut config = Config::default();
    config.rate_limit.per_second = 0;
    config.admin.listen = String::new();
    config.storage.path = std::path::PathBuf::new();
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => return vec![format!("burst phase: cannot bind: {e}")],
    };
    let Ok(addr) = listener.local_addr() else {
        return vec!["burst phase: no address".into()];
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(config).run(listener, async {
        let _ = stopped.await;
    }));
    let expected = pasters * rounds * PASTE_LINES;
    let members = readers + pasters;
    let all_joined = Arc::new(Barrier::new(members + 1));
    let mut tasks = Vec::new();
    for i in 0..members {
        let all_joined = all_joined.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("burst{i}");
            let client = Client::join(addr, &name).await;
            all_joined.wait().await;
            let Client {
                mut lines,
                mut writer,
            } = client?;
            let paster = i < pasters;
            let writing = tokio::spawn(async move {
                for round in 0..rounds {
                    if !paster {
                        break;
                    }
                    let paste: String = (0..PASTE_LINES)
                        .map(|n| format!("paste {}\n", round * PASTE_LINES + n))
                        .collect();
                    writer.write_all(paste.as_bytes()).await?;
                }
                Ok::<_, std::io::Error>(writer)
            });
            let mut next: HashMap<String, usize> = HashMap::new();
            let mut got = 0;
            while got < expected {
                let line = tokio::time::timeout(DRAIN, lines.next_line())
                    .await
                    .map_err(|_| {
                        std::io::Error::other(format!("{name} timed out after {got} lines"))
                    })??
                    .ok_or_else(|| {
                        std::io::Error::other(format!("{name} disconnected after {got} lines"))
                    })?;
                if line.contains("too slow") {
                    return Err(std::io::Error::other(format!(
                        "{name} was cut off as too slow after {got} lines"
                    )));
                }
                let Some((sender, text)) = line.split_once(": paste ") else {
                    continue;
                };
                let n: usize = text.parse().map_err(std::io::Error::other)?;
                let want = next.entry(sender.to_owned()).or_default();
                if n != *want {
                    return Err(std::io::Error::other(format!(
                        "{name}: line {n} from {sender} where {want} was due"
                    )));
                }
                *want += 1;
                got += 1;
            }
            let _writer = writing.await.map_err(std::io::Error::other)??;
            Ok::<_, std::io::Error>(())
        }));
    }
    all_joined.wait().await;
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("burst phase: {e}")),
            Err(e) => failures.push(format!("burst phase: a client panicked: {e}")),
        }
    }
    let _ = stop.send(());
    let _ = server.await;
    failures
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let s = settings();
    let run = Duration::from_secs(s.seconds);
    let mut config = Config::default();
    config.server.idle_timeout = Duration::from_secs(3);
    config.server.max_bad_lines = 1000;
    // The store in memory: the soak measures the server, not the disk, and leaves no file.
    config.storage.path = std::path::PathBuf::new();
    let server = Server::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(listener, async {
        let _ = stopped.await;
    }));

    let good_count = s.clients * 6 / 10;
    let misbehaving = s.clients - good_count;
    let mut good = Vec::new();
    let all_joined = Arc::new(Barrier::new(good_count));
    for i in 0..good_count {
        let barrier = all_joined.clone();
        good.push(tokio::spawn(well_behaved(
            addr, i, run, good_count, barrier,
        )));
        if i % 50 == 49 {
            tokio::task::yield_now().await;
        }
    }
    let mut others = Vec::new();
    for i in 0..misbehaving {
        let task = match i % 4 {
            0 => tokio::spawn(flooder(addr, i, run)),
            1 => tokio::spawn(idler(addr, i)),
            2 => tokio::spawn(junk_sender(addr, i, run)),
            _ => tokio::spawn(vanisher(addr, i, run)),
        };
        others.push((i % 4, task));
    }

    let mut rss = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(kib) = rss_kib() {
            rss.push(kib);
        }
        eprintln!(
            "t={:>3}s rss={} KiB",
            start.elapsed().as_secs(),
            rss.last().unwrap_or(&0)
        );
    }

    let mut failures = Vec::new();
    let mut results = Vec::new();
    for task in good {
        match task.await {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(e)) => failures.push(format!("a well-behaved client failed: {e}")),
            Err(e) => failures.push(format!("a well-behaved client panicked: {e}")),
        }
    }
    let sent: HashMap<&str, usize> = results.iter().map(|(n, s)| (n.as_str(), s.sent)).collect();
    let mut checked = 0usize;
    for (receiver, seen) in &results {
        for (sender, count) in &sent {
            let from = seen.received.get(*sender).copied().unwrap_or_default();
            if from.next != *count || from.out_of_order > 0 {
                failures.push(format!(
                    "{receiver} from {sender}: reached line {} of {count}, {} lost or reordered",
                    from.next, from.out_of_order
                ));
            }
            checked += count;
        }
    }
    let kinds = [
        "flooder got its rate-limit notice",
        "idler was warned and disconnected",
        "junk sender got its notices",
        "vanisher reconnected",
    ];
    let mut misbehaved_ok = [0usize; 4];
    for (kind, task) in others {
        match task.await {
            Ok(Ok(true)) => misbehaved_ok[kind] += 1,
            Ok(Ok(false)) | Err(_) => {
                failures.push(format!("a client that should have: {}", kinds[kind]))
            }
            Ok(Err(e)) => {
                failures.push(format!("a client that should have: {} — {e}", kinds[kind]))
            }
        }
    }
    let _ = stop.send(());
    let _ = server_task.await;

    let (readers, pasters, rounds) = ((s.clients / 4).clamp(10, 100), 3, 3);
    eprintln!(
        "burst phase: {pasters} clients paste {PASTE_LINES} lines {rounds} times to {readers} readers"
    );
    failures.extend(burst_phase(readers, pasters, rounds).await);

    let warm = rss.len() / 3;
    let after_warmup = &rss[warm.min(rss.len())..];
    let (low, high) = (
        after_warmup.iter().min().copied().unwrap_or(0),
        after_warmup.iter().max().copied().unwrap_or(0),
    );
    if high > low + low / 10 {
        failures.push(format!("RSS grew after warm-up: {low} KiB -> {high} KiB"));
    }
    println!(
        "soak: {}s, {} clients ({} well-behaved), {} deliveries between well-behaved clients checked",
        s.seconds, s.clients, good_count, checked
    );
    for (kind, ok) in kinds.iter().zip(misbehaved_ok) {
        println!("  {ok} × {kind}");
    }
    println!("  RSS after warm-up: {low}..{high} KiB");
    println!(
        "  burst phase: 3 pasters × 3 pastes of {PASTE_LINES} lines to {} readers, nobody cut off: {}",
        (s.clients / 4).clamp(10, 100),
        !failures.iter().any(|f| f.starts_with("burst phase"))
    );
    if failures.is_empty() {
        println!("soak: ok");
    } else {
        for failure in failures.iter().take(20) {
            println!("FAIL {failure}");
        }
        println!("soak: {} failures", failures.len());
        std::process::exit(1);
    }
}
