//! [`WorkerPoolStage`]: runs the filter chain on many messages at once.
//!
//! Events are partitioned by sender: a dispatcher sends each event to worker `client id % N`, and
//! the workers' outputs are merged. One sender's events therefore pass through one worker, in
//! order, so per-sender order survives without a re-sequencing buffer; different senders' lines
//! are filtered in parallel. Commands and notices pass through the same worker untouched, which is
//! what keeps a sender's `/quit` behind the chat line before it.
//!
//! A filter that panics on a message is contained: the message is dropped, the sender told, the
//! error logged, and the worker carries on.

use std::panic::AssertUnwindSafe;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::merge::merge;
use super::stage::{EventStream, Stage, StageContext};
use crate::event::{Body, Event, Sanction, SanctionKind};
use crate::filters::{FilterChain, FilterSet, Judgement, Message, Outcome};

/// Events queued for, and from, one worker. Large enough that a worker rarely idles waiting for
/// the dispatcher, small enough that a saturated pipeline pushes back on readers quickly.
const WORKER_QUEUE: usize = 512;

/// Most events a worker takes per wake-up; one chain load serves the whole batch.
const WORKER_BATCH: usize = 64;

/// Told to a sender whose message made a filter panic.
const NOT_PROCESSED: &str = "Your message could not be processed.";

/// The worker pool stage. See the module documentation.
#[derive(Debug, Clone)]
pub struct WorkerPoolStage {
    workers: usize,
    filters: FilterSet,
}

impl WorkerPoolStage {
    /// A pool of `workers` (at least one) running `filters`.
    pub fn new(workers: usize, filters: FilterSet) -> Self {
        WorkerPoolStage {
            workers: workers.max(1),
            filters,
        }
    }
}

impl Stage for WorkerPoolStage {
    fn name(&self) -> &str {
        "worker_pool"
    }

    fn apply(self: Box<Self>, mut input: EventStream, ctx: &StageContext) -> EventStream {
        let mut inboxes = Vec::with_capacity(self.workers);
        let mut outputs: Vec<EventStream> = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            let (in_tx, in_rx) = mpsc::channel(WORKER_QUEUE);
            let (out_tx, out_rx) = mpsc::channel(WORKER_QUEUE);
            ctx.tasks.spawn(work(in_rx, out_tx, self.filters.clone()));
            inboxes.push(in_tx);
            outputs.push(Box::pin(ReceiverStream::new(out_rx)));
        }
        // The dispatcher ends when its input ends; dropping the inboxes then ends each worker,
        // which ends the merged output: shutdown drains through the pool in order.
        ctx.tasks.spawn(async move {
            while let Some(event) = input.next().await {
                let partition = (event.client.id().0 % inboxes.len() as u64) as usize;
                if inboxes[partition].send(event).await.is_err() {
                    break;
                }
            }
        });
        merge(outputs)
    }
}

async fn work(mut inbox: mpsc::Receiver<Event>, out: mpsc::Sender<Event>, filters: FilterSet) {
    let mut batch = Vec::with_capacity(WORKER_BATCH);
    while inbox.recv_many(&mut batch, WORKER_BATCH).await > 0 {
        let chain = filters.current();
        for event in batch.drain(..) {
            let (event, alerts) = apply_filters(&chain, event);
            for event in event.into_iter().chain(alerts) {
                if out.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs the chain on a chat line or action; other events pass untouched. Returns the event to
/// pass on (`None` when the line is silently dropped) and an alert for the moderators for each
/// warning a filter raised.
pub fn apply_filters(chain: &FilterChain, event: Event) -> (Option<Event>, Vec<Event>) {
    if chain.is_empty() {
        return (Some(event), Vec::new());
    }
    let (text, is_action) = match &event.body {
        Body::Chat(text) => (text, false),
        Body::Action(text) => (text, true),
        _ => return (Some(event), Vec::new()),
    };
    let sender = event.client.info();
    let message = Message::new(text, &sender, event.client.id(), event.received_at);
    let judged = std::panic::catch_unwind(AssertUnwindSafe(|| chain.judge(&message)));
    let client = event.client.id();
    let Ok(Judgement { outcome, warnings }) = judged else {
        tracing::error!(%client, "a filter panicked; the message was dropped");
        let notice = Body::Notice(NOT_PROCESSED.to_owned());
        return (Some(event.with_body(notice)), Vec::new());
    };
    let alerts = warnings
        .into_iter()
        .map(|(filter, reason)| {
            tracing::info!(%client, filter, action = "warn", "filter decision");
            let alert = format!(
                "[{filter}] {} in {}: {reason}: {}",
                sender.name, sender.room, message.text
            );
            event.clone().with_body(Body::Alert(alert))
        })
        .collect();
    if let Some(filter) = outcome.filter() {
        tracing::info!(%client, filter, action = outcome.as_expectation(), "filter decision");
    }
    let body = match outcome {
        Outcome::Deliver(text) if is_action => Body::Action(text),
        Outcome::Deliver(text) => Body::Chat(text),
        Outcome::Blocked { notice, .. } => Body::Notice(notice),
        Outcome::Silenced { .. } => return (None, alerts),
        Outcome::Muted {
            filter,
            duration,
            notice,
        } => Body::Sanction(Sanction {
            filter,
            kind: SanctionKind::Mute(duration),
            notice,
        }),
        Outcome::Kicked { filter, notice } => Body::Sanction(Sanction {
            filter,
            kind: SanctionKind::Kick,
            notice,
        }),
    };
    (Some(event.with_body(body)), alerts)
}
