//! [`RateLimitStage`]: limits how many lines each client may send.
//!
//! Each client gets its own GCRA limiter (governor) with the configured rate and burst. The
//! limiter reads tokio's clock, so a test on a paused clock is exact and instant. Every line
//! costs one (`/quit` and `/ping` nothing); a [`Body::Query`] (a door's question for the hub,
//! such as IRC's `WHO`) costs what its door says, at most `burst`. Anything over the limit is
//! handled by the [`RateLimitPolicy`]:
//! - `reject`: the line is dropped, and the sender is told once per flood (the notice is repeated
//!   only after one of its lines got through again);
//! - `delay`: the line is held back and released when the limiter allows it (IRC's "fakelag"),
//!   at most `burst` lines per client; beyond that, lines are rejected as above.
//!
//! Invariants: a client's events leave in the order they came (an event of a client with held
//! lines waits behind them); a client's state is dropped when its [`Body::Left`] passes, so
//! departed clients cost nothing; when the input ends, held lines are still released before the
//! output ends.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use governor::clock::Clock;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter, middleware::NoOpMiddleware};
use tokio::time::{Instant, Sleep};

use super::stage::{EventStream, Stage, StageContext};
use crate::config::{RateLimitConfig, RateLimitPolicy};
use crate::event::{Body, ClientId, Event};
use crate::metrics::{DropReason, Metrics};
use crate::protocol::RATE_LIMITED;

/// governor's clock, read from tokio's (pausable) clock.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

