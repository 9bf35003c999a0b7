//! Several servers, one chat: rooms, names, presence, private messages and moderation shared
//! through NATS JetStream (`[cluster]`).
//!
//! The pipeline stays local: a line is rate-limited, parsed and filtered on the server its
//! sender is connected to, and only then published. What crosses the broker:
//!
//! - **Room events** (lines, joins, leaves, renames) go into one JetStream stream,
//!   `CHATPIPE_ROOMS`, under `chatpipe.room.<room>.line` and `.presence`. Every server reads
//!   the whole stream with an *ordered consumer* and delivers room lines from it — its own
//!   members' lines included — so every member everywhere sees one order, and each sender's
//!   lines keep theirs. Each publish carries a `Nats-Msg-Id`, so a retried publish is stored
//!   once. The stream keeps `[rooms] history` lines per room, which every server replays at
//!   start to fill the history it shows on join: the same on every server.
//! - **Names** are claimed in the key-value bucket `chatpipe_names` with create-if-absent before
//!   the hub takes a client; the server holding a name refreshes it every few seconds and
//!   deletes it when the member leaves; a dead server's names expire ([`NAME_TTL`]).
//! - **Node events** are plain NATS messages: private messages for a member of another
//!   server, moderators' kicks, bans and mutes for every server, and heartbeats listing each
//!   server's members, from which every server's view of presence heals and by whose absence a
//!   dead server is noticed ([`NODE_TIMEOUT`]).
//!
//! The hub never waits on NATS: it hands events to a bounded queue ([`ClusterLink`]) drained by a
//! publisher task, and hears back through its request channel. When the link is down, members
//! are told chat is paused and lines are refused with a notice; the ordered consumer resumes
//! from its last sequence when the link is back, so nothing is duplicated or reordered.

pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::event::ClientId;
use crate::hub::HubHandle;
use wire::{NodeEvent, RoomEvent};

/// The stream every room event goes through.
const STREAM: &str = "CHATPIPE_ROOMS";

/// The stream of changes to the shared state (accounts, bans, mutes, room settings).
const STATE_STREAM: &str = "CHATPIPE_STATE";

/// The bucket of claimed names.
const NAMES_BUCKET: &str = "chatpipe_names";

/// How long a claimed name lives without a refresh, by default (`[cluster] name_ttl`): a dead
/// server's names are free after this.
pub const NAME_TTL: Duration = Duration::from_secs(15);

/// How often a server says it is alive (and refreshes its names).
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Silence after which a server is taken for dead and its members for gone.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(7);

/// Events waiting for the publisher; when full, the hub refuses lines rather than wait.
const OUTGOING_CAPACITY: usize = 4096;

/// How long a publish may wait for the stream's acknowledgement, per attempt.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// The pause before a publish is tried again.
const PUBLISH_RETRY: Duration = Duration::from_millis(250);

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// NATS did not answer.
    #[error("cannot reach NATS at {url}: {cause}")]
    Connect {
        /// The configured URL.
        url: String,
        /// Why.
        cause: String,
    },
    /// JetStream refused to set up the stream or the bucket.
    #[error("NATS JetStream at {url}: {cause} (is the server running with -js?)")]
    JetStream {
        /// The configured URL.
        url: String,
        /// Why.
        cause: String,
    },
}

/// What the hub hands the cluster.
#[derive(Debug)]
pub enum Outgoing {
    /// A room event, published to the stream in order.
    Room {
        /// The room.
        room: Arc<str>,
        /// What happened.
        event: RoomEvent,
        /// The member whose line it is, told if it cannot be published.
        sender: Option<ClientId>,
        /// Unique per event, so a retry is stored once.
        id: String,
    },
    /// A node event, to one server (`Some`) or all.
    Node {
        /// The server, or `None` for all.
        to: Option<String>,
        /// What.
        event: NodeEvent,
    },
    /// A name this server no longer holds.
    Release(String),
    /// Shared state changed here, for the other servers.
    State(Vec<wire::Shared>),
}

/// What the cluster tells the hub.
#[derive(Debug)]
pub enum ClusterInput {
    /// A room event from the stream; `replay` when it was stored before this server started
    /// (history to keep, not news to announce).
    Room {
        /// The room.
        room: Arc<str>,
        /// What happened.
        event: RoomEvent,
        /// Stored before this server started.
        replay: bool,
    },
    /// A node event from another server.
    Node(NodeEvent),
    /// Time to look for servers gone silent (every heartbeat interval).
    Tick,
    /// The link to NATS is up (`true`) or down.
    Link(bool),
    /// A member's line could not be published.
    NotSent(ClientId),
    /// Shared state changed on another server.
    Shared(wire::Shared),
    /// A name this server's member holds was claimed by another server while this one was cut
    /// off from NATS (its entry expired): the member must give it up.
    NameLost(String),
}

