//! Rule kinds beyond word lists and patterns, each configured by its own table in a filter file.
//!
//! - [`links`]: URLs and bare domains, with an allow-list of domains;
//! - [`shouting`]: long lines mostly in capitals;
//! - [`repetition`]: the same (or nearly the same) line repeated by one sender within a window.

pub mod links;
pub mod repetition;
pub mod shouting;

pub use links::{LinkRule, LinksConfig};
pub use repetition::{RepetitionConfig, RepetitionRule};
pub use shouting::ShoutingConfig;
