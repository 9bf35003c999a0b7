//! A server with a custom filter plugged in: lines in all capitals are blocked. The filter runs
//! after the filters loaded from `./filters` (when that directory exists, as in the repository).
//! Ctrl-C or SIGTERM shut it down gracefully.
//!
//! ```sh
//! cargo run --example custom_filter            # serves on 127.0.0.1:8080
//! cargo run --example custom_filter -- 127.0.0.1:9000
//! ```
//! Then `nc 127.0.0.1 8080`, pick a name and type `HELLO EVERYONE`.

use std::sync::Arc;

use chatpipe::filters::{Filter, Message, Verdict};
use chatpipe::{Config, Server};

/// Blocks lines of at least `min_letters` letters that are all capitals.
pub struct NoShouting {
    /// Short lines ("OK", "LOL") are not shouting.
    pub min_letters: usize,
}

impl Filter for NoShouting {
    fn name(&self) -> &str {
        "no-shouting"
    }

    fn check(&self, message: &Message<'_>) -> Verdict {
        let mut letters = 0;
        for c in message.text.chars().filter(|c| c.is_alphabetic()) {
            if c.is_lowercase() {
                return Verdict::Pass;
            }
            letters += 1;
        }
        if letters >= self.min_letters {
            Verdict::Block("Please don't shout.".into())
        } else {
            Verdict::Pass
        }
    }
}

/// The server: the standard pipeline with `NoShouting` after the file-configured filters.
pub fn server(config: Config) -> Server {
    Server::new(config).pipeline(|p| p.filter(Arc::new(NoShouting { min_letters: 5 })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let mut config = Config::default();
    if let Some(listen) = std::env::args().nth(1) {
        config.server.listen = listen;
    }
    let filters = config.filters.dir.clone();
    let mut server = server(config);
    if filters.is_dir() {
        server = server.filters_dir(&filters)?;
    }
    let listener = server.bind().await?;
    server.run(listener, shutdown_signal()).await?;
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
