//! The library's top-level error types, re-exported from the modules that own them: each module
//! owns its error type, so nothing here imports back into them.

pub use crate::config::ConfigError;
pub use crate::server::ServerError;
