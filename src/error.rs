//! Typed errors of the library. The binary adds context at its edge.

use std::path::{Path, PathBuf};

/// A configuration or filter file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the expected shape.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The file parsed, but some values make no sense.
    #[error("{}: {}", path.display(), problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
}

impl ConfigError {
    /// Turns a TOML error into a [`ConfigError::Parse`] with line and column.
    pub(crate) fn parse(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
        let (line, column, message) = toml_error_position(text, err);
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// Line, column and message of a TOML error in `text`; configuration and filter files report
/// their syntax errors the same way.
pub(crate) fn toml_error_position(text: &str, err: &toml::de::Error) -> (usize, usize, String) {
    let (line, column) = err
        .span()
        .map_or((1, 1), |span| crate::config::line_col(text, span.start));
    (line, column, err.message().trim().to_owned())
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen for {door} on {addr}: {source}")]
    Bind {
        /// Which listener: `the text door`, `the web door`, `the admin endpoints`, …
        door: &'static str,
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline cannot be assembled.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::UnknownStage),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The cluster could not be joined (and `[cluster] required` is on).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The hub stopped while the server was running: the server shut down instead of running
    /// on without delivering anything.
    #[error("{0}")]
    HubStopped(String),
}