/// The hub's side of the cluster: its name, the queue to the publisher, the name claims.
#[derive(Debug, Clone)]
pub struct ClusterLink {
    /// This server's node name.
    pub node: Arc<str>,
    /// Events for the publisher.
    pub outgoing: mpsc::Sender<Outgoing>,
    /// Names claimed cluster-wide.
    pub claims: NameClaims,
}

/// Names claimed cluster-wide; shared by the sessions (claiming) and the heartbeat (refreshing).
///
/// Every write is compare-and-set on the entry's revision: a claim creates the entry only if
/// it is absent, and a refresh updates it only if it is still the revision this server wrote.
/// So a server cut off from NATS for longer than the name's lifetime, whose entry expired and
/// was claimed by another server meanwhile, finds out on its next refresh (the name is lost:
/// [`ClusterInput::NameLost`]) instead of overwriting the other's claim.
#[derive(Clone)]
pub struct NameClaims {
    node: Arc<str>,
    names: kv::Store,
    /// The names held (lower case), with the revision of the entry this server last wrote.
    held: Arc<Mutex<HashMap<String, u64>>>,
}

impl std::fmt::Debug for NameClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameClaims")
            .field("node", &self.node)
            .finish()
    }
}

impl NameClaims {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `name` for this server: `Ok(false)` when another server (or this one) holds it.
    ///
    /// # Errors
    /// When NATS cannot be asked.
    pub async fn claim(&self, name: &str) -> Result<bool, String> {
        let key = name.to_ascii_lowercase();
        let value = Bytes::copy_from_slice(self.node.as_bytes());
        match self.names.create(&key, value).await {
            Ok(revision) => {
                self.held().insert(key, revision);
                Ok(true)
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Gives `name` up (in the background).
    pub fn release(&self, name: &str) {
        let key = name.to_ascii_lowercase();
        let Some(revision) = self.held().remove(&key) else {
            return;
        };
        let names = self.names.clone();
        tokio::spawn(async move {
            // Only the entry this server wrote: if the name went to another server meanwhile,
            // it stays theirs.
            if let Err(error) = names.delete_expect_revision(&key, Some(revision)).await {
                tracing::debug!(%error, name = %key, "cannot release a name in the cluster; it expires on its own");
            }
        });
    }

    /// Gives up every name held.
    async fn release_all(&self) {
        let held: Vec<(String, u64)> = self.held().drain().collect();
        for (key, revision) in held {
            let _ = self
                .names
                .delete_expect_revision(&key, Some(revision))
                .await;
        }
    }

    /// Writes every held name again, so none expires while held; returns the names found lost
    /// to another server (no longer held here). Stops at the first failure to reach NATS (the
    /// next heartbeat tries again).
    async fn refresh(&self) -> Vec<String> {
        let held: Vec<(String, u64)> = self.held().iter().map(|(k, r)| (k.clone(), *r)).collect();
        let value = Bytes::copy_from_slice(self.node.as_bytes());
        let mut lost = Vec::new();
        for (key, revision) in held {
            let written = match self.names.update(&key, value.clone(), revision).await {
                Ok(revision) => revision,
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // Not our entry any more: it expired (NATS was out of reach, or restarted),
                    // and perhaps another server claimed the name since.
                    match self.names.create(&key, value.clone()).await {
                        Ok(revision) => revision,
                        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                            if self.held().get(&key) == Some(&revision) {
                                self.held().remove(&key);
                                tracing::warn!(name = %key, "a name held here was claimed by another server while this one was cut off");
                                lost.push(key);
                            }
                            continue;
                        }
                        Err(error) => {
                            tracing::debug!(%error, name = %key, "cannot claim a name again");
                            return lost;
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, name = %key, "cannot refresh a name");
                    return lost;
                }
            };
            // Record the new revision, unless the name was given up meanwhile: then give up
            // what was just written too.
            let still_held = match self.held().get_mut(&key) {
                Some(held) if *held == revision => {
                    *held = written;
                    true
                }
                _ => false,
            };
            if !still_held {
                let _ = self.names.delete_expect_revision(&key, Some(written)).await;
            }
        }
        lost
    }
}

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

/// How long to wait before reconnection attempt `attempts` (counted from 1): at once, then at
/// most [`RECONNECT_DELAY_MAX`], so chat resumes soon after NATS is back.
fn reconnect_delay(attempts: usize) -> Duration {
    let step =
        Duration::from_millis(50).saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX));
    step.min(RECONNECT_DELAY_MAX)
}

