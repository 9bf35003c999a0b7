//! Load generator: many clients in one room, some sending at a paced total rate, every client
//! checking what it receives (loss, order, latency).
//!
//! ```sh
//! cargo run --release --example loadgen -- --addr 127.0.0.1:8080 --clients 1000 --rate 1000 --seconds 10 --pid $(pgrep chatpipe)
//! cargo run --release --example loadgen -- --idle --clients 5000 --seconds 5 --pid $(pgrep chatpipe)
//! cargo run --release --example loadgen -- --step --clients 1000 --rate 500 --p99-ms 50 --pid $(pgrep chatpipe)
//! ```
//!
//! Each line carries its sender, a sequence number and its send time. Progress goes to stderr
//! once a second; the result is one JSON line on stdout. With `--pid`, the server's CPU seconds
//! (from `/proc/PID/stat`) and peak RSS (`VmHWM`) are reported too. `--sources K` spreads the
//! clients over 127.0.0.1 … 127.0.0.K (each source address has ~28k ephemeral ports).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

/// The reading side of a client, whatever its door: lines of the text protocol.
pub type Reader = BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>;
/// The writing side of a client: lines typed.
pub type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server.
    pub addr: SocketAddr,
    /// Clients connected.
    pub clients: usize,
    /// How many of them send (the first ones).
    pub senders: usize,
    /// Lines per second over all senders.
    pub rate: f64,
    /// How long senders send.
    pub seconds: f64,
    /// Source addresses 127.0.0.1 … 127.0.0.K.
    pub sources: u8,
    /// Connections opened per second.
    pub connect_rate: f64,
    /// The server's process id, for CPU and memory figures.
    pub pid: Option<u32>,
    /// Name prefix, so two runs do not collide.
    pub prefix: String,
    /// Print progress to stderr.
    pub progress: bool,
    /// The server's web door: when set, every other client connects over WebSocket there.
    pub ws: Option<SocketAddr>,
    /// The server's IRC door: every other client connects there instead.
    pub irc: Option<SocketAddr>,
    /// Further servers (of one cluster): clients are spread over `addr` and these.
    pub more: Vec<SocketAddr>,
    /// When set, every client connects over TLS to `addr`, trusting this certificate (PEM).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Wait for the server's `username` prompt before sending the name. Off for servers of the
    /// same text protocol that send nothing first (the Go seed design, `examples/versus.rs`).
    pub username_prompt: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            clients: 100,
            senders: 100,
            rate: 100.0,
            seconds: 10.0,
            sources: 1,
            connect_rate: 1000.0,
            pid: None,
            prefix: "lg".into(),
            progress: true,
            ws: None,
            irc: None,
            more: Vec::new(),
            tls_ca: None,
            username_prompt: true,
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Lines sent.
    pub sent: u64,
    /// Deliveries expected (every client receives every line).
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries that came after a later line of the same sender.
    pub reordered: u64,
    /// Deliveries per second over the sending period.
    pub deliveries_per_second: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest latency seen.
    pub max_ms: f64,
    /// Server CPU seconds during the run, if `--pid` was given.
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU microseconds per delivered line.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server peak resident memory, KiB.
    pub server_peak_rss_kib: Option<u64>,
}

impl Report {
    /// One JSON object.
    pub fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
        format!(
            concat!(
                r#"{{"sent":{},"expected":{},"delivered":{},"lost":{},"reordered":{},"#,
                r#""deliveries_per_second":{:.0},"latency_ms":{{"p50":{:.3},"p99":{:.3},"p999":{:.3},"max":{:.3}}},"#,
                r#""server_cpu_seconds":{},"server_cpu_us_per_delivery":{},"server_peak_rss_kib":{}}}"#
            ),
            self.sent,
            self.expected,
            self.delivered,
            self.lost,
            self.reordered,
            self.deliveries_per_second,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            opt(self.server_cpu_seconds),
            opt(self.server_cpu_us_per_delivery),
            self.server_peak_rss_kib
                .map_or("null".to_owned(), |v| v.to_string()),
        )
    }
}

/// Log-linear latency histogram in microseconds: 16 buckets per power of two, ~6% precision,
/// fixed size, so a client can record millions of deliveries in 4 KiB.
#[derive(Clone)]
struct Latencies {
    counts: Vec<u64>,
    max_us: u64,
}

impl Latencies {
    const SUB: u64 = 16;

