//! The JetStream side of the cluster: the room stream (`CHATPIPE_ROOMS`) and the shared-state
//! stream (`CHATPIPE_STATE`), their bounds, the publisher that drains the hub's queue into them
//! and the consumers that read them back to the hub.
//!
//! Invariants: a room event is published with a `Nats-Msg-Id`, so a retry is stored once, and
//! only while the client is connected, so a line is refused or delivered, never both; the room
//! consumer resumes from the sequence after the last event it handed over, so nothing is handed
//! to the hub twice or skipped.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::wire::{self, RoomEvent};
use super::{ClusterInput, NameClaims, Outgoing};
use crate::config::ClusterConfig;
use crate::hub::HubHandle;

/// The stream every room event goes through.
const STREAM: &str = "CHATPIPE_ROOMS";

/// The stream of changes to the shared state (accounts, bans, mutes, room settings).
const STATE_STREAM: &str = "CHATPIPE_STATE";

/// How long a publish may wait for the stream's acknowledgement, per attempt.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// The pause before a publish is tried again.
const PUBLISH_RETRY: Duration = Duration::from_millis(250);

/// The room stream's configuration: `history` events per room, and in all no older than
/// `[cluster] rooms_max_age` and no more than `rooms_max_bytes` (the oldest go first), so room
/// churn cannot grow it (nor the replay every server makes at start) without bound.
pub fn room_stream(config: &ClusterConfig, history: usize) -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["chatpipe.room.>".to_owned()],
        max_messages_per_subject: history.max(1) as i64,
        max_age: config.rooms_max_age,
        max_bytes: i64::try_from(config.rooms_max_bytes).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// The shared-state stream's configuration: no older than `[cluster] state_max_age` and no more
/// than `state_max_bytes` (the oldest go first). Each server keeps what it read in its own
/// database, so a bound only matters to a server that joins (or returns) after the changes it
/// misses were dropped.
pub fn state_stream(config: &ClusterConfig) -> stream::Config {
    stream::Config {
        name: STATE_STREAM.to_owned(),
        subjects: vec!["chatpipe.state".to_owned()],
        max_age: config.state_max_age,
        max_bytes: i64::try_from(config.state_max_bytes).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Publishes what the hub hands over, in order, until `stop`.
pub(super) async fn publish(
    jetstream: jetstream::Context,
    client: async_nats::Client,
    mut outgoing: mpsc::Receiver<Outgoing>,
    claims: NameClaims,
    hub: HubHandle,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = outgoing.recv() => next,
        };
        let Some(next) = next else { return };
        match next {
            Outgoing::Room {
                room,
                event,
                sender,
                id,
            } => {
                let part = match event {
                    RoomEvent::Line { .. } => "line",
                    _ => "presence",
                };
                let subject = format!("chatpipe.room.{room}.{part}");
                let Ok(payload) = serde_json::to_vec(&event) else {
                    continue;
                };
                if !publish_once(&jetstream, &client, subject, &id, Bytes::from(payload)).await
                    && let Some(sender) = sender
                {
                    hub.cluster_input(ClusterInput::NotSent(sender)).await;
                }
            }
            Outgoing::Node { to, event } => {
                let subject = match to {
                    Some(node) => format!("chatpipe.node.{node}"),
                    None => "chatpipe.all".to_owned(),
                };
                if let Ok(payload) = serde_json::to_vec(&event)
                    && let Err(error) = client.publish(subject, Bytes::from(payload)).await
                {
                    tracing::warn!(%error, "cannot send to the cluster");
                }
            }
            Outgoing::State(changes) => {
                for change in changes {
                    let shared = wire::SharedChange {
                        node: claims.node.to_string(),
                        change,
                    };
                    let Ok(payload) = serde_json::to_vec(&shared) else {
                        continue;
                    };
                    let id = format!("{}-state-{}", claims.node, unique());
                    if !publish_once(
                        &jetstream,
                        &client,
                        "chatpipe.state".to_owned(),
                        &id,
                        Bytes::from(payload),
                    )
                    .await
                    {
                        tracing::error!(
                            "a change to the shared state could not be published; the other servers miss it"
                        );
                    }
                }
            }
            Outgoing::Release(name) => claims.release(&name),
        }
    }
}

