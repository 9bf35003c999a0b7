//! The [`Stage`] trait: a function from a stream of events to a stream of events.
//!
//! Stages are the general extension point, for work that is stateful or depends on time (a rate
//! limiter, a "same line three times in ten seconds" detector). Per-message rules that need no
//! state are better written as a [`Filter`](crate::filters::Filter), which the worker pool runs in
//! parallel.
//!
//! Because a stage is only a stream transformation, any stage can be tested alone: feed it a
//! fixture stream with [`crate::testing`] and collect what comes out.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_util::task::TaskTracker;

use crate::event::Event;
use crate::metrics::Metrics;

/// A boxed stream of events, the currency between stages.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send + 'static>>;

/// What a stage may use while it is being wired in.
#[derive(Debug, Clone, Default)]
pub struct StageContext {
    /// Tasks a stage spawns (the worker pool's workers) are spawned here, so the server can wait
    /// for them at shutdown. A spawned task must end once its input stream ends.
    pub tasks: TaskTracker,
    /// The server's metrics, for stages that count what they drop or decide.
    pub metrics: Arc<Metrics>,
}

/// A stream-to-stream pipeline stage.
///
/// # Contract
/// - For each client, events leave in the order they came in (a stage may hold some back, but may
///   not reorder one client's events).
/// - The output ends after the input ends and everything held back has been released: that is how
///   a graceful shutdown drains the pipeline.
/// - Nothing is dropped silently: a stage that drops a line either tells the sender (by emitting a
///   [`Body::Notice`](crate::event::Body::Notice) in its place) or counts the drop.
///
/// # Example
/// A stage that upper-cases every chat line:
/// ```
/// use chatpipe::{Body, EventStream, Stage, StageContext};
/// use futures::StreamExt;
///
/// struct Upper;
///
/// impl Stage for Upper {
///     fn name(&self) -> &str {
///         "upper"
///     }
///     fn apply(self: Box<Self>, input: EventStream, _: &StageContext) -> EventStream {
///         Box::pin(input.map(|mut event| {
///             if let Body::Chat(text) = &mut event.body {
///                 *text = text.to_uppercase();
///             }
///             event
///         }))
///     }
/// }
/// ```
pub trait Stage: Send + 'static {
    /// The stage's name, used to insert other stages before or after it.
    fn name(&self) -> &str;

    /// Wires the stage onto `input` and returns its output.
    fn apply(self: Box<Self>, input: EventStream, ctx: &StageContext) -> EventStream;
}