    fn new() -> Self {
        Latencies {
            counts: vec![0; 64 * Self::SUB as usize],
            max_us: 0,
        }
    }

    fn bucket(us: u64) -> usize {
        if us < Self::SUB {
            return us as usize;
        }
        let magnitude = 63 - u64::from(us.leading_zeros());
        let sub = (us >> (magnitude - 4)) & (Self::SUB - 1);
        ((magnitude - 3) * Self::SUB + sub) as usize
    }

    fn lower_bound(bucket: usize) -> u64 {
        let bucket = bucket as u64;
        if bucket < Self::SUB {
            return bucket;
        }
        let magnitude = bucket / Self::SUB + 3;
        let sub = bucket % Self::SUB;
        (Self::SUB + sub) << (magnitude - 4)
    }

    fn record(&mut self, us: u64) {
        let last = self.counts.len() - 1;
        self.counts[Self::bucket(us).min(last)] += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &Latencies) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max_us = self.max_us.max(other.max_us);
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let target = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= target {
                return Self::lower_bound(bucket) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }
}

/// What one client saw.
struct Received {
    delivered: u64,
    reordered: u64,
    latencies: Latencies,
}

async fn connect(opts: &Options, i: usize) -> std::io::Result<(Reader, Writer)> {
    if let Some(web) = opts.ws.filter(|_| i % 2 == 1) {
        return connect_ws(opts, web, i).await;
    }
    if let Some(irc) = opts.irc.filter(|_| i % 2 == 1) {
        return connect_irc(opts, irc, i).await;
    }
    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(opts.sources.max(1))) as u8);
    let servers = 1 + opts.more.len();
    let server = match i % servers {
        0 => opts.addr,
        k => opts.more[k - 1],
    };
    let mut last_error = None;
    for attempt in 0..5u32 {
        let socket = TcpSocket::new_v4()?;
        if opts.sources > 1 {
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        }
        match socket.connect(server).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let (mut reader, mut writer): (Reader, Writer) = match &opts.tls_ca {
                    Some(ca) => {
                        let tls = tls_connector(ca)?
                            .connect(
                                tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")
                                    .map_err(std::io::Error::other)?,
                                stream,
                            )
                            .await?;
                        let (r, w) = tokio::io::split(tls);
                        (BufReader::new(Box::new(r)), Box::new(w))
                    }
                    None => {
                        let (r, w) = stream.into_split();
                        (BufReader::new(Box::new(r)), Box::new(w))
                    }
                };
                let mut line = Vec::new();
                if opts.username_prompt {
                    read_line_until(&mut reader, &mut line, b"username").await?;
                }
                writer
                    .write_all(format!("{}{i}\n", opts.prefix).as_bytes())
                    .await?;
                read_line_until(&mut reader, &mut line, b"has joined the chat").await?;
                return Ok((reader, writer));
            }
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    let error = last_error.unwrap_or_else(|| std::io::Error::other("connect failed"));
    Err(std::io::Error::new(
        error.kind(),
        format!("cannot connect to {server}: {error}"),
    ))
}

