//! Loading the filters directory, and [`FilterRules`]: the loaded rules kept live and reloadable.
//!
//! Every `*.toml` file in the directory is one filter, named after its file stem, applied in file
//! name order (`10-links.toml` before `20-profanity.toml`). Loading collects every problem in every
//! file before failing. A reload validates the complete new directory first and swaps it in with
//! one atomic store ([`FilterSet::replace_rules`]); an invalid directory leaves the old rules
//! running and reports every error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::chain::FilterSet;
use super::file::{FilterError, FilterErrors, FilterFile, LoadedFilter};
use super::filter::Filter;
use crate::metrics::Metrics;

/// Loads every filter file in `dir`, in file name order.
///
/// # Errors
/// Every problem in every file, each with file, line and column.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedFilter>, FilterErrors> {
    let whole_dir = |message: String| {
        FilterErrors(vec![FilterError {
            path: dir.to_owned(),
            line: 1,
            column: 1,
            message,
        }])
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| whole_dir(format!("cannot read the directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    paths.sort();
    let mut loaded = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(FilterError {
                    path: path.clone(),
                    line: 1,
                    column: 1,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match FilterFile::load(&path, &text) {
            Ok(filter) => loaded.push(filter),
            Err(found) => errors.extend(found),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(FilterErrors(errors))
    }
}

/// The rule filters of one directory, live in a [`FilterSet`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FilterRules {
    dir: Arc<PathBuf>,
    set: FilterSet,
    /// Counts reloads once the server has attached its metrics.
    metrics: Arc<std::sync::OnceLock<Arc<Metrics>>>,
}

impl FilterRules {
    /// Loads `dir` into `set`.
    ///
    /// # Errors
    /// Every problem in the directory; `set` is left unchanged then.
    pub fn load(dir: impl Into<PathBuf>, set: FilterSet) -> Result<FilterRules, FilterErrors> {
        let rules = FilterRules {
            dir: Arc::new(dir.into()),
            set,
            metrics: Arc::default(),
        };
        let names = rules.reload()?;
        tracing::info!(dir = %rules.dir.display(), filters = ?names, "filters loaded");
        Ok(rules)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory and swaps the new rules in atomically; returns the names of the
    /// filters now running.
    ///
    /// # Errors
    /// Every problem in the directory; the rules in force stay as they were.
    pub fn reload(&self) -> Result<Vec<String>, FilterErrors> {
        let loaded = load_dir(&self.dir)?;
        let enabled: Vec<&LoadedFilter> = loaded.iter().filter(|f| f.enabled).collect();
        let names = enabled.iter().map(|f| f.name.clone()).collect();
        self.set.replace_rules(
            enabled
                .into_iter()
                .map(|f| f.filter.clone() as Arc<dyn Filter>)
                .collect(),
        );
        Ok(names)
    }

    /// Counts this set's reloads (by result) in `metrics`. The first call wins.
    pub fn attach_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Reloads, logs the result and counts it, for signal handlers, watchers and `/reload`.
    pub fn reload_and_log(&self) -> Result<Vec<String>, FilterErrors> {
        let result = self.reload();
        if let Some(metrics) = self.metrics.get() {
            metrics.reload(result.is_ok());
        }
        match &result {
            Ok(names) => {
                tracing::info!(dir = %self.dir.display(), filters = ?names, "filters reloaded")
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!("{error}");
                }
                tracing::error!(
                    dir = %self.dir.display(),
                    errors = errors.0.len(),
                    "filter reload failed; the previous filters stay in force"
                );
            }
        }
        result
    }

    /// Polls the directory every `interval` and reloads when a file changed, until `stop`.
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let mut seen = fingerprint(&self.dir);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            // Listing the directory, reading files and compiling rules are blocking work: they
            // run on the blocking pool, never on an async worker.
            let rules = self.clone();
            let previous = std::mem::take(&mut seen);
            let Ok(now) = tokio::task::spawn_blocking(move || {
                let now = fingerprint(&rules.dir);
                if now != previous {
                    let _ = rules.reload_and_log();
                }
                now
            })
            .await
            else {
                return;
            };
            seen = now;
        }
    }
}

/// Names, sizes and modification times of the files in `dir`.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            Some((entry.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}