impl TokioClock {
    fn instant(&self, at: Nanos) -> Instant {
        self.start + std::time::Duration::from(at)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The rate limit stage. See the module documentation.
#[derive(Debug, Clone)]
pub struct RateLimitStage {
    /// `None` when rate limiting is off: the stage then passes everything through, and stays in
    /// the pipeline so other stages can still be placed relative to it.
    quota: Option<Quota>,
    policy: RateLimitPolicy,
    /// Most lines held per client under the `delay` policy.
    max_held: usize,
}

impl RateLimitStage {
    /// The stage for `config`; `per_second = 0` makes it a pass-through.
    pub fn new(config: &RateLimitConfig) -> Self {
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        RateLimitStage {
            quota: NonZeroU32::new(config.per_second)
                .map(|per_second| Quota::per_second(per_second).allow_burst(burst)),
            policy: config.policy,
            max_held: burst.get() as usize,
        }
    }
}

impl Stage for RateLimitStage {
    fn name(&self) -> &str {
        "rate_limit"
    }

    fn apply(self: Box<Self>, input: EventStream, ctx: &StageContext) -> EventStream {
        let Some(quota) = self.quota else {
            return input;
        };
        Box::pin(RateLimited {
            quota,
            metrics: ctx.metrics.clone(),
            input,
            input_done: false,
            clock: TokioClock {
                start: Instant::now(),
            },
            stage: *self,
            clients: HashMap::new(),
            ready: VecDeque::new(),
            held_total: 0,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_at: None,
        })
    }
}

struct ClientState {
    limiter: Limiter,
    /// Told about the limit since its last accepted line.
    warned: bool,
    /// Events held back under the `delay` policy, oldest first.
    held: VecDeque<Event>,
    /// When the oldest held line may be tried again.
    retry_at: Instant,
}

struct RateLimited {
    quota: Quota,
    metrics: Arc<Metrics>,
    input: EventStream,
    input_done: bool,
    clock: TokioClock,
    stage: RateLimitStage,
    clients: HashMap<ClientId, ClientState>,
    /// Events decided and waiting to be yielded, in order.
    ready: VecDeque<Event>,
    /// Held events over all clients; the output may end only at zero.
    held_total: usize,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set to, while some client has held lines.
    timer_at: Option<Instant>,
}

/// A `/quit` line.
fn is_quit(event: &Event) -> bool {
    matches!(&event.body, Body::Line(line) if line.trim().eq_ignore_ascii_case("/quit"))
}

/// Lines the limit does not count.
fn is_exempt(line: &str) -> bool {
    let line = line.trim();
    line.eq_ignore_ascii_case("/quit") || line.eq_ignore_ascii_case("/ping")
}

/// What `body` costs against the limit, `None` for what it does not count: one for a line, a
/// query's own cost (capped at `burst`, which a single check can never exceed).
fn cost_of(body: &Body, burst: usize) -> Option<NonZeroU32> {
    let cost = match body {
        Body::Line(line) if !is_exempt(line) => 1,
        Body::Query(query) => query.cost().min(u32::try_from(burst).unwrap_or(u32::MAX)),
        _ => return None,
    };
    NonZeroU32::new(cost)
}

/// Takes `cost` cells from `limiter`, or says when it could.
fn take(limiter: &Limiter, cost: NonZeroU32) -> Result<(), governor::NotUntil<Nanos>> {
    // `cost` is at most the burst, so the capacity is always there; were it not, one cell.
    limiter.check_n(cost).unwrap_or_else(|_| limiter.check())
}

impl RateLimited {
    fn admit(&mut self, event: Event) {
        let id = event.client.id();
        // `/quit` and `/ping` are never limited: a flooder can always leave, and a client can
        // always check its connection. Neither reaches anyone else.
        let cost = cost_of(&event.body, self.stage.max_held);
        let is_line = cost.is_some();
        let state = match self.clients.get_mut(&id) {
            Some(state) => state,
            None if !is_line => {
                // Nothing held for this client: pass other events straight on.
                self.ready.push_back(event);
                return;
            }
            None => self.clients.entry(id).or_insert_with(|| ClientState {
                limiter: RateLimiter::direct_with_clock(self.quota, self.clock),
                warned: false,
                held: VecDeque::new(),
                retry_at: Instant::now(),
            }),
        };
        if !state.held.is_empty() {
            // Order: everything of this client waits behind its held lines. The queue is bounded
            // for every kind of event: past `max_held` only the client's departure and one
            // `/quit` still get a place (so a flooder can always leave), anything else — `/ping`
            // included — is rejected like an over-limit line.
            let fits = state.held.len() < self.stage.max_held
                || matches!(event.body, Body::Left(_))
                || (is_quit(&event) && !state.held.iter().any(is_quit));
            if fits {
                state.held.push_back(event);
                self.held_total += 1;
            } else {
                self.metrics.rate_limit_hits.inc();
                Self::reject(state, event, &mut self.ready, &self.metrics);
            }
            return;
        }
        let Some(cost) = cost else {
            if matches!(event.body, Body::Left(_)) {
                self.clients.remove(&id);
            }
            self.ready.push_back(event);
            return;
        };
        match take(&state.limiter, cost) {
            Ok(()) => {
                state.warned = false;
                self.ready.push_back(event);
            }
            Err(not_until) if self.stage.policy == RateLimitPolicy::Delay => {
                self.metrics.rate_limit_hits.inc();
                state.retry_at = self.clock.instant(not_until.earliest_possible());
                state.held.push_back(event);
                self.held_total += 1;
                let retry_at = state.retry_at;
                self.arm_timer(retry_at);
            }
            Err(_) => {
                self.metrics.rate_limit_hits.inc();
                Self::reject(state, event, &mut self.ready, &self.metrics);
            }
        }
    }

    fn reject(
        state: &mut ClientState,
        event: Event,
        ready: &mut VecDeque<Event>,
        metrics: &Metrics,
    ) {
        metrics.dropped(DropReason::RateLimit, 1);
        if state.warned {
            tracing::debug!(client = %event.client.id(), "line dropped: rate limit");
        } else {
            state.warned = true;
            tracing::info!(client = %event.client.id(), "rate limit exceeded");
            ready.push_back(event.with_body(Body::Notice(RATE_LIMITED.to_owned())));
        }
    }

    /// Releases every held event whose time has come, and re-arms the timer for the rest.
    fn release_due(&mut self) {
        let now = Instant::now();
        let mut departed = Vec::new();
        for (id, state) in &mut self.clients {
            if state.held.is_empty() || state.retry_at > now {
                continue;
            }
            while let Some(front) = state.held.front() {
                let allowed = match cost_of(&front.body, self.stage.max_held) {
                    Some(cost) => match take(&state.limiter, cost) {
                        Ok(()) => true,
                        Err(not_until) => {
                            state.retry_at = self.clock.instant(not_until.earliest_possible());
                            false
                        }
                    },
                    None => true,
                };
                if !allowed {
                    break;
                }
                if let Some(event) = state.held.pop_front() {
                    self.held_total -= 1;
                    if matches!(event.body, Body::Left(_)) {
                        departed.push(*id);
                    }
                    self.ready.push_back(event);
                }
            }
        }
        for id in departed {
            self.clients.remove(&id);
        }
        self.timer_at = None;
        let next = self
            .clients
            .values()
            .filter(|s| !s.held.is_empty())
            .map(|s| s.retry_at)
            .min();
        if let Some(at) = next {
            self.arm_timer(at);
        }
    }

    fn arm_timer(&mut self, at: Instant) {
        if self.timer_at.is_none_or(|current| at < current) {
            self.timer_at = Some(at);
            self.timer.as_mut().reset(at);
        }
    }
}

impl Stream for RateLimited {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            if this.timer_at.is_some() && this.timer.as_mut().poll(cx).is_ready() {
                this.release_due();
                continue;
            }
            if !this.input_done {
                match this.input.as_mut().poll_next(cx) {
                    Poll::Ready(Some(event)) => {
                        this.admit(event);
                        continue;
                    }
                    Poll::Ready(None) => {
                        this.input_done = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if this.input_done && this.held_total == 0 {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Query, Role};
    use crate::testing::{describe, run_stage, test_client};

    /// A query costs what its door says: with a burst of 4, a line and a query of 3 use it up
    /// and the next line is over the limit; a query dearer than the burst costs the burst.
    #[tokio::test(start_paused = true)]
    async fn a_query_costs_its_cost_at_most_the_burst() {
        let alice = test_client(1, "alice", Role::User);
        let event = |seq, body| Event::new(alice.clone(), seq, body);
        let stage = RateLimitStage::new(&RateLimitConfig {
            per_second: 1,
            burst: 4,
            policy: RateLimitPolicy::Reject,
        });
        let input = vec![
            event(0, Body::Line("a".into())),
            event(1, Body::Query(Query::new(3, |_| ()))),
            event(2, Body::Line("b".into())),
        ];
        let out = run_stage(stage.clone(), Box::pin(futures::stream::iter(input))).await;
        let shown: Vec<String> = out.iter().map(describe).collect();
        assert_eq!(
            shown,
            [
                "alice> a",
                "alice asks (cost 3)",
                "alice <- SERVER: Rate limit exceeded. Please slow down."
            ]
        );
        let input = vec![
            event(0, Body::Query(Query::new(100, |_| ()))),
            event(1, Body::Line("c".into())),
        ];
        let out = run_stage(stage, Box::pin(futures::stream::iter(input))).await;
        let shown: Vec<String> = out.iter().map(describe).collect();
        assert_eq!(
            shown,
            [
                "alice asks (cost 100)",
                "alice <- SERVER: Rate limit exceeded. Please slow down."
            ]
        );
    }
}
