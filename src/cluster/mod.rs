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

mod names;
mod presence;
mod stream;

pub use names::NameClaims;
pub use stream::{room_stream, state_stream};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::event::ClientId;
use crate::hub::HubHandle;
use presence::{heartbeat, listen, watch_link};
use stream::{consume, consume_state, publish};
use wire::{NodeEvent, RoomEvent};

/// The bucket of claimed names.
const NAMES_BUCKET: &str = "chatpipe_names";

/// How long a claimed name lives without a refresh, by default (`[cluster] name_ttl`): a dead
/// server's names are free after this.
pub const NAME_TTL: Duration = Duration::from_secs(15);

/// Silence after which a server is taken for dead and its members for gone.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(7);

/// Events waiting for the publisher; when full, the hub refuses lines rather than wait.
const OUTGOING_CAPACITY: usize = 4096;

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
