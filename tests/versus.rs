//! The benchmark driver against the Go seed (`examples/versus.rs`): the configuration it gives
//! chatpipe is the default one but for what the load needs, as docs/performance.md says.

use std::path::Path;

#[path = "../examples/versus.rs"]
#[allow(dead_code, unreachable_pub)]
mod versus;

/// History and the SQLite store keep their defaults; only the rate limit is off and the doors
/// the load does not use are closed (so nothing listens on a fixed port).
#[test]
fn versus_runs_chatpipe_on_its_default_configuration() {
    let defaults = chatpipe::config::Config::default();
    let config = chatpipe::config::Config::from_toml(
        &versus::chatpipe_config(false),
        Path::new("chatpipe.toml"),
    )
    .unwrap();
    assert_eq!(config.rooms.history, defaults.rooms.history);
    assert!(config.rooms.history > 0);
    assert_eq!(config.storage.path, defaults.storage.path);
    assert_ne!(config.storage.path, Path::new(""));
    assert_eq!(config.rate_limit.per_second, 0);
    for listen in [&config.web.listen, &config.irc.listen, &config.admin.listen] {
        assert_eq!(listen, "");
    }
    assert_eq!(
        config.server.max_connections,
        defaults.server.max_connections
    );
}

/// The labelled second row: examples/bench.toml's history off and store off.
#[test]
fn versus_bench_row_turns_history_and_store_off() {
    let config = chatpipe::config::Config::from_toml(
        &versus::chatpipe_config(true),
        Path::new("chatpipe.toml"),
    )
    .unwrap();
    assert_eq!(config.rooms.history, 0);
    assert_eq!(config.storage.path, Path::new(""));
    assert_eq!(config.rate_limit.per_second, 0);
}
