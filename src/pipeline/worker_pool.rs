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
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::merge::merge;
use super::stage::{EventStream, Stage, StageContext};
use crate::event::{Body, Command, Event, Sanction, SanctionKind};
use crate::filters::{FilterChain, FilterSet, Judgement, Message, Outcome};
use crate::metrics::Metrics;

/// Batches queued for, and from, one worker: at most this many times [`BATCH`] events. Enough
/// that a worker rarely idles waiting for the dispatcher, few enough that a saturated pipeline
/// pushes back on readers quickly.
const WORKER_QUEUE_BATCHES: usize = 16;

/// Most events the dispatcher takes at once; one chain load serves a whole batch.
const BATCH: usize = 64;

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

    fn apply(self: Box<Self>, input: EventStream, ctx: &StageContext) -> EventStream {
        let mut inboxes = Vec::with_capacity(self.workers);
        let mut outputs: Vec<EventStream> = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            let (in_tx, in_rx) = mpsc::channel(WORKER_QUEUE_BATCHES);
            let (out_tx, out_rx) = mpsc::channel(WORKER_QUEUE_BATCHES);
            ctx.tasks.spawn(work(
                in_rx,
                out_tx,
                self.filters.clone(),
                ctx.metrics.clone(),
            ));
            inboxes.push(in_tx);
            outputs.push(Box::pin(
                ReceiverStream::new(out_rx).flat_map(futures::stream::iter),
            ));
        }
        // The dispatcher ends when its input ends; dropping the inboxes then ends each worker,
        // which ends the merged output: shutdown drains through the pool in order.
        ctx.tasks.spawn(async move {
            // Whatever is ready is taken at once and handed over in one batch per worker, so a
            // busy pipeline pays the channel's cost per batch rather than per line.
            let mut input = input.ready_chunks(BATCH);
            let mut batches: Vec<Vec<Event>> = vec![Vec::new(); inboxes.len()];
            while let Some(events) = input.next().await {
                for event in events {
                    let partition = (event.client.id().0 % inboxes.len() as u64) as usize;
                    batches[partition].push(event);
                }
                for (inbox, batch) in inboxes.iter().zip(&mut batches) {
                    if !batch.is_empty() && inbox.send(std::mem::take(batch)).await.is_err() {
                        return;
                    }
                }
            }
        });
        merge(outputs)
    }
}

async fn work(
    mut inbox: mpsc::Receiver<Vec<Event>>,
    out: mpsc::Sender<Vec<Event>>,
    filters: FilterSet,
    metrics: Arc<Metrics>,
) {
    while let Some(batch) = inbox.recv().await {
        let chain = filters.current();
        let mut judged = Vec::with_capacity(batch.len());
        for event in batch {
            if matches!(event.body, Body::Command(Command::Join(_) | Command::Leave)) {
                // Until the hub has carried this out, the room of the sender's next line that
                // names none is unknown: `apply_filters` leaves such lines to the hub.
                event.client.room_change_sent();
            }
            let (event, alerts) = apply_filters(&chain, event, &metrics);
            judged.extend(event);
            judged.extend(alerts);
        }
        if out.send(judged).await.is_err() {
            return;
        }
    }
}

