//! The pipeline: the chain of stream stages every line passes before it reaches the hub.
//!
//! ```text
//! sessions ─► rate_limit ─► parse ─► worker_pool (filters, N partitions) ─► merge ─► hub
//! ```
//!
//! - [`stage`]: the [`Stage`] trait and the stream type between stages;
//! - [`rate_limit`]: per-client limits ([`RateLimitStage`]);
//! - [`parse`]: commands versus chat ([`ParseStage`]);
//! - [`worker_pool`]: filters in parallel, order kept per sender ([`WorkerPoolStage`]);
//! - [`merge`]: joins the pool's partitions into the hub's input;
//! - [`builder`]: assembles the stages ([`PipelineBuilder`], [`Pipeline`]).

pub mod builder;
pub mod merge;
pub mod parse;
pub mod rate_limit;
pub mod stage;
pub mod worker_pool;

pub use builder::{Pipeline, PipelineBuilder, UnknownStage};
pub use parse::ParseStage;
pub use rate_limit::RateLimitStage;
pub use stage::{EventStream, Stage, StageContext};
pub use worker_pool::WorkerPoolStage;