/// The longest wait between attempts to reconnect to NATS.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(250);

/// A connection to the cluster, before and after [`Cluster::start`].
pub struct Cluster {
    url: String,
    node: Arc<str>,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    claims: NameClaims,
    link: ClusterLink,
    outgoing: mpsc::Receiver<Outgoing>,
    link_state: watch::Receiver<bool>,
}

impl Cluster {
    /// Connects to NATS and sets up the stream and the names bucket.
    ///
    /// # Errors
    /// [`ClusterError`] when NATS cannot be reached or JetStream refuses.
    pub async fn connect(config: &ClusterConfig, history: usize) -> Result<Cluster, ClusterError> {
        let url = config.nats.clone();
        let (state, link_state) = watch::channel(true);
        let options = async_nats::ConnectOptions::new()
            .name(format!("chatpipe {}", config.node))
            .connection_timeout(Duration::from_secs(3))
            // The client's default waits up to 4 s between attempts: a NATS restarted in 3 s
            // would leave chat paused for seconds more. Trying every fraction of a second costs
            // a refused connection each time, nothing more.
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let state = state.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            let _ = state.send(true);
                        }
                        async_nats::Event::Disconnected => {
                            let _ = state.send(false);
                        }
                        _ => {}
                    }
                }
            });
        let client = options
            .connect(&url)
            .await
            .map_err(|e| ClusterError::Connect {
                url: url.clone(),
                cause: e.to_string(),
            })?;
        let jetstream = jetstream::new(client.clone());
        let setup = |e: &dyn std::fmt::Display| ClusterError::JetStream {
            url: url.clone(),
            cause: e.to_string(),
        };
        // Made, or brought to this configuration's bounds (a stream made by an older version
        // had none but the per-room one). Past a bound the oldest events go first.
        jetstream
            .create_or_update_stream(room_stream(config, history))
            .await
            .map_err(|e| setup(&e))?;
        jetstream
            .create_or_update_stream(state_stream(config))
            .await
            .map_err(|e| setup(&e))?;
        let names = match jetstream.get_key_value(NAMES_BUCKET).await {
            Ok(names) => names,
            Err(_) => jetstream
                .create_key_value(kv::Config {
                    bucket: NAMES_BUCKET.to_owned(),
                    history: 1,
                    max_age: config.name_ttl,
                    ..Default::default()
                })
                .await
                .map_err(|e| setup(&e))?,
        };
        let node: Arc<str> = Arc::from(config.node.as_str());
        let config_node = node.clone();
        let (outgoing_tx, outgoing) = mpsc::channel(OUTGOING_CAPACITY);
        let held: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let names_for_link = names.clone();
        Ok(Cluster {
            url,
            node: node.clone(),
            client,
            jetstream,
            claims: NameClaims {
                node: node.clone(),
                names,
                held: held.clone(),
            },
            link: ClusterLink {
                node,
                outgoing: outgoing_tx,
                claims: NameClaims {
                    node: config_node.clone(),
                    names: names_for_link,
                    held: held.clone(),
                },
            },
            outgoing,
            link_state,
        })
    }

    /// The hub's side of the cluster.
    pub fn link(&self) -> ClusterLink {
        self.link.clone()
    }

    /// The name claims, for registration.
    pub fn claims(&self) -> NameClaims {
        self.claims.clone()
    }

    /// Starts the publisher, the ordered consumer, the node subscription and the heartbeat, all
    /// feeding `hub` and all stopping at `stop`.
    pub fn start(self, hub: HubHandle, tasks: &TaskTracker, stop: CancellationToken) {
        tracing::info!(node = %self.node, nats = %self.url, "joined the cluster");
        tasks.spawn(publish(
            self.jetstream.clone(),
            self.client.clone(),
            self.outgoing,
            self.claims.clone(),
            hub.clone(),
            stop.clone(),
        ));
        tasks.spawn(consume(
            self.jetstream.clone(),
            self.link_state.clone(),
            hub.clone(),
            stop.clone(),
        ));
        tasks.spawn(consume_state(
            self.jetstream.clone(),
            self.link_state.clone(),
            self.node.clone(),
            hub.clone(),
            stop.clone(),
        ));
        let beat_now = Arc::new(Notify::new());
        tasks.spawn(listen(
            self.client.clone(),
            self.node.clone(),
            hub.clone(),
            beat_now.clone(),
            stop.clone(),
        ));
        tasks.spawn(heartbeat(
            self.client.clone(),
            self.claims,
            hub.clone(),
            beat_now,
            stop.clone(),
        ));
        tasks.spawn(watch_link(self.link_state, hub, stop));
    }
}

