//! The `chatpipe` command line: parses arguments, sets up logging, and calls the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chatpipe::filters::{FilterRules, load_dir, run_fixture_tests};
use chatpipe::{Config, Server};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chatpipe",
    version,
    about = "A chat server with a pipeline of moderation stages"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Run the [[test]] fixtures in the filter files of DIR (default: ./filters).
    TestFilters {
        /// The filters directory.
        dir: Option<PathBuf>,
    },
    /// Print the Argon2 hash of a password for `[[accounts]]`: asked for twice without echo at a
    /// terminal, else read as one line from standard input.
    HashPassword,
    /// Print the audit log of moderation actions from the database (a running server's too).
    Audit {
        /// The database; default: `[storage] path` of ./chatpipe.toml, else chatpipe.db.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Only entries this recent, e.g. 1h, 2d.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only actions by this moderator (or `the NAME filter`).
        #[arg(long)]
        who: Option<String>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a self-signed certificate and key (cert.pem, key.pem) for trying TLS locally.
    GenCert {
        /// A host name or IP address the certificate is for; repeat for more. Default:
        /// localhost, 127.0.0.1 and ::1.
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// The directory to write them to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Replace cert.pem and key.pem if they exist (otherwise nothing is written).
        #[arg(long)]
        force: bool,
    },
    /// Copy the database, consistently, even while a server runs on it (SQLite's online backup).
    Backup {
        /// The copy to write; it must not exist yet.
        file: PathBuf,
        /// The database; default: `[storage] path` of ./chatpipe.toml, else chatpipe.db.
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Default, clap::Args)]
struct ServeArgs {
    /// Address to listen on, overriding the config file (e.g. 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
    /// Configuration file; `./chatpipe.toml` is used when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of filter files, overriding the config file (default: ./filters).
    #[arg(long)]
    filters: Option<PathBuf>,
}

impl ServeArgs {
    fn is_empty(&self) -> bool {
        self.listen.is_none() && self.config.is_none() && self.filters.is_none()
    }

    /// These arguments, with those given after `serve` winning over those given before it.
    fn or(self, before: ServeArgs) -> ServeArgs {
        ServeArgs {
            listen: self.listen.or(before.listen),
            config: self.config.or(before.config),
            filters: self.filters.or(before.filters),
        }
    }
}

/// Log lines go to stdout; a line that cannot be written (the reading end of a pipe closed, a
/// full disk) is dropped and counted, never a reason to stop the server or its shutdown.
struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stdout().write_all(buf).is_err() {
            chatpipe::metrics::LOG_LINES_DROPPED.inc();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stdout().flush();
        Ok(())
    }
}

/// Writes a line to stderr, ignoring failure (`eprintln!` panics on a closed pipe).
fn say(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // Colours for a person at a terminal; plain text for log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| LogSink)
        // Its own report of a failed write goes to stderr with `eprintln!`, which panics when
        // stderr is the same closed pipe.
        .log_internal_errors(false)
        .init();
    let result = match cli.command {
        Some(Cmd::Serve(args)) => serve(args.or(cli.serve)),
        None => serve(cli.serve),
        Some(_) if !cli.serve.is_empty() => {
            say(format_args!(
                "chatpipe: --listen, --config and --filters are options of `serve`; they mean nothing to this command"
            ));
            return ExitCode::from(2);
        }
        Some(Cmd::TestFilters { dir }) => {
            test_filters(dir.as_deref().unwrap_or(Path::new("filters")))
        }
        Some(Cmd::HashPassword) => hash_password(),
        Some(Cmd::Audit {
            db,
            since,
            who,
            json,
        }) => audit(db, since, who.as_deref(), json),
        Some(Cmd::Backup { file, db }) => backup(db, &file),
        Some(Cmd::GenCert { names, out, force }) => gen_cert(names, &out, force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            say(format_args!("chatpipe: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "--listen: `{listen}` is not an address such as 127.0.0.1:8080"
            ));
        }
        config.server.listen = listen;
    }
    let explicit_filters = args.filters.is_some();
    if let Some(dir) = args.filters {
        config.filters.dir = dir;
    }
    let filters_dir = config.filters.dir.clone();
    let mut server = Server::new(config);
    if explicit_filters || filters_dir.is_dir() {
        server = server
            .filters_dir(&filters_dir)
            .map_err(|errors| format!("bad filters in {}:\n{errors}", filters_dir.display()))?;
    } else {
        tracing::warn!(dir = %filters_dir.display(), "no filters directory; running without filters");
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        // Handlers first: a signal that arrives once `listening on` is logged must find them.
        let shutdown = shutdown_signal();

        let listener = server.bind().await.map_err(|e| e.to_string())?;
        server = server.bind_tls().await.map_err(|e| e.to_string())?;
        // Reloads the filters and the TLS certificate on SIGHUP; never stops the server.
        tokio::spawn(reload_on_sighup(
            server.filter_rules(),
            server.tls_certificates(),
        ));
        if let Some(web) = server.bind_web().await.map_err(|e| e.to_string())? {
            server = server.web_listener(web);
        }
        if let Some(irc) = server.bind_irc().await.map_err(|e| e.to_string())? {
            server = server.irc_listener(irc);
        }
        // The chat service matters more than its dashboard: a busy admin port is reported, and
        // the server runs without the endpoints.
        match server.bind_admin().await {
            Ok(Some(admin)) => server = server.admin_listener(admin),
            Ok(None) => {}
            Err(error) => {
                tracing::error!("{error}; running without the admin endpoints");
                say(format_args!(
                    "chatpipe: {error}; running without the admin endpoints"
                ));
            }
        }
        server
            .run(listener, shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}

/// `chatpipe gen-cert`.
fn gen_cert(mut names: Vec<String>, out: &Path, force: bool) -> Result<(), String> {
    use chatpipe::net::tls::{DEFAULT_CERT_NAMES, write_self_signed};
    if names.is_empty() {
        names = DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
    }
    let (cert, key) = write_self_signed(&names, out, force).map_err(|e| e.to_string())?;
    say(format_args!(
        "chatpipe: wrote {} and {} for {} (self-signed: for trying TLS, not for the internet)",
        cert.display(),
        key.display(),
        names.join(", ")
    ));
    Ok(())
}

/// Runs the fixture tests of every filter file in `dir`; fails if any fails or a file is bad.
fn test_filters(dir: &Path) -> Result<(), String> {
    let filters = load_dir(dir).map_err(|errors| format!("bad filters:\n{errors}"))?;
    let report = run_fixture_tests(&filters);
    for failure in &report.failures {
        println!("FAIL {failure}");
    }
    for filter in &filters {
        println!(
            "{}: {} tests, {} chain tests",
            filter.path.display(),
            filter.tests.len(),
            filter.chain_tests.len()
        );
    }
    println!("{} passed, {} failed", report.passed, report.failures.len());
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} filter tests failed", report.failures.len()))
    }
}

