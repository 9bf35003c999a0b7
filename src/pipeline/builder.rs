//! [`PipelineBuilder`]: assembles the stages in order, with the user's stages and filters
//! inserted at named points.
//!
//! The standard pipeline is `rate_limit ─► parse ─► worker_pool`; the worker pool's output is
//! merged into the hub's input. A program adds its own [`Stage`] before or after any named stage,
//! and its own [`Filter`] before or after the filters loaded from the filters directory.

use std::sync::Arc;

use super::parse::ParseStage;
use super::rate_limit::RateLimitStage;
use super::stage::{EventStream, Stage, StageContext};
use super::worker_pool::WorkerPoolStage;
use crate::config::Config;
use crate::filters::{Filter, FilterSet};

/// A stage name given to [`PipelineBuilder::stage_before`] or [`PipelineBuilder::stage_after`]
/// that is not in the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no pipeline stage is named `{name}` (stages: {known})")]
pub struct UnknownStage {
    /// The name asked for.
    pub name: String,
    /// The stages there are.
    pub known: String,
}

/// Builds a [`Pipeline`].
///
/// ```
/// use chatpipe::{Config, PipelineBuilder};
/// use chatpipe::filters::{filter_fn, Verdict};
///
/// let pipeline = PipelineBuilder::standard(&Config::default())
///     .filter(filter_fn("no-spoilers", |m| {
///         if m.text.contains("ending") { Verdict::Block("No spoilers!".into()) } else { Verdict::Pass }
///     }))
///     .build()
///     .unwrap();
/// assert_eq!(pipeline.stage_names(), ["rate_limit", "parse", "worker_pool"]);
/// ```
pub struct PipelineBuilder {
    stages: Vec<Box<dyn Stage>>,
    filters: FilterSet,
    /// The first misplaced insertion, reported by `build`.
    error: Option<UnknownStage>,
}

impl PipelineBuilder {
    /// A builder with no stages and an empty filter set.
    pub fn empty() -> Self {
        PipelineBuilder {
            stages: Vec::new(),
            filters: FilterSet::new(),
            error: None,
        }
    }

    /// The standard pipeline for `config`: `rate_limit`, `parse`, `worker_pool`.
    pub fn standard(config: &Config) -> Self {
        let filters = FilterSet::new();
        let mut builder = PipelineBuilder::empty();
        builder.stages = vec![
            Box::new(RateLimitStage::new(&config.rate_limit)),
            Box::new(ParseStage),
            Box::new(WorkerPoolStage::new(
                config.pipeline.worker_count(),
                filters.clone(),
            )),
        ];
        builder.filters = filters;
        builder
    }

    /// Appends a stage at the end (just before the hub).
    pub fn stage(mut self, stage: impl Stage) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// Inserts a stage just before the stage named `name`.
    pub fn stage_before(self, name: &str, stage: impl Stage) -> Self {
        self.insert(name, 0, Box::new(stage))
    }

    /// Inserts a stage just after the stage named `name`.
    pub fn stage_after(self, name: &str, stage: impl Stage) -> Self {
        self.insert(name, 1, Box::new(stage))
    }

    /// Adds a filter that runs after the filters from the filters directory.
    pub fn filter(self, filter: Arc<dyn Filter>) -> Self {
        self.filters.push_last(filter);
        self
    }

    /// Adds a filter that runs before the filters from the filters directory.
    pub fn filter_first(self, filter: Arc<dyn Filter>) -> Self {
        self.filters.push_first(filter);
        self
    }

    /// The live filter set the worker pool runs; reloads go through it.
    pub fn filters(&self) -> &FilterSet {
        &self.filters
    }

    /// The pipeline.
    ///
    /// # Errors
    /// [`UnknownStage`] when a stage was inserted relative to a name that is not there.
    pub fn build(self) -> Result<Pipeline, UnknownStage> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(Pipeline {
                stages: self.stages,
                filters: self.filters,
            }),
        }
    }

    fn insert(mut self, name: &str, offset: usize, stage: Box<dyn Stage>) -> Self {
        match self.stages.iter().position(|s| s.name() == name) {
            Some(index) => self.stages.insert(index + offset, stage),
            None => {
                let known = self.stage_names().join(", ");
                self.error.get_or_insert(UnknownStage {
                    name: name.to_owned(),
                    known,
                });
            }
        }
        self
    }

    fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name()).collect()
    }
}

/// An assembled chain of stages, ready to be wired onto the sessions' input.
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
    filters: FilterSet,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stages", &self.stage_names())
            .field("filters", &self.filters)
            .finish()
    }
}

impl Pipeline {
    /// The stage names, in order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// The live filter set.
    pub fn filters(&self) -> &FilterSet {
        &self.filters
    }

    /// Wires every stage onto `input`, in order, and returns the last stage's output.
    pub fn apply(self, input: EventStream, ctx: &StageContext) -> EventStream {
        self.stages
            .into_iter()
            .fold(input, |stream, stage| stage.apply(stream, ctx))
    }
}