/// A TLS connector trusting the certificate(s) in `ca`.
fn tls_connector(ca: &std::path::Path) -> std::io::Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// A client of the web door, bridged to lines: a message object becomes the text protocol's
/// `FROM: TEXT` line (what `receive` parses), and a line written becomes a `line` object. The
/// bridge runs in the load generator, so the server's figures are its own.
async fn connect_ws(
    opts: &Options,
    web: SocketAddr,
    i: usize,
) -> std::io::Result<(Reader, Writer)> {
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncBufReadExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let fail = |e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("cannot connect to ws://{web}/ws: {e}"))
    };
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{web}/ws"))
        .await
        .map_err(|e| fail(&e))?;
    let (mut sink, mut stream) = socket.split();
    let name = format!("{}{i}", opts.prefix);
    let hello = serde_json::json!({"type": "hello", "name": name}).to_string();
    sink.send(Message::text(hello))
        .await
        .map_err(|e| fail(&e))?;
    loop {
        let Some(Ok(Message::Text(text))) = stream.next().await else {
            return Err(fail(&"closed during the hello"));
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(&e))?;
        if value["type"] == "joined" && value["name"] == name.as_str() {
            break;
        }
        if value["type"] == "notice" && value["code"] != "hello" && value["code"].is_string() {
            return Err(fail(&value["text"]));
        }
    }
    let (to_reader, reader_side) = tokio::io::duplex(1 << 16);
    let (writer_side, from_writer) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let mut to_reader = to_reader;
        let mut lines = BufReader::new(from_writer).lines();
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(Ok(Message::Text(text))) = message else { break };
                    // A cheap look at the object, not a full parse: at a million deliveries a
                    // second the load generator must not be what limits the run.
                    let (Some(from), Some(body)) = (field(&text, "from"), field(&text, "text")) else {
                        continue;
                    };
                    if !text.contains("\"type\":\"message\"") {
                        continue;
                    }
                    let line = format!("{from}: {body}\n");
                    if to_reader.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    let frame = serde_json::json!({"type": "line", "text": line}).to_string();
                    if sink.send(Message::text(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok((BufReader::new(Box::new(reader_side)), Box::new(writer_side)))
}

/// A client of the IRC door. Lines are read as they come (`receive` understands `PRIVMSG`); a
/// line written becomes `PRIVMSG #lobby :line` through a small bridge in the load generator.
async fn connect_irc(
    opts: &Options,
    irc: SocketAddr,
    i: usize,
) -> std::io::Result<(Reader, Writer)> {
    use tokio::io::AsyncBufReadExt as _;
    let stream = tokio::net::TcpStream::connect(irc).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot connect to IRC at {irc}: {e}"))
    })?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut reader: Reader = BufReader::new(Box::new(r));
    let name = format!("{}{i}", opts.prefix);
    // echo-message: an IRC client gets its own lines back like every other client does, so
    // every client's count of deliveries is the same.
    let register = format!(
        "CAP LS 302\r\nCAP REQ :echo-message\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\nCAP END\r\n"
    );
    w.write_all(register.as_bytes()).await?;
    let mut line = Vec::new();
    // The end of the lobby's names follows the welcome burst and the join.
    read_line_until(&mut reader, &mut line, b" 366 ").await?;
    let (writer_side, from_writer) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let mut lines = BufReader::new(from_writer).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let message = format!("PRIVMSG #lobby :{line}\r\n");
            if w.write_all(message.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    Ok((reader, Box::new(writer_side)))
}

/// The string value of `"key":"…"` in a JSON object without escapes in that value.
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

async fn read_line_until(
    reader: &mut Reader,
    line: &mut Vec<u8>,
    needle: &[u8],
) -> std::io::Result<()> {
    loop {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(30), reader.read_until(b'\n', line))
            .await
            .map_err(|_| std::io::Error::other("timed out"))??;
        if n == 0 {
            return Err(std::io::Error::other("end of stream"));
        }
        if line.windows(needle.len()).any(|w| w == needle) {
            return Ok(());
        }
    }
}

