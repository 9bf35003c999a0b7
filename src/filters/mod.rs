//! Filters: the per-message moderation rules run by the worker pool.
//!
//! - [`filter`]: the [`Filter`] trait, [`Verdict`] and [`filter_fn`];
//! - [`chain`]: [`FilterChain`] (filters in order) and [`FilterSet`] (the live, reloadable chain);
//! - [`normalize`]: evasion-resistant text normalisation;
//! - [`words`]: many words compiled into one matcher;
//! - [`rules`]: links, shouting and repetition rules;
//! - [`rule_filter`]: [`RuleFilter`], the filter a filter file describes;
//! - [`file`](mod@file): the filter file format and its validation;
//! - [`loader`]: loading the filters directory and reloading it ([`FilterRules`]);
//! - [`fixture_tests`]: running the `[[test]]` fixtures of filter files.

pub mod chain;
pub mod file;
pub mod filter;
pub mod fixture_tests;
pub mod loader;
pub mod normalize;
pub mod rule_filter;
pub mod rules;
pub mod words;

pub use chain::{FilterChain, FilterSet, Judgement, Outcome};
pub use file::{FilterError, FilterErrors, FilterFile, LoadedFilter};
pub use filter::{Filter, FnFilter, Message, Verdict, filter_fn};
pub use fixture_tests::{TestReport, run_fixture_tests};
pub use loader::{FilterRules, load_dir};
pub use rule_filter::RuleFilter;
