//! The benchmark's yardstick: the same load (`examples/loadgen`) against chatpipe and against the
//! seed's Go design (`../shared/peers/seed-go`), one after the other on the same machine, with
//! both figures and their ratio (chatpipe / Go).
//!
//! ```sh
//! cargo build --release --bins --examples                     # chatpipe, loadgen and this driver
//! target/release/examples/versus --clients 1000 --rate 1000 --seconds 10
//! target/release/examples/versus --scenario step --clients 1000 --rate 500
//! target/release/examples/versus --scenario idle --clients 10000
//! ```
//!
//! Absolute figures on shared machines move by 2× between machines and days; the ratio of two
//! servers measured in the same run is what carries from one machine to the next. Each server is
//! started by this driver in a fresh temporary directory on a free port and stopped after its
//! scenario. chatpipe runs its default configuration (history and the SQLite store on, the
//! database in that directory); the only settings are the listen address, the rate limit off
//! (`[rate_limit] per_second = 0`, which the load needs) and the other doors off. `--bench-row`
//! adds a second, labelled chatpipe row with `examples/bench.toml`'s history off and store off.
//!
//! The Go seed is built with `go build` into the temporary directory at run time; without `go`
//! (or the seed's sources) chatpipe is measured alone.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Which load to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Everyone in one room, everyone sending: server CPU per delivery and p99.
    Busy,
    /// The highest rate with p99 under `--p99-ms` and nothing lost.
    Step,
    /// Idle clients: server memory per client.
    Idle,
    /// All three.
    All,
}

/// Runs one loadgen scenario against chatpipe and against the Go seed design and prints both
/// figures and their ratio (chatpipe / Go).
#[derive(Debug, clap::Parser)]
#[command(name = "versus")]
struct Cli {
    /// What to measure.
    #[arg(long, value_enum, default_value = "busy")]
    scenario: Scenario,
    /// Clients to connect.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Lines per second over all senders (with `step`: the first step).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long the senders send (with `idle`: how long the clients stay).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// With `step`: the p99 bound in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    p99_ms: f64,
    /// Spread the clients over the source addresses 127.0.0.1 … 127.0.0.K (passed to loadgen).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Also measure chatpipe with `examples/bench.toml`'s settings (history off, store off).
    #[arg(long)]
    bench_row: bool,
    /// Measure chatpipe alone.
    #[arg(long)]
    no_go: bool,
    /// The repository root (where `target/release` and `src` are).
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    root: PathBuf,
    /// Where `chatpipe` and `examples/loadgen` are; default: the release build
    /// ($CARGO_TARGET_DIR/release, else ROOT/target/release). A debug build works for trying the
    /// driver, but its figures say nothing.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The Go seed's sources; default: ROOT/../shared/peers/seed-go.
    #[arg(long)]
    seed_go: Option<PathBuf>,
}

/// A failure of the driver itself (not a slow figure): the run stops with a message.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

/// A server under test: its process, its directory (removed when this is dropped) and address.
struct Server {
    label: String,
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// loadgen must send the username at once (the Go seed prompts for nothing).
    no_prompt: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start one of the compared servers.
enum Design {
    /// chatpipe with a config file written into its directory.
    Chatpipe { label: String, config: String },
    /// The Go seed binary built at run time.
    Go { binary: PathBuf },
}

impl Design {
    fn label(&self) -> String {
        match self {
            Design::Chatpipe { label, .. } => label.clone(),
            Design::Go { .. } => "Go seed design".into(),
        }
    }
}

/// One figure of one scenario: its name, its unit, and whether lower is better.
struct Figure {
    name: &'static str,
    unit: &'static str,
    lower_is_better: bool,
}

fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    match drive(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("versus: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn drive(cli: &Cli) -> Result<(), Failure> {
    // Where cargo put the release build: $CARGO_TARGET_DIR when set, else ROOT/target.
    let release = cli.bin_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| cli.root.join("target"), PathBuf::from)
            .join("release")
    });
    let chatpipe = release.join("chatpipe");
    let loadgen = release.join("examples/loadgen");
    for binary in [&chatpipe, &loadgen] {
        if !binary.exists() {
            return Err(Failure(format!(
                "{} is missing: run `cargo build --release --bins --examples` first",
                binary.display()
            )));
        }
    }
    // Absolute, since the servers run in their own directories.
    let chatpipe = std::path::absolute(&chatpipe)?;
    let loadgen = std::path::absolute(&loadgen)?;
    let sources = newest_source(&cli.root);
    for binary in [&chatpipe, &loadgen] {
        let built = std::fs::metadata(binary)?.modified()?;
        if sources.is_some_and(|newest| newest > built) {
            eprintln!(
                "versus: warning: {} is older than the sources: run `cargo build --release --bins --examples` first for figures of the current code",
                binary.display()
            );
        }
    }
    let work = tempfile::Builder::new().prefix("versus-").tempdir()?;
    let mut designs = vec![Design::Chatpipe {
        label: "chatpipe (default config)".into(),
        config: chatpipe_config(false),
    }];
    if cli.bench_row {
        designs.push(Design::Chatpipe {
            label: "chatpipe (bench.toml: history off, store off)".into(),
            config: chatpipe_config(true),
        });
    }
    if cli.no_go {
        println!("Go seed design: not measured (--no-go)");
    } else {
        let seed = cli
            .seed_go
            .clone()
            .unwrap_or_else(|| cli.root.join("../shared/peers/seed-go"));
        match build_seed(&std::path::absolute(&seed)?, work.path()) {
            Ok(binary) => designs.push(Design::Go { binary }),
            Err(Failure(why)) => println!("Go seed design: not measured ({why}); chatpipe alone"),
        }
    }
    println!("machine: {}", machine());
    let scenarios = match cli.scenario {
        Scenario::All => vec![Scenario::Busy, Scenario::Step, Scenario::Idle],
        one => vec![one],
    };
    for scenario in scenarios {
        let mut rows = Vec::new();
        for design in &designs {
            eprintln!("versus: {:?} against {}", scenario, design.label());
            let server = start(design, &chatpipe)?;
            match run_loadgen(cli, scenario, &loadgen, &server) {
                Ok(json) => rows.push((server.label.clone(), json)),
                // The yardstick failing (e.g. the Go design dropping clients it finds slow
                // before they joined) is a finding to print, not a reason to stop the run.
                Err(Failure(why)) if matches!(design, Design::Go { .. }) => {
                    println!("Go seed design: no figures for {scenario:?}: {why}");
                    rows.push((server.label.clone(), serde_json::Value::Null));
                }
                Err(failure) => return Err(failure),
            }
            drop(server);
        }
        report(cli, scenario, &rows);
    }
    drop(work);
    Ok(())
}

