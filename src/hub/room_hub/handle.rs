//! How the world outside the pipeline reaches the hub, and what the hub is built with.
//!
//! [`HubHandle`] is the only way in besides the event stream: a registration (answered once the
//! hub has taken the client, or refused it), news from the cluster, and continuations of work the
//! hub started elsewhere all arrive as a [`Request`] on one bounded channel, so the hub's state
//! stays owned by its task alone. In a cluster a name is claimed cluster-wide here, before the
//! hub sees the client, and released again if the hub refuses it. [`HubSettings`] and [`Doors`]
//! are what the server assembles the hub from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::RoomHub;
use super::until::describe_duration;
use crate::addresses::AddressList;
use crate::config::RoomsConfig;
use crate::event::{Client, Role};
use crate::filters::{FilterRules, FilterSet};
use crate::hub::delivery::{DoorId, MAX_DOORS, Render};
use crate::hub::outbox::Outbox;
use crate::metrics::Metrics;
use crate::names::NameKey;
use crate::store::Store;

/// Capacity of the registration channel. Registrations are rare and quick; a burst of connects
/// waits here briefly rather than piling up.
pub(super) const REQUEST_CAPACITY: usize = 256;

/// Why a username could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Someone connected uses the name (in any case).
    #[error("the username {0} is already taken")]
    NameTaken(String),
    /// The name or the address is banned.
    #[error("you are banned{}: {reason}", remaining.map_or_else(
        || " until a moderator lifts the ban".to_owned(),
        |d| format!(" for another {}", describe_duration(d))
    ))]
    Banned {
        /// Why, as the moderator said.
        reason: String,
        /// How long the ban still lasts; `None` until lifted.
        remaining: Option<Duration>,
    },
    /// The hub has stopped.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The cluster could not be asked whether the name is free.
    #[error(
        "names cannot be checked right now (the cluster is unreachable); try again in a moment"
    )]
    ClusterUnavailable,
}

/// Work for the hub from outside the pipeline.
pub(super) enum Request {
    Register {
        client: Arc<Client>,
        outbox: Outbox,
        door: DoorId,
        reply: oneshot::Sender<Result<(), RegisterError>>,
    },
    /// The rest of something the hub started: the store has committed (or failed to commit) a
    /// change, or a password has been hashed, and the hub carries on from there.
    Continue(Continuation),
    /// News from the other servers of the cluster.
    Cluster(crate::cluster::ClusterInput),
}

/// What [`Request::Continue`] runs, on the hub's task with the hub's state.
pub(super) type Continuation = Box<dyn FnOnce(&mut RoomHub) + Send>;

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Register { client, .. } => write!(f, "Register({})", client.id()),
            Request::Continue(_) => write!(f, "Continue"),
            Request::Cluster(input) => write!(f, "Cluster({input:?})"),
        }
    }
}

/// How sessions reach the hub outside the pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HubHandle {
    pub(super) requests: mpsc::Sender<Request>,
    /// In a cluster, names are claimed cluster-wide before the hub takes a client. Set at most
    /// once: at start, or when a server that started alone joins its cluster later.
    pub(super) claims: Arc<std::sync::OnceLock<crate::cluster::NameClaims>>,
}

impl HubHandle {
    /// Adds a client under its current name to the default room, which announces it. From then on
    /// the hub writes to `outbox`.
    ///
    /// # Errors
    /// [`RegisterError`] when the name is taken or banned, or the hub has stopped.
    pub async fn register(&self, client: Arc<Client>, outbox: Outbox) -> Result<(), RegisterError> {
        self.register_at(DoorId::TEXT, client, outbox).await
    }