/// Reads deliveries until `stop`, tracking order per sender and latency.
///
/// A whole read at a time: one clock reading, one stop check and one update of the shared count
/// per read rather than per line, so the load generator (on the same cores as the server) takes
/// as little of the machine as it can. Every line in a read is stamped with the time of that
/// read, which is when the load generator saw it.
async fn receive(
    mut reader: Reader,
    senders: usize,
    epoch: Instant,
    delivered_total: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Received {
    let mut got = Received {
        delivered: 0,
        reordered: 0,
        latencies: Latencies::new(),
    };
    let mut next = vec![0u64; senders];
    // The start of a line whose end has not arrived yet.
    let mut partial = Vec::with_capacity(256);
    let mut stop = stop;
    loop {
        let chunk = tokio::select! {
            read = reader.fill_buf() => match read {
                Ok(chunk) if !chunk.is_empty() => chunk,
                _ => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let now_us = epoch.elapsed().as_micros() as u64;
        let before = got.delivered;
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if partial.is_empty() {
                on_line(&rest[..end], now_us, &mut next, &mut got);
            } else {
                partial.extend_from_slice(&rest[..end]);
                on_line(&partial, now_us, &mut next, &mut got);
                partial.clear();
            }
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
        let used = chunk.len();
        reader.consume(used);
        delivered_total.fetch_add(got.delivered - before, Ordering::Relaxed);
    }
    got
}

/// Counts one line (without its newline), if it is a delivery of this run:
/// `NAME: SENDER SEQ MICROS`.
fn on_line(line: &[u8], now_us: u64, next: &mut [u64], got: &mut Received) {
    // Lines replayed from an earlier run's history are not this run's deliveries.
    if line.starts_with(b"[history] ") {
        return;
    }
    // `NAME: TEXT` from the text protocol (and the web bridge), `… PRIVMSG #room :TEXT` from
    // IRC.
    let text_at = if line.starts_with(b":") {
        line.windows(9)
            .position(|w| w == b" PRIVMSG ")
            .and_then(|at| {
                line[at..]
                    .windows(2)
                    .position(|w| w == b" :")
                    .map(|c| at + c)
            })
    } else {
        line.windows(2).position(|w| w == b": ")
    };
    let Some(colon) = text_at else {
        return;
    };
    let mut fields = line[colon + 2..]
        .split(|b| matches!(*b, b' ' | b'\r'))
        .filter(|f| !f.is_empty())
        .map(|f| {
            std::str::from_utf8(f)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        });
    let (Some(Some(sender)), Some(Some(seq)), Some(Some(sent_us))) =
        (fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let Some(expected) = next.get_mut(sender as usize) else {
        return;
    };
    if seq < *expected {
        got.reordered += 1;
    } else {
        *expected = seq + 1;
    }
    got.delivered += 1;
    got.latencies.record(now_us.saturating_sub(sent_us));
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Connects `opts.clients` clients at the paced rate.
async fn connect_all(opts: &Options) -> std::io::Result<Vec<(Reader, Writer)>> {
    let gap = Duration::from_secs_f64(1.0 / opts.connect_rate.max(1.0));
    let mut pending = Vec::with_capacity(opts.clients);
    let start = Instant::now();
    for i in 0..opts.clients {
        let client_opts = opts.clone();
        pending.push(tokio::spawn(async move { connect(&client_opts, i).await }));
        tokio::time::sleep_until((start + gap * i as u32).into()).await;
        if opts.progress && i > 0 && i % 1000 == 0 {
            eprintln!("connected {i}");
        }
    }
    let mut clients = Vec::with_capacity(opts.clients);
    for task in pending {
        clients.push(task.await.map_err(std::io::Error::other)??);
    }
    Ok(clients)
}

/// Runs one load: connect, send for `seconds`, drain, report.
pub async fn run(opts: &Options) -> std::io::Result<Report> {
    let clients = connect_all(opts).await?;
    // Every join announcement reaches everyone; let them settle before measuring.
    let epoch = Instant::now();
    let delivered_total = Arc::new(AtomicU64::new(0));
    let sent_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let senders = opts.senders.min(opts.clients);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (reader, writer) in clients {
        readers.push(tokio::spawn(receive(
            reader,
            senders,
            epoch,
            delivered_total.clone(),
            stop_rx.clone(),
        )));
        writers.push(writer);
    }
    let cpu_before = opts.pid.and_then(cpu_seconds);
    let per_sender = opts.rate / senders.max(1) as f64;
    let period = Duration::from_secs_f64(1.0 / per_sender.max(0.001));
    let run_for = Duration::from_secs_f64(opts.seconds);
    // One deadline for every sender, so `sent` is final once they have all passed it.
    let deadline = tokio::time::Instant::now() + run_for;
    let still_sending = Arc::new(AtomicU64::new(senders as u64));
    let mut sending = Vec::new();
    for (index, mut writer) in writers.into_iter().enumerate() {
        if index >= senders {
            sending.push(tokio::spawn(async move {
                // Non-senders keep their connection open until the end.
                let _ = tokio::time::sleep(run_for + Duration::from_secs(5)).await;
                drop(writer);
            }));
            continue;
        }
        let sent_total = sent_total.clone();
        let still_sending = still_sending.clone();
        sending.push(tokio::spawn(async move {
            // Staggered, so the total rate is smooth.
            let offset = period.mul_f64(index as f64 / senders as f64);
            let start = tokio::time::Instant::now() + offset;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                ticks.tick().await;
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                let us = epoch.elapsed().as_micros();
                let line = format!("{index} {seq} {us}\n");
                if writer.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                seq += 1;
                sent_total.fetch_add(1, Ordering::Relaxed);
            }
            still_sending.fetch_sub(1, Ordering::Relaxed);
            // Stay connected while the others drain.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(writer);
        }));
    }
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < run_for || still_sending.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = delivered_total.load(Ordering::Relaxed);
        if opts.progress {
            eprintln!(
                "t={:>4.1}s sent={} delivered={} ({}/s)",
                started.elapsed().as_secs_f64(),
                sent_total.load(Ordering::Relaxed),
                now,
                now - last
            );
        }
        last = now;
    }
    let sent = sent_total.load(Ordering::Relaxed);
    let expected = sent * opts.clients as u64;
    // Drain: until everything expected arrived, or 5 s without progress.
    let mut stalled_since = Instant::now();
    let mut seen = delivered_total.load(Ordering::Relaxed);
    while seen < expected && stalled_since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = delivered_total.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            stalled_since = Instant::now();
        }
    }
    let cpu_after = opts.pid.and_then(cpu_seconds);
    let _ = stop_tx.send(true);
    let mut latencies = Latencies::new();
    let mut report = Report {
        sent,
        expected,
        ..Report::default()
    };
    for reader in readers {
        let got = reader.await.map_err(std::io::Error::other)?;
        report.delivered += got.delivered;
        report.reordered += got.reordered;
        latencies.merge(&got.latencies);
    }
    for task in sending {
        task.abort();
    }
    report.lost = expected.saturating_sub(report.delivered);
    report.deliveries_per_second = report.delivered as f64 / opts.seconds;
    report.p50_ms = latencies.percentile_ms(0.5);
    report.p99_ms = latencies.percentile_ms(0.99);
    report.p999_ms = latencies.percentile_ms(0.999);
    report.max_ms = latencies.max_us as f64 / 1000.0;
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        report.server_cpu_seconds = Some(after - before);
        if report.delivered > 0 {
            report.server_cpu_us_per_delivery =
                Some((after - before) * 1e6 / report.delivered as f64);
        }
    }
    report.server_peak_rss_kib = opts.pid.and_then(|pid| status_kib(pid, "VmHWM"));
    Ok(report)
}