/// The chatpipe configuration for a run: the defaults but for what the load needs (the rate
/// limit off) and the doors the load does not use (off, so nothing listens on a fixed port).
/// `bench` adds `examples/bench.toml`'s history off and store off.
pub fn chatpipe_config(bench: bool) -> String {
    let mut config = String::from(
        "# Written by examples/versus.rs: the defaults, but the rate limit off (the load needs\n\
         # it) and the doors the load does not use off.\n\
         [rate_limit]\nper_second = 0\n\n[admin]\nlisten = \"\"\n\n[web]\nlisten = \"\"\n\n[irc]\nlisten = \"\"\n",
    );
    if bench {
        config.push_str("\n[rooms]\nhistory = 0\n\n[storage]\npath = \"\"\n");
    }
    config
}

/// Builds the Go seed into `into`; the reason when it cannot.
fn build_seed(seed: &Path, into: &Path) -> Result<PathBuf, Failure> {
    if !seed.join("main.go").exists() {
        return Err(Failure(format!("no Go sources at {}", seed.display())));
    }
    let binary = into.join("seed-go-server");
    let mut go = Command::new("go");
    // go needs a build cache; with no home (some CI containers) it gets one in `into`.
    if ["GOCACHE", "XDG_CACHE_HOME", "HOME"]
        .iter()
        .all(|name| std::env::var_os(name).is_none())
    {
        go.env("GOCACHE", into.join("go-cache"));
    }
    let output = go
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(seed)
        // Never fetch a newer toolchain: the seed needs only the standard library.
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Failure("`go` is not installed (apt-get install golang-go)".into())
            }
            _ => Failure(format!("cannot run go: {e}")),
        })?;
    if !output.status.success() {
        return Err(Failure(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(binary)
}

/// A port free right now on 127.0.0.1 (the server binds it a moment later).
fn free_port() -> Result<u16, Failure> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a server in a fresh directory and waits until it accepts connections.
fn start(design: &Design, chatpipe: &Path) -> Result<Server, Failure> {
    let dir = tempfile::Builder::new()
        .prefix("versus-server-")
        .tempdir()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut command = match design {
        Design::Chatpipe { config, .. } => {
            let path = dir.path().join("chatpipe.toml");
            std::fs::write(&path, config)?;
            let mut command = Command::new(chatpipe);
            command
                .arg("--config")
                .arg(&path)
                .arg("--listen")
                .arg(addr.to_string());
            command
        }
        Design::Go { binary } => {
            let mut command = Command::new(binary);
            command.arg("-addr").arg(addr.to_string());
            command
        }
    };
    let child = command
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| Failure(format!("cannot start {}: {e}", design.label())))?;
    let mut server = Server {
        label: design.label(),
        child,
        addr,
        dir,
        no_prompt: matches!(design, Design::Go { .. }),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = server.child.try_wait()? {
            return Err(Failure(format!(
                "{} exited ({status}) before listening: {}",
                server.label,
                log_tail(&server)
            )));
        }
        if Instant::now() > deadline {
            return Err(Failure(format!(
                "{} did not listen on {addr} within 30 s: {}",
                server.label,
                log_tail(&server)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

fn log_tail(server: &Server) -> String {
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Runs loadgen's scenario against `server`; its JSON result.
fn run_loadgen(
    cli: &Cli,
    scenario: Scenario,
    loadgen: &Path,
    server: &Server,
) -> Result<serde_json::Value, Failure> {
    let mut command = Command::new(loadgen);
    command
        .args(["--addr", &server.addr.to_string()])
        .args(["--clients", &cli.clients.to_string()])
        .args(["--rate", &cli.rate.to_string()])
        .args(["--seconds", &cli.seconds.to_string()])
        .args(["--sources", &cli.sources.to_string()])
        .args(["--pid", &server.child.id().to_string()]);
    match scenario {
        Scenario::Step => {
            command.args(["--step", "--p99-ms", &cli.p99_ms.to_string()]);
        }
        Scenario::Idle => {
            command.arg("--idle");
        }
        Scenario::Busy | Scenario::All => {}
    }
    if server.no_prompt {
        command.arg("--no-username-prompt");
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(Failure(format!(
            "loadgen against {} failed ({}); server log: {}",
            server.label,
            output.status,
            log_tail(server)
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .map_err(|e| Failure(format!("loadgen printed no JSON result ({e}): {last}")))
}

/// Reads one figure from loadgen's JSON result.
type ReadFigure = fn(&serde_json::Value) -> Option<f64>;

/// The figures of a scenario, read from loadgen's JSON.
fn figures(scenario: Scenario) -> Vec<(Figure, ReadFigure)> {
    let figure = |name, unit, lower_is_better| Figure {
        name,
        unit,
        lower_is_better,
    };
    match scenario {
        Scenario::Busy | Scenario::All => vec![
            (figure("server CPU per delivery", "µs", true), |j| {
                j["server_cpu_us_per_delivery"].as_f64()
            }),
            (figure("p99 latency", "ms", true), |j| {
                j["latency_ms"]["p99"].as_f64()
            }),
            (figure("deliveries lost", "", true), |j| j["lost"].as_f64()),
        ],
        Scenario::Step => vec![(
            figure(
                "highest rate held (p99 bound, nothing lost)",
                "lines/s",
                false,
            ),
            |j| j["highest_rate_held"].as_f64(),
        )],
        Scenario::Idle => vec![(figure("server memory per idle client", "KiB", true), |j| {
            j["server_kib_per_client"].as_f64()
        })],
    }
}

/// Prints a scenario's table: each figure for each server, and chatpipe / Go.
fn report(cli: &Cli, scenario: Scenario, rows: &[(String, serde_json::Value)]) {
    let mut out = std::io::stdout().lock();
    let what = match scenario {
        Scenario::Busy | Scenario::All => format!(
            "busy room: {} clients, {} lines/s, {} s",
            cli.clients, cli.rate, cli.seconds
        ),
        Scenario::Step => format!(
            "saturation: {} clients, from {} lines/s up, p99 <= {} ms",
            cli.clients, cli.rate, cli.p99_ms
        ),
        Scenario::Idle => format!("idle: {} clients for {} s", cli.clients, cli.seconds),
    };
    let _ = writeln!(out, "\n{what}");
    let go = rows.iter().find(|(label, _)| label == "Go seed design");
    for (figure, read) in figures(scenario) {
        let unit = if figure.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", figure.unit)
        };
        let direction = if figure.lower_is_better {
            "below 1: chatpipe lower, better"
        } else {
            "above 1: chatpipe higher, better"
        };
        let _ = writeln!(out, "  {}{unit}", figure.name);
        let go_value = go.and_then(|(_, json)| read(json));
        for (label, json) in rows {
            let value = read(json);
            let shown = value.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
            let ratio = match (value, go_value) {
                (Some(ours), Some(theirs)) if label != "Go seed design" && theirs > 0.0 => {
                    format!("   chatpipe / Go = {:.2}  ({direction})", ours / theirs)
                }
                _ => String::new(),
            };
            let _ = writeln!(out, "    {label:<48} {shown:>12}{ratio}");
        }
    }
    for (label, json) in rows {
        let _ = writeln!(out, "  loadgen result, {label}: {json}");
    }
}

/// `nproc` and the CPU model, so a figure says where it was measured.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {cores}, {model}")
}

/// The newest modification time among the sources the release binaries are built from.
fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(path: &Path, newest: &mut Option<SystemTime>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(Some(modified));
        }
    }
    let mut newest = None;
    for part in ["src", "Cargo.toml", "Cargo.lock", "examples/loadgen.rs"] {
        walk(&root.join(part), &mut newest);
    }
    newest
}