/// How often a server that started alone tries to join its cluster.
const JOIN_RETRY: Duration = Duration::from_secs(5);

/// For a server that started alone (`required = false`): tries to join the cluster every few
/// seconds until it succeeds or `stop`, then joins the hub to it.
pub async fn join_later(
    config: ClusterConfig,
    history: usize,
    hub: HubHandle,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(JOIN_RETRY) => {}
        }
        match Cluster::connect(&config, history).await {
            Ok(cluster) => {
                if hub.join_cluster(cluster.link()).await {
                    cluster.start(hub, &tasks, stop);
                }
                return;
            }
            Err(error) => tracing::debug!(%error, "still cannot reach the cluster"),
        }
    }
}

/// Publishes what the hub hands over, in order, until `stop`.
async fn publish(
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
async fn consume(
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
async fn consume_state(
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

/// Hears node events (for this server, and for all), and ticks for the hub's check on servers
/// gone silent. Once subscribed, says [`NodeEvent::Hello`] so the others beat at once; another
/// server's hello wakes this server's heartbeat (`beat_now`).
async fn listen(
    client: async_nats::Client,
    node: Arc<str>,
    hub: HubHandle,
    beat_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let subscribe = async {
        let all = client.subscribe("chatpipe.all").await?;
        let mine = client.subscribe(format!("chatpipe.node.{node}")).await?;
        Ok::<_, async_nats::SubscribeError>(futures::stream::select(all, mine))
    };
    let mut messages = match subscribe.await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::error!(%error, "cannot subscribe to the cluster's messages");
            return;
        }
    };
    let hello = NodeEvent::Hello {
        node: node.to_string(),
    };
    if let Ok(payload) = serde_json::to_vec(&hello) {
        let _ = client.publish("chatpipe.all", Bytes::from(payload)).await;
    }
    let mut check = tokio::time::interval(HEARTBEAT);
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            // The hub looks for servers gone silent.
            _ = check.tick() => {
                if !hub.cluster_input(ClusterInput::Tick).await {
                    return;
                }
                continue;
            }
            message = messages.next() => message,
        };
        let Some(message) = message else { return };
        let Ok(event) = serde_json::from_slice::<NodeEvent>(&message.payload) else {
            continue;
        };
        match &event {
            NodeEvent::Heartbeat { node: from, .. } if **from == *node => continue,
            NodeEvent::Hello { node: from } => {
                if **from != *node {
                    beat_now.notify_one();
                }
                continue;
            }
            _ => {}
        }
        if !hub.cluster_input(ClusterInput::Node(event)).await {
            return;
        }
    }
}

/// Every [`HEARTBEAT`]: tells the others who is here, and refreshes the names held.
async fn heartbeat(
    client: async_nats::Client,
    claims: NameClaims,
    hub: HubHandle,
    beat_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            // A server just started: it hears this server's members now, not at the next tick.
            _ = beat_now.notified() => {}
            _ = stop.cancelled() => {
                // Shutting down: give the names back now rather than let them expire, so the
                // members can come back at once through another server (or this one, restarted).
                let _ = tokio::time::timeout(Duration::from_secs(2), claims.release_all()).await;
                return;
            }
            _ = ticks.tick() => {}
        }
        let Some(members) = hub.query(|hub| hub.local_members()).await else {
            return;
        };
        let beat = NodeEvent::Heartbeat {
            node: claims.node.to_string(),
            members,
        };
        if let Ok(payload) = serde_json::to_vec(&beat) {
            let _ = client.publish("chatpipe.all", Bytes::from(payload)).await;
        }
        for name in claims.refresh().await {
            if !hub.cluster_input(ClusterInput::NameLost(name)).await {
                return;
            }
        }
    }
}

/// Tells the hub when the link to NATS goes down and comes back.
async fn watch_link(mut state: watch::Receiver<bool>, hub: HubHandle, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
        let up = *state.borrow_and_update();
        if !hub.cluster_input(ClusterInput::Link(up)).await {
            return;
        }
    }
}