/// Asks for a password (twice, without echo, at a terminal; one line from a pipe) and prints
/// its hash.
fn hash_password() -> Result<(), String> {
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("Again, to confirm: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the two passwords differ; nothing was hashed".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        return Err("empty password".into());
    }
    let hash = chatpipe::passwords::hash_password(&password)?;
    println!("{hash}");
    Ok(())
}

/// The database `--db` names, else the one the configuration file names.
fn database(db: Option<PathBuf>) -> Result<PathBuf, String> {
    match db {
        Some(db) => Ok(db),
        None => {
            let path = load_config(None)?.storage.path;
            if path.as_os_str().is_empty() {
                Err("the configuration keeps no database ([storage] path = \"\"); give --db".into())
            } else {
                Ok(path)
            }
        }
    }
}

/// `chatpipe audit`.
fn audit(
    db: Option<PathBuf>,
    since: Option<std::time::Duration>,
    who: Option<&str>,
    json: bool,
) -> Result<(), String> {
    use std::io::Write;
    let path = database(db)?;
    let conn = chatpipe::store::open_read_only(&path).map_err(|e| e.to_string())?;
    let since = since.and_then(|d| std::time::SystemTime::now().checked_sub(d));
    let entries = chatpipe::store::audit_log(&conn, since, who).map_err(|e| e.to_string())?;
    let time = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let mut out = std::io::stdout().lock();
    for entry in &entries {
        let line = if json {
            serde_json::json!({
                "time": time(entry.at),
                "who": entry.who,
                "whom": entry.whom,
                "what": entry.what,
                "why": entry.why,
                "until": entry.until.map(time),
            })
            .to_string()
        } else {
            let until = entry
                .until
                .map(|t| format!(" until {}", time(t)))
                .unwrap_or_default();
            let why = if entry.why.is_empty() {
                String::new()
            } else {
                format!(": {}", entry.why)
            };
            format!(
                "{}  {} {} {}{until}{why}",
                time(entry.at),
                entry.who,
                entry.what,
                entry.whom
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

/// `chatpipe backup FILE`.
fn backup(db: Option<PathBuf>, file: &Path) -> Result<(), String> {
    let path = database(db)?;
    chatpipe::store::backup(&path, file).map_err(|e| e.to_string())?;
    say(format_args!(
        "chatpipe: {} backed up to {}",
        path.display(),
        file.display()
    ));
    Ok(())
}

/// The file given, else `./chatpipe.toml` if present, else the defaults.
fn load_config(path: Option<&Path>) -> Result<Config, String> {
    let default = Path::new("chatpipe.toml");
    match path {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string()),
        None if default.exists() => Config::from_file(default).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Installs the SIGHUP handler now, and returns a task body that reloads the filters on every
/// SIGHUP for as long as the runtime lives. Without a filters directory a SIGHUP is logged and
/// changes nothing: it must never stop the server.
fn reload_on_sighup(
    rules: Option<FilterRules>,
    tls: Option<chatpipe::net::tls::TlsCertificates>,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let hangups = signal(SignalKind::hangup());
        async move {
            let Ok(mut hangups) = hangups else {
                tracing::warn!(
                    "cannot listen for SIGHUP; filters reload only with [filters] watch"
                );
                return;
            };
            while hangups.recv().await.is_some() {
                if let Some(tls) = tls.clone() {
                    let _ = tokio::task::spawn_blocking(move || tls.reload_and_log()).await;
                }
                let Some(rules) = &rules else {
                    tracing::info!("SIGHUP: no filters directory, so nothing to reload");
                    continue;
                };
                tracing::info!("SIGHUP: reloading filters");
                // Reading and compiling files blocks; keep it off the async workers.
                let rules = rules.clone();
                let _ = tokio::task::spawn_blocking(move || rules.reload_and_log()).await;
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        drop((rules, tls));
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    let error = term.err().or(int.err());
                    tracing::warn!(?error, "cannot listen for SIGTERM/SIGINT; use Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