    /// Like [`HubHandle::register`], for a client of another front door: the hub renders what it
    /// tells the client with that door's renderer.
    ///
    /// # Errors
    /// As [`HubHandle::register`].
    pub async fn register_at(
        &self,
        door: DoorId,
        client: Arc<Client>,
        outbox: Outbox,
    ) -> Result<(), RegisterError> {
        let name = client.name();
        if let Some(claims) = self.claims.get() {
            // Boxed: claiming a name in the cluster is a large future (the NATS key-value
            // round trips), and it would otherwise sit in every handshake, clustered or not
            // (2.4 of a text handshake's 3.2 KB), for the whole of a join storm.
            match Box::pin(claims.claim(&name)).await {
                Ok(true) => {}
                Ok(false) => return Err(RegisterError::NameTaken(name.to_string())),
                Err(cause) => {
                    tracing::warn!(%cause, "cannot claim a name in the cluster");
                    return Err(RegisterError::ClusterUnavailable);
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Register {
                client,
                outbox,
                door,
                reply,
            })
            .await
            .map_err(|_| RegisterError::ShuttingDown)?;
        let registered = answer.await.unwrap_or(Err(RegisterError::ShuttingDown));
        if registered.is_err()
            && let Some(claims) = self.claims.get()
        {
            claims.release(&name);
        }
        registered
    }

    /// Joins a hub that started alone to its cluster: names are claimed cluster-wide from now on
    /// (those of the members already here included) and room lines go through the stream.
    /// False when the hub has stopped.
    pub async fn join_cluster(&self, link: crate::cluster::ClusterLink) -> bool {
        if self.claims.set(link.claims.clone()).is_err() {
            return true;
        }
        let names = self
            .query(|hub| {
                hub.members
                    .values()
                    .map(|m| m.client.name().to_string())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        for name in names {
            if !matches!(link.claims.claim(&name).await, Ok(true)) {
                tracing::warn!(%name, "a member's name is held elsewhere in the cluster too");
            }
        }
        let work: Continuation = Box::new(move |hub: &mut RoomHub| {
            hub.settings.cluster = Some(link);
        });
        self.requests.send(Request::Continue(work)).await.is_ok()
    }

    /// Hands the hub news from the cluster; false when the hub has stopped.
    pub async fn cluster_input(&self, input: crate::cluster::ClusterInput) -> bool {
        self.requests.send(Request::Cluster(input)).await.is_ok()
    }
}

/// What the hub needs besides its inputs.
#[derive(Debug, Clone, Default)]
pub struct HubSettings {
    /// Rooms: the default, history length, limits, permanent rooms.
    pub rooms: RoomsConfig,
    /// Addresses never banned by address.
    pub exempt: AddressList,
    /// The filter rules `/reload` reloads, if the server has a filters directory.
    pub filter_rules: Option<FilterRules>,
    /// The pipeline's live filters, for the lines the worker pool leaves to the hub because
    /// their room was not known yet
    /// ([`Event::filter_in_hub`](crate::event::Event::filter_in_hub)).
    pub filters: FilterSet,
    /// Names that belong to accounts, with their roles: nobody else may take them with `/nick`,
    /// and only admins may ban a moderator's or admin's name while it is offline.
    pub registered: HashMap<NameKey, Role>,
    /// Where `/reload` runs its blocking work, so shutdown waits for it.
    pub tasks: TaskTracker,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// How long lines may gather before writers are woken (`[server] flush_interval`).
    pub flush_interval: Duration,
    /// How far apart a busy client's writes are kept (`[server] busy_flush_interval`; see
    /// `hub::write_schedule`).
    pub busy_flush_interval: Duration,
    /// Where accounts, bans, mutes, room settings, history and the audit log are kept; `None`
    /// keeps nothing beyond this process.
    pub store: Option<Store>,
    /// Names whose role the configuration file sets (`[[accounts]]`): `/role` and `/unregister`
    /// leave them alone.
    pub configured: HashSet<NameKey>,
    /// How each front door renders deliveries; door 0 is the text protocol.
    pub doors: Doors,
    /// The moderation queue's settings.
    pub moderation: crate::config::ModerationConfig,
    /// The TLS certificate, which an admin's `/reload` reloads too.
    pub tls: Option<crate::net::tls::TlsCertificates>,
    /// The cluster this server is part of, if any.
    pub cluster: Option<crate::cluster::ClusterLink>,
}

/// The renderers of the front doors, indexed by [`DoorId`]. Its `Default`, the text door
/// alone, lives with the text renderer ([`crate::doors::text::TextRender`]).
#[derive(Clone)]
pub struct Doors(Vec<Arc<dyn Render>>);

impl std::fmt::Debug for Doors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Doors({})", self.0.len())
    }
}

impl Doors {
    /// The text door's renderer as door 0, alone.
    pub(crate) fn with_text(text: Arc<dyn Render>) -> Self {
        Doors(vec![text])
    }

    /// Adds a door; its id. At most [`MAX_DOORS`] doors.
    ///
    /// # Panics
    /// When there are already [`MAX_DOORS`]: a programming error, caught by the tests.
    pub fn add(&mut self, render: Arc<dyn Render>) -> DoorId {
        assert!(self.0.len() < MAX_DOORS, "at most {MAX_DOORS} front doors");
        self.0.push(render);
        DoorId((self.0.len() - 1) as u8)
    }

    /// The renderer of `door` (the text protocol's for an unknown door).
    pub fn get(&self, door: DoorId) -> &Arc<dyn Render> {
        self.0.get(usize::from(door.0)).unwrap_or(&self.0[0])
    }
}
