//! Server metrics in the Prometheus text format (`GET /metrics` on the admin listener).
//!
//! One [`Metrics`] per server, not a process-wide registry, so several servers in one process
//! (the test suite) count separately. Every handle is an atomic shared with the registry; the
//! hot paths only increment. Label values come from small fixed sets (reasons, actions) or from
//! filter file names, so the number of series stays bounded.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// Why a line was not delivered, for the reasons that are not a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Over the sender's rate limit.
    RateLimit,
    /// Longer than `max_line_bytes`.
    TooLong,
    /// Not UTF-8.
    InvalidUtf8,
    /// Queued for a client cut off as too slow.
    SlowClient,
    /// Handling it panicked (the sender was told).
    Panic,
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        DropReason::RateLimit,
        DropReason::TooLong,
        DropReason::InvalidUtf8,
        DropReason::SlowClient,
        DropReason::Panic,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::RateLimit => "rate_limit",
            DropReason::TooLong => "too_long",
            DropReason::InvalidUtf8 => "invalid_utf8",
            DropReason::SlowClient => "slow_client",
            DropReason::Panic => "panic",
        }
    }
}

/// Log lines that could not be written (a closed pipe, a full disk). Process-wide, because the
/// log sink is: the binary's log writer counts here, and every server's registry exports it.
pub static LOG_LINES_DROPPED: std::sync::LazyLock<Counter> =
    std::sync::LazyLock::new(Counter::default);

/// Every metric the server exports. See the README for the list with meanings.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Clients past the handshake.
    pub connected_clients: Gauge,
    /// Rooms that exist.
    pub rooms: Gauge,
    /// Lines read from clients after the handshake, good or bad.
    pub lines_received: Counter,
    /// Lines written to clients (one per recipient).
    pub lines_delivered: Counter,
    /// Lines not delivered, by `reason` (and `filter` for filter drops).
    pub lines_dropped: Family<Labels, Counter>,
    /// Filter decisions other than pass, by `filter` and `action`.
    pub filter_decisions: Family<Labels, Counter>,
    /// Lines over a client's rate limit.
    pub rate_limit_hits: Counter,
    /// Clients gone, by `reason`.
    pub disconnects: Family<Labels, Counter>,
    /// Refused usernames and logins, by `reason`.
    pub handshake_failures: Family<Labels, Counter>,
    /// Events waiting at the pipeline's input (sampled when scraped).
    pub pipeline_queue_depth: Gauge,
    /// From reading a line to the hub handling it.
    pub pipeline_latency: Histogram,
    /// From the hub queueing a line to a client's socket taking it.
    pub fanout_latency: Histogram,
    /// Filter reloads, by `result` (`ok`, `failed`).
    pub filter_reloads: Family<Labels, Counter>,
    /// Store failures, by `op`: `write`, `history`, `history_dropped`, `busy`.
    pub store_errors: Family<Labels, Counter>,
    /// The moderation queue, by `filter` and `outcome`: `held`, `approved`, `denied`, `expired`.
    pub queue: Family<Labels, Counter>,
    /// Lines waiting in the moderation queue.
    pub queue_length: Gauge,
    /// From a line being held to a moderator's decision (or its expiry).
    pub hold_decision: Histogram,
    /// The `lines_dropped` series of each [`DropReason`], looked up once: a flood drops lines on
    /// a hot path, which should not build label sets for every line.
    drops: [Counter; 5],
}

