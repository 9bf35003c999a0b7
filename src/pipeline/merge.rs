//! Merging: joins several event streams into the hub's single input.
//!
//! The worker pool's partitions are merged here. Each input stream's order is kept and every
//! sender lives in exactly one partition, so each sender's events (commands and chat alike) reach
//! the hub in the order they were sent. The hub then fixes one total order for each room.

use futures::stream::select_all;

use super::stage::EventStream;

/// One stream yielding every event of `streams`, each stream's events in their order. Ends when
/// all of them have ended.
pub fn merge(streams: Vec<EventStream>) -> EventStream {
    Box::pin(select_all(streams))
}
