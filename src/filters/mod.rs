//! Filters: the per-message moderation rules run by the worker pool.
//!
//! - [`filter`]: the [`Filter`] trait, [`Verdict`] and [`filter_fn`];
//! - [`chain`]: [`FilterChain`] (filters in order) and [`FilterSet`] (the live, reloadable chain).

pub mod chain;
pub mod filter;

pub use chain::{FilterChain, FilterSet, Judgement, Outcome};
pub use filter::{Filter, FnFilter, Message, Verdict, filter_fn};
pub mod normalize;