impl Metrics {
    /// A fresh set, all zero, ready to share.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let latency = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let metrics = Metrics {
            connected_clients: Gauge::default(),
            rooms: Gauge::default(),
            lines_received: Counter::default(),
            lines_delivered: Counter::default(),
            lines_dropped: Family::default(),
            filter_decisions: Family::default(),
            rate_limit_hits: Counter::default(),
            disconnects: Family::default(),
            handshake_failures: Family::default(),
            pipeline_queue_depth: Gauge::default(),
            pipeline_latency: latency(),
            fanout_latency: latency(),
            filter_reloads: Family::default(),
            store_errors: Family::default(),
            queue: Family::default(),
            queue_length: Gauge::default(),
            hold_decision: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            registry: Registry::default(),
            drops: Default::default(),
        };
        registry.register(
            "chatpipe_connected_clients",
            "Clients past the handshake",
            metrics.connected_clients.clone(),
        );
        registry.register("chatpipe_rooms", "Rooms that exist", metrics.rooms.clone());
        registry.register(
            "chatpipe_log_lines_dropped",
            "Log lines that could not be written (a closed pipe, a full disk)",
            LOG_LINES_DROPPED.clone(),
        );
        registry.register(
            "chatpipe_lines_received",
            "Lines read from clients after the handshake",
            metrics.lines_received.clone(),
        );
        registry.register(
            "chatpipe_lines_delivered",
            "Lines written to clients, one per recipient",
            metrics.lines_delivered.clone(),
        );
        registry.register(
            "chatpipe_lines_dropped",
            "Lines not delivered, by reason (rate_limit, filter, too_long, invalid_utf8, slow_client)",
            metrics.lines_dropped.clone(),
        );
        registry.register(
            "chatpipe_filter_decisions",
            "Filter decisions other than pass, by filter and action",
            metrics.filter_decisions.clone(),
        );
        registry.register(
            "chatpipe_rate_limit_hits",
            "Lines over a client's rate limit",
            metrics.rate_limit_hits.clone(),
        );
        registry.register(
            "chatpipe_disconnects",
            "Clients gone, by reason",
            metrics.disconnects.clone(),
        );
        registry.register(
            "chatpipe_handshake_failures",
            "Refused usernames and logins, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "chatpipe_pipeline_queue_depth",
            "Events waiting at the pipeline input",
            metrics.pipeline_queue_depth.clone(),
        );
        registry.register_with_unit(
            "chatpipe_pipeline_latency",
            "From reading a line to the hub handling it",
            Unit::Seconds,
            metrics.pipeline_latency.clone(),
        );
        registry.register_with_unit(
            "chatpipe_fanout_latency",
            "From the hub queueing a line to the client's socket taking it",
            Unit::Seconds,
            metrics.fanout_latency.clone(),
        );
        registry.register(
            "chatpipe_filter_reloads",
            "Filter reloads, by result",
            metrics.filter_reloads.clone(),
        );
        registry.register(
            "chatpipe_store_errors",
            "Store failures: write, history, history_dropped (queue full), busy",
            metrics.store_errors.clone(),
        );
        registry.register(
            "chatpipe_moderation_queue",
            "Held lines by filter and outcome: held, approved, denied, expired",
            metrics.queue.clone(),
        );
        registry.register(
            "chatpipe_held_lines",
            "Lines waiting in the moderation queue",
            metrics.queue_length.clone(),
        );
        registry.register_with_unit(
            "chatpipe_hold_decision",
            "From a line being held to a moderator's decision or its expiry",
            Unit::Seconds,
            metrics.hold_decision.clone(),
        );
        let drops = DropReason::ALL.map(|reason| {
            metrics
                .lines_dropped
                .get_or_create(&vec![("reason", reason.label().to_owned())])
                .clone()
        });
        Metrics {
            registry,
            drops,
            ..metrics
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Counts `n` lines dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].inc_by(n);
    }

    /// Counts a filter decision, and the line it dropped if it did.
    pub fn filter_decision(&self, filter: &str, action: &str, dropped: bool) {
        self.filter_decisions
            .get_or_create(&vec![
                ("filter", filter.to_owned()),
                ("action", action.to_owned()),
            ])
            .inc();
        if dropped {
            self.lines_dropped
                .get_or_create(&vec![
                    ("reason", "filter".to_owned()),
                    ("filter", filter.to_owned()),
                ])
                .inc();
        }
    }

    /// Counts a departure; `reason` is cut at its first `:` to keep label values few.
    pub fn disconnect(&self, reason: &str) {
        let reason = reason.split(':').next().unwrap_or(reason).trim();
        self.disconnects
            .get_or_create(&vec![("reason", reason.replace(' ', "_"))])
            .inc();
    }

    /// Counts a refused username or login.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts a store failure.
    pub fn store_error(&self, op: &'static str) {
        self.store_errors
            .get_or_create(&vec![("op", op.to_owned())])
            .inc();
    }

    /// Counts a held line's fate.
    pub fn queued(&self, filter: &str, outcome: &'static str) {
        self.queue
            .get_or_create(&vec![
                ("filter", filter.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Counts a filter reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.filter_reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_names() {
        let metrics = Metrics::new();
        metrics.lines_received.inc();
        metrics.dropped(DropReason::RateLimit, 2);
        metrics.filter_decision("20-profanity", "rewrite", false);
        metrics.disconnect("read error: connection reset");
        metrics.pipeline_latency.observe(0.001);
        let text = metrics.encode();
        assert!(text.contains("chatpipe_lines_received_total 1"), "{text}");
        assert!(
            text.contains("chatpipe_lines_dropped_total{reason=\"rate_limit\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "chatpipe_filter_decisions_total{filter=\"20-profanity\",action=\"rewrite\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("chatpipe_disconnects_total{reason=\"read_error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chatpipe_pipeline_latency_seconds_count 1"),
            "{text}"
        );
    }
}