/// Holds `opts.clients` idle connections and reports the server's memory per client.
///
/// The clients send nothing but keep reading (and discarding) what the server sends, so the
/// N² join announcements of a crowd arriving do not back up into their outboxes.
pub async fn idle(opts: &Options) -> std::io::Result<String> {
    let pid = opts.pid;
    let before = pid.and_then(|p| status_kib(p, "VmRSS"));
    // Clients start at the connect rate whether or not the ones before them have finished
    // their handshake, so the rate is the arrival rate the server sees. Each then reads (and
    // drops) whatever it is sent until the end.
    let gap = Duration::from_secs_f64(1.0 / opts.connect_rate.max(1.0));
    let cpu_before = pid.and_then(cpu_seconds);
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::channel(opts.clients.max(1));
    let mut clients = Vec::with_capacity(opts.clients);
    let start = Instant::now();
    for i in 0..opts.clients {
        let (client_opts, connected) = (opts.clone(), connected_tx.clone());
        clients.push(tokio::spawn(async move {
            let (mut reader, writer) = match connect(&client_opts, i).await {
                Ok(client) => client,
                Err(error) => {
                    let _ = connected.send(Err(error)).await;
                    return;
                }
            };
            let _ = connected.send(Ok(())).await;
            drop(connected);
            let mut sink = Vec::new();
            while reader
                .read_until(b'\n', &mut sink)
                .await
                .is_ok_and(|n| n > 0)
            {
                sink.clear();
            }
            drop(writer);
        }));
        tokio::time::sleep_until((start + gap * (i as u32 + 1)).into()).await;
    }
    drop(connected_tx);
    for joined in 1..=opts.clients {
        match connected_rx.recv().await {
            Some(result) => result?,
            None => return Err(std::io::Error::other("a client task ended unexpectedly")),
        }
        if opts.progress && joined % 1000 == 0 {
            eprintln!("connected {joined}");
        }
    }
    let connect_seconds = start.elapsed().as_secs_f64();
    let storm_cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
        (Some(b), Some(a)) => format!("{:.2}", a - b),
        _ => "null".into(),
    };
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds)).await;
    let after = pid.and_then(|p| status_kib(p, "VmRSS"));
    let per_client = match (before, after) {
        (Some(b), Some(a)) => format!("{:.2}", (a.saturating_sub(b)) as f64 / clients.len() as f64),
        _ => "null".into(),
    };
    let json = format!(
        r#"{{"idle_clients":{},"connect_seconds":{:.2},"server_cpu_seconds_to_connect":{},"server_rss_before_kib":{},"server_rss_after_kib":{},"server_kib_per_client":{}}}"#,
        clients.len(),
        connect_seconds,
        storm_cpu,
        before.map_or("null".into(), |v| v.to_string()),
        after.map_or("null".into(), |v| v.to_string()),
        per_client
    );
    for client in clients {
        client.abort();
    }
    Ok(json)
}