/// Runs the chain on a chat line, action or private message; other events pass untouched.
/// Returns the event to pass on (`None` when the line is silently dropped) and an alert for the
/// moderators for each warning a filter raised.
///
/// The filters judge a line for the room it goes to: the room it names, else the sender's
/// current room. A private message is in no room. A line that names no room while a `/join` or
/// `/leave` of its sender is still on its way to the hub is passed on unjudged, marked
/// [`Event::filter_in_hub`]: the hub, which alone knows where it goes once the move is done,
/// runs this function on it with the room filled in.
pub fn apply_filters(
    chain: &FilterChain,
    mut event: Event,
    metrics: &Metrics,
) -> (Option<Event>, Vec<Event>) {
    if chain.is_empty() {
        return (Some(event), Vec::new());
    }
    let text = match &event.body {
        Body::Chat(text) | Body::Action(text) | Body::Private { text, .. } => text,
        _ => return (Some(event), Vec::new()),
    };
    let private = matches!(event.body, Body::Private { .. });
    if !private && event.room.is_none() && event.client.room_change_pending() {
        event.filter_in_hub = true;
        return (Some(event), Vec::new());
    }
    let mut sender = event.client.info();
    let room = match &event.room {
        _ if private => None,
        Some(named) => Some(named.clone()),
        None => Some(sender.room.clone()),
    };
    if let Some(room) = &room {
        // Filters written against `sender.room` judge the line's room too.
        sender.room = room.clone();
    }
    let message =
        Message::new(text, &sender, event.client.id(), event.received_at).in_room(room.as_deref());
    // Where the line goes, for the log and the moderators' alerts.
    let place = room.as_deref().unwrap_or("a private message");
    let judged = std::panic::catch_unwind(AssertUnwindSafe(|| chain.judge(&message)));
    let client = event.client.id();
    let Ok(Judgement {
        outcome,
        warnings,
        rewritten_by,
    }) = judged
    else {
        tracing::error!(%client, "a filter panicked; the message was dropped");
        let notice = Body::Notice(NOT_PROCESSED.to_owned());
        return (Some(event.with_body(notice)), Vec::new());
    };
    let alerts = warnings
        .into_iter()
        .map(|(filter, reason)| {
            tracing::info!(%client, name = %sender.name, room = %place, filter, action = "warn", "filter decision");
            metrics.filter_decision(&filter, "warn", false);
            let alert = format!(
                "[{filter}] {} in {place}: {reason}: {}",
                sender.name, message.text
            );
            event.clone().with_body(Body::Alert(alert))
        })
        .collect();
    if let Some(filter) = outcome.filter() {
        let action = outcome.as_expectation();
        tracing::info!(%client, name = %sender.name, room = %place, filter, action, "filter decision");
        metrics.filter_decision(filter, action, true);
    }
    for filter in &rewritten_by {
        tracing::info!(%client, name = %sender.name, room = %place, filter, action = "rewrite", "filter decision");
        metrics.filter_decision(filter, "rewrite", false);
    }
    let body = match outcome {
        Outcome::Deliver(text) => match event.body {
            Body::Action(_) => Body::Action(text),
            Body::Private { ref to, .. } => Body::Private {
                to: to.clone(),
                text,
            },
            _ => Body::Chat(text),
        },
        Outcome::Blocked { notice, .. } => Body::Blocked(notice),
        Outcome::Held { filter, reason } => match event.body {
            Body::Chat(ref text) | Body::Action(ref text) => Body::Held {
                filter,
                reason,
                action: matches!(event.body, Body::Action(_)),
                text: text.clone(),
            },
            // The queue is for rooms: a private message a filter would hold is not delivered.
            _ => Body::Blocked(
                "Your private message was not delivered: it would need a moderator's review."
                    .to_owned(),
            ),
        },
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Role;
    use crate::filters::{Verdict, filter_fn};
    use crate::testing::test_client;

    /// Warns with the room the filter was given, so each test can see it.
    fn chain() -> FilterChain {
        FilterChain::new(vec![filter_fn("where", |m| {
            Verdict::Warn(m.room.unwrap_or("no room").to_owned())
        })])
    }

    fn alert_of(event: Event, metrics: &Metrics) -> String {
        let (_, alerts) = apply_filters(&chain(), event, metrics);
        match alerts.as_slice() {
            [
                Event {
                    body: Body::Alert(text),
                    ..
                },
            ] => text.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_line_is_judged_for_the_room_it_is_sent_to() {
        let metrics = Metrics::new();
        // The client's current room is lobby (as after joining it last).
        let alice = test_client(1, "alice", Role::User);
        let mut to_trading = Event::new(alice.clone(), 0, Body::Chat("hi".into()));
        to_trading.room = Some(Arc::from("trading"));
        assert_eq!(
            alert_of(to_trading, &metrics),
            "[where] alice in trading: trading: hi"
        );
        let current = Event::new(alice.clone(), 1, Body::Chat("hi".into()));
        assert_eq!(
            alert_of(current, &metrics),
            "[where] alice in lobby: lobby: hi"
        );
        let private = Body::Private {
            to: "bob".into(),
            text: "hi".into(),
        };
        assert_eq!(
            alert_of(Event::new(alice, 2, private), &metrics),
            "[where] alice in a private message: no room: hi"
        );
    }

    #[test]
    fn a_line_behind_a_room_change_is_left_to_the_hub() {
        let metrics = Metrics::new();
        let alice = test_client(1, "alice", Role::User);
        alice.room_change_sent();
        let (event, alerts) = apply_filters(
            &chain(),
            Event::new(alice.clone(), 0, Body::Chat("hi".into())),
            &metrics,
        );
        let event = event.expect("passed on");
        assert!(event.filter_in_hub && alerts.is_empty(), "{event:?}");
        assert_eq!(event.body, Body::Chat("hi".into()), "unjudged");
        // A line naming its room, or a private message, does not wait for the move.
        let mut named = Event::new(alice.clone(), 1, Body::Chat("hi".into()));
        named.room = Some(Arc::from("lobby"));
        let (event, _) = apply_filters(&chain(), named, &metrics);
        assert!(!event.expect("passed on").filter_in_hub);
        alice.room_change_done();
        let (event, alerts) = apply_filters(
            &chain(),
            Event::new(alice, 2, Body::Chat("hi".into())),
            &metrics,
        );
        assert!(!event.expect("passed on").filter_in_hub && alerts.len() == 1);
    }
}
