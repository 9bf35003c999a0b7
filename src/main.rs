//! The `chatpipe` command line: parses arguments, sets up logging, and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

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
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address to listen on, overriding the config file (e.g. 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
    /// Configuration file; `./chatpipe.toml` is used when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of filter files.
    #[arg(long, default_value = "filters")]
    filters: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match cli.command {
        Some(Cmd::Serve(args)) => args,
        None => cli.serve,
    };
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chatpipe: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        let server = Server::new(config);
        let listener = server.bind().await.map_err(|e| e.to_string())?;
        server
            .run(listener, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

/// The file given, else `./chatpipe.toml` if present, else the defaults.
fn load_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    let default = std::path::Path::new("chatpipe.toml");
    match path {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string()),
        None if default.exists() => Config::from_file(default).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