/// Load generator for a chatpipe server: a busy room (default), idle clients (`--idle`), or
/// the highest rate that keeps p99 under a bound (`--step`). Prints one JSON line.
#[derive(Debug, clap::Parser)]
#[command(name = "loadgen")]
pub struct Cli {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Clients to connect.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How many of the clients send (the first ones); default: all.
    #[arg(long)]
    senders: Option<usize>,
    /// Lines per second over all senders.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How long the senders send (with --idle: how long the clients stay).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Spread the clients over the source addresses 127.0.0.1 … 127.0.0.K.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    sources: u8,
    /// Connections opened per second.
    #[arg(long, default_value_t = 1000.0)]
    connect_rate: f64,
    /// The server's process id, for its CPU and memory figures.
    #[arg(long)]
    pid: Option<u32>,
    /// Name prefix, so two runs against one server do not collide.
    #[arg(long, default_value = "lg")]
    prefix: String,
    /// The server's web door (e.g. 127.0.0.1:18081): every other client connects there over
    /// WebSocket instead of the text protocol.
    #[arg(long, conflicts_with = "irc")]
    ws: Option<SocketAddr>,
    /// The server's IRC door (e.g. 127.0.0.1:16667): every other client connects there instead
    /// of the text protocol.
    #[arg(long)]
    irc: Option<SocketAddr>,
    /// Another server of the same cluster (repeatable): clients are spread over --addr and these.
    #[arg(long = "also")]
    also: Vec<SocketAddr>,
    /// Connect every client over TLS (to --addr, a TLS listener), trusting this certificate.
    #[arg(long, alias = "tls")]
    tls_ca: Option<std::path::PathBuf>,
    /// Send the username at once instead of waiting for the server's prompt (for a server of
    /// the same text protocol that prompts for nothing, such as the Go seed design).
    #[arg(long)]
    no_username_prompt: bool,
    /// Connect idle clients and report the server's memory per client.
    #[arg(long, conflicts_with = "step")]
    idle: bool,
    /// Raise the rate step by step until p99 exceeds --p99-ms or a line is lost.
    #[arg(long)]
    step: bool,
    /// With --step: the p99 bound in milliseconds.
    #[arg(long, default_value_t = 50.0, requires = "step")]
    p99_ms: f64,
    /// With --step: the factor between steps.
    #[arg(long, default_value_t = 1.25, requires = "step")]
    step_factor: f64,
}

impl Cli {
    fn options(&self) -> Options {
        Options {
            addr: self.addr,
            clients: self.clients,
            senders: self.senders.unwrap_or(self.clients).min(self.clients),
            rate: self.rate,
            seconds: self.seconds,
            sources: self.sources,
            connect_rate: self.connect_rate,
            pid: self.pid,
            prefix: self.prefix.clone(),
            progress: true,
            ws: self.ws,
            irc: self.irc,
            more: self.also.clone(),
            tls_ca: self.tls_ca.clone(),
            username_prompt: !self.no_username_prompt,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    match run_cli(&cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli(cli: &Cli) -> std::io::Result<()> {
    let mut opts = cli.options();
    if cli.idle {
        println!("{}", idle(&opts).await?);
        return Ok(());
    }
    if cli.step {
        let (bound, factor) = (cli.p99_ms, cli.step_factor);
        let mut best: Option<(f64, Report)> = None;
        for step in 0.. {
            opts.prefix = format!("s{step}x");
            let report = run(&opts).await?;
            let held = report.lost == 0 && report.reordered == 0 && report.p99_ms <= bound;
            eprintln!("step: {:.0} lines/s -> {}", opts.rate, report.json());
            if !held {
                break;
            }
            best = Some((opts.rate, report));
            opts.rate *= factor;
        }
        match best {
            Some((rate, report)) => println!(
                r#"{{"highest_rate_held":{rate:.0},"p99_bound_ms":{bound},"at_that_rate":{}}}"#,
                report.json()
            ),
            None => println!(r#"{{"highest_rate_held":null,"p99_bound_ms":{bound}}}"#),
        }
        return Ok(());
    }
    let report = run(&opts).await?;
    println!("{}", report.json());
    Ok(())
}