/// Publishes one room event with its message id, retrying a few times (the id makes a retry
/// harmless); false when it could not be stored.
///
/// Nothing is handed to the client while it is not connected: it would keep the message and
/// send it after reconnecting, perhaps after this has given up and the sender has been told
/// the line was not sent. A line is refused or delivered, never both.
async fn publish_once(
    jetstream: &jetstream::Context,
    client: &async_nats::Client,
    subject: String,
    id: &str,
    payload: Bytes,
) -> bool {
    for attempt in 0..3u32 {
        if attempt > 0 {
            // JetStream may be recovering its streams just after NATS restarted.
            tokio::time::sleep(PUBLISH_RETRY).await;
        }
        if client.connection_state() != async_nats::connection::State::Connected {
            tracing::debug!(attempt, "not connected; not publishing");
            continue;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let acked = async {
            let ack = jetstream
                .publish_with_headers(subject.clone(), headers, payload.clone())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(ACK_TIMEOUT, acked).await {
            Ok(Ok(_)) => return true,
            Ok(Err(error)) => tracing::debug!(%error, attempt, "publish failed"),
            Err(_) => tracing::debug!(attempt, "publish timed out"),
        }
    }
    tracing::warn!(%subject, "a room event could not be published");
    false
}

/// Reads the room stream with an ordered consumer and hands every event to the hub, until
/// `stop`. Events stored before this server started are marked as replay.
///
/// When the link to NATS comes back, the consumer is made again at once from the sequence after
/// the last event handed over: a restarted NATS has forgotten the consumer's pending pull (and
/// an in-memory consumer), and the client would only notice after two missed idle heartbeats
/// (30 s), all that time storing lines nobody receives. Starting from the next sequence means
/// nothing is handed over twice or skipped.
pub(super) async fn consume(
    jetstream: jetstream::Context,
    mut link: watch::Receiver<bool>,
    hub: HubHandle,
    stop: CancellationToken,
) {
    let mut started_after: Option<u64> = None;
    let mut next_sequence = 1;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let messages = async {
            let mut stream = jetstream
                .get_stream(STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let last = stream
                .info()
                .await
                .map_err(|e| e.to_string())?
                .state
                .last_sequence;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: "chatpipe.room.>".to_owned(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: next_sequence,
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((last, messages))
        };
        let (last, mut messages) = tokio::select! {
            _ = stop.cancelled() => return,
            made = messages => match made {
                Ok(made) => made,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the room stream yet; retrying");
                    if retry_pause(&stop).await { continue } else { return }
                }
            },
        };
        let replay_until = *started_after.get_or_insert(last);
        loop {
            let message = match next_message(&mut messages, &mut link, &stop, "room").await {
                Next::Message(message) => message,
                Next::BrokeOff => break,
                Next::Stop => return,
            };
            let Ok(info) = message.info() else { continue };
            let sequence = info.stream_sequence;
            next_sequence = sequence + 1;
            let Some(room) = message
                .subject
                .strip_prefix("chatpipe.room.")
                .and_then(|rest| rest.rsplit_once('.'))
                .map(|(room, _)| Arc::<str>::from(room))
            else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<RoomEvent>(&message.payload) else {
                tracing::warn!(subject = %message.subject, "a room event this server cannot read");
                continue;
            };
            let input = ClusterInput::Room {
                room,
                event,
                replay: sequence <= replay_until,
            };
            if !hub.cluster_input(input).await {
                return;
            }
        }
    }
}

/// Waits a moment before trying again; false when `stop` came first.
async fn retry_pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(CONSUMER_RETRY) => true,
    }
}

/// The pause before making a consumer again after NATS refused (JetStream may still be
/// recovering its streams after a restart).
const CONSUMER_RETRY: Duration = Duration::from_millis(200);

/// What a consumer's stream gave next.
enum Next<M> {
    /// A message.
    Message(M),
    /// The stream broke off (NATS went away, say), or the link came back (and the consumer is
    /// not to be trusted): make the consumer again.
    BrokeOff,
    /// `stop` came first.
    Stop,
}

/// The next message of a consumer's stream, or why there is none.
async fn next_message<M, E: std::fmt::Display>(
    messages: &mut (impl futures::Stream<Item = Result<M, E>> + Unpin),
    link: &mut watch::Receiver<bool>,
    stop: &CancellationToken,
    what: &str,
) -> Next<M> {
    let message = loop {
        tokio::select! {
            _ = stop.cancelled() => return Next::Stop,
            changed = link.changed() => {
                if changed.is_err() {
                    // The client is gone for good (only at shutdown): wait for `stop`.
                    stop.cancelled().await;
                    return Next::Stop;
                }
                if *link.borrow_and_update() {
                    tracing::debug!("the link to NATS is back; making the {what} consumer again");
                    return Next::BrokeOff;
                }
            }
            message = messages.next() => break message,
        }
    };
    match message {
        Some(Ok(message)) => Next::Message(message),
        Some(Err(error)) => {
            tracing::debug!(%error, "the {what} stream broke off; resuming");
            Next::BrokeOff
        }
        None => Next::BrokeOff,
    }
}

/// A number unique within this process and across restarts, for message ids.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{now}-{n}")
}

/// Reads the shared-state stream with this server's durable consumer (so a server that was down
/// catches up from where it stopped) and hands the other servers' changes to the hub.
pub(super) async fn consume_state(
    jetstream: jetstream::Context,
    mut link: watch::Receiver<bool>,
    node: Arc<str>,
    hub: HubHandle,
    stop: CancellationToken,
) {
    loop {
        let messages = async {
            let stream = jetstream
                .get_stream(STATE_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .get_or_create_consumer(
                    &format!("state-{node}"),
                    consumer::pull::Config {
                        durable_name: Some(format!("state-{node}")),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        };
        let mut messages = tokio::select! {
            _ = stop.cancelled() => return,
            made = messages => match made {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the shared state yet; retrying");
                    if retry_pause(&stop).await { continue } else { return }
                }
            },
        };
        loop {
            let message = match next_message(&mut messages, &mut link, &stop, "shared-state").await
            {
                Next::Message(message) => message,
                Next::BrokeOff => break,
                Next::Stop => return,
            };
            match serde_json::from_slice::<wire::SharedChange>(&message.payload) {
                Ok(shared) if *shared.node != *node => {
                    if !hub.cluster_input(ClusterInput::Shared(shared.change)).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "a shared change this server cannot read"),
            }
            if let Err(error) = message.ack().await {
                tracing::debug!(%error, "cannot acknowledge a shared change");
            }
        }
    }
}
