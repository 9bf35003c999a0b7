//! [`RoomHub`]: the actor that owns members, rooms, names and bans, and fans messages out.
//!
//! Invariants:
//! - every member is in at least one room and at most `[rooms] max_joined`, and in each of those
//!   rooms' member lists; a text-protocol member is in exactly one (`/join` moves);
//! - a username key maps to exactly one member; names are unique regardless of case;
//! - a room is removed when its last member leaves, unless it is permanent;
//! - fan-out never awaits: each recipient's [`Outbox`] takes the shared line or is full, and a
//!   full outbox gets its client disconnected after the fan-out, so one slow client never delays
//!   the others;
//! - because one task sends everything, every member of a room sees that room's lines in the same
//!   order.
//!
//! Commands live in [`commands`], moderation (mutes, kicks, bans) in [`moderation`], room moves,
//! settings and history in [`rooms`], account commands in [`accounts`], and the glue to the
//! store (loading at start-up, saving changes, continuing once they are committed) in
//! [`persistence`].

mod accounts;
mod cluster;
mod commands;
mod moderation;
mod persistence;
mod queries;
mod queue;
mod rooms;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

pub use queries::{MemberSummary, RoomSummary};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::delivery::{Delivery, DoorId, MAX_DOORS, Render, Scope};
use super::outbox::{Outbox, Queued};
use super::write_schedule::WriteSchedule;
use crate::addresses::AddressList;
use crate::config::RoomsConfig;
use crate::event::{Body, Client, ClientId, Command, Event, Role};
use crate::filters::{FilterRules, FilterSet};
use crate::metrics::{DropReason, Metrics};
use crate::names::NameKey;
use crate::protocol;
use crate::store::{LineKind, Store};

/// Capacity of the registration channel. Registrations are rare and quick; a burst of connects
/// waits here briefly rather than piling up.
const REQUEST_CAPACITY: usize = 256;

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
enum Request {
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
    requests: mpsc::Sender<Request>,
    /// In a cluster, names are claimed cluster-wide before the hub takes a client. Set at most
    /// once: at start, or when a server that started alone joins its cluster later.
    claims: Arc<std::sync::OnceLock<crate::cluster::NameClaims>>,
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

/// The hub stopped because the pipeline feeding it panicked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the hub stopped: the pipeline panicked: {0}")]
pub struct HubFailure(pub String);

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
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
    /// their room was not known yet ([`Event::filter_in_hub`]).
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

struct Member {
    client: Arc<Client>,
    outbox: Outbox,
    door: DoorId,
    /// The rooms the member is in, in join order; the last is where plain lines go.
    rooms: Vec<Arc<str>>,
    connected_at: Instant,
    /// While set and not over, the member's lines are refused.
    muted: Option<Until>,
}

impl Member {
    fn role(&self) -> Role {
        self.client.info().role
    }

    /// The room plain lines go to: the one joined last.
    fn current_room(&self) -> Option<&Arc<str>> {
        self.rooms.last()
    }

    /// How long the member stays muted (`Some(None)`: until unmuted), if they are.
    fn muted_for(&self) -> Option<Option<Duration>> {
        self.muted?.remaining(Instant::now())
    }
}

/// Who has heard of a chat-wide change (a member left, or was renamed) announced room by room.
/// Nothing is tracked for a member in one room: nobody could hear it twice.
pub(super) struct Told(Option<HashSet<ClientId>>);

impl Told {
    /// For a change announced in `rooms` rooms.
    pub(super) fn across(rooms: usize) -> Self {
        Told((rooms > 1).then(HashSet::new))
    }

    /// Records `id` as told; false if it was already.
    fn first_time(&mut self, id: ClientId) -> bool {
        self.0.as_mut().is_none_or(|told| told.insert(id))
    }
}

/// Who in a room hears a delivery.
#[derive(Debug, Clone, Copy)]
enum Audience {
    Everyone,
    /// A quiet room (above `[rooms] quiet_above`): the members whose door keeps a member list,
    /// and the member the delivery is about.
    MemberListsAnd(Option<ClientId>),
}

#[derive(Default)]
struct Room {
    /// Members in join order, with their doors and outboxes at hand for fan-out.
    members: Vec<(ClientId, DoorId, Outbox)>,
    /// The last chat lines (as [`Delivery::History`]), oldest first, for replay on join.
    history: VecDeque<Delivery>,
    /// Only moderators and voiced members may speak.
    moderated: bool,
    /// Names (not connections: voice survives a reconnect and a restart) that may speak while
    /// the room is moderated.
    voiced: HashSet<NameKey>,
    /// Shown on join; anyone reads it with `/topic`, moderators set it.
    topic: Option<String>,
    /// Kept when empty because a moderator said `/room keep` (the default room and
    /// `[rooms] permanent` are kept anyway).
    kept: bool,
    /// Members whose door shows member lists: [`Delivery::Members`] is built only when some.
    watchers: usize,
}

/// A ban on a name and (unless exempt) the address it was used from.
#[derive(Clone)]
struct Ban {
    /// The name as the moderator typed it, for `/bans`.
    shown: String,
    name: NameKey,
    addr: Option<IpAddr>,
    until: Until,
    reason: String,
}

/// A mute. It follows the person, not a name: every name they take while muted (by `/nick`, or
/// by reconnecting from the muted address) is added to `names`, and a guest's address is kept, so
/// neither a rename nor a reconnect sheds it. A registered member's mute is carried by the
/// account (its name, which only its owner can take), not by an address others may share.
#[derive(Clone)]
struct Mute {
    /// The names the person has used while muted, as spelled; the first is the one muted (and
    /// the key it is stored under).
    names: Vec<String>,
    /// A guest's address when muted, unless exempt.
    addr: Option<IpAddr>,
    until: Until,
    /// Why, as `/mutes` shows it.
    reason: String,
}

impl Mute {
    /// Whether the mute holds for `name` (any case) connected from `addr` (an exempt address
    /// never matches).
    fn covers(&self, name: &NameKey, addr: Option<IpAddr>) -> bool {
        self.names.iter().any(|n| NameKey::new(n) == *name)
            || (self.addr.is_some() && self.addr == addr)
    }

    /// As the store keeps it.
    fn stored(&self) -> crate::store::StoredMute {
        crate::store::StoredMute {
            name: self.names.first().cloned().unwrap_or_default(),
            until: self.until.to_system(),
            reason: self.reason.clone(),
            addr: self.addr,
            also: self.names.iter().skip(1).cloned().collect(),
        }
    }
}

/// The longest mute or ban with an end: anything longer lasts until a moderator lifts it. Also
/// keeps `Instant` arithmetic far from overflowing, whatever duration a client or a filter file
/// names.
pub(crate) const MAX_SANCTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// When a mute or a ban ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// When a moderator lifts it.
    Lifted,
    /// At this instant.
    At(Instant),
}

impl Until {
    /// `duration` from now; no duration, or one over [`MAX_SANCTION`], lasts until lifted.
    fn after(duration: Option<Duration>) -> Until {
        duration
            .filter(|d| *d <= MAX_SANCTION)
            .and_then(|d| Instant::now().checked_add(d))
            .map_or(Until::Lifted, Until::At)
    }

    /// `None` once over; `Some(None)` until lifted; else the time left.
    fn remaining(self, now: Instant) -> Option<Option<Duration>> {
        match self {
            Until::Lifted => Some(None),
            Until::At(until) if until > now => Some(Some(until - now)),
            Until::At(_) => None,
        }
    }

    /// `for 5m`, or `until lifted` in the words of `lift` (`until unbanned`).
    fn describe(self, lift: &str) -> String {
        match self.remaining(Instant::now()) {
            Some(Some(left)) => format!("for {}", describe_duration(left)),
            _ => format!("until {lift}"),
        }
    }
}

/// The hub actor. Build it with [`RoomHub::new`], then drive it with [`RoomHub::run`].
pub struct RoomHub {
    members: HashMap<ClientId, Member>,
    names: HashMap<NameKey, ClientId>,
    rooms: HashMap<Arc<str>, Room>,
    bans: Vec<Ban>,
    /// Mutes in force, by person (see [`Mute`]): a mute outlives a rename, a reconnect and,
    /// through the store, a restart.
    mutes: Vec<Mute>,
    default_room: Arc<str>,
    settings: HubSettings,
    requests: mpsc::Receiver<Request>,
    /// The hub's own request channel, for continuations from the store and the blocking pool.
    me: mpsc::Sender<Request>,
    /// Lines held for review, and reports.
    queue: queue::Queue,
    /// What queueing lines left to do: writers to wake, clients to cut off.
    pending: Pending,
    /// What this server knows of the other servers of its cluster.
    cluster: cluster::ClusterState,
}

/// Follow-up work from queueing lines, done after a fan-out rather than during it.
struct Pending {
    /// Clients found with a full outbox, disconnected once the fan-out is done.
    too_slow: Vec<ClientId>,
    /// Writers given lines since they were last woken, by when they are due.
    writes: WriteSchedule,
    /// When the event or request being handled came in (one clock reading for its whole
    /// fan-out).
    now: Instant,
    /// Some outbox is past half its bounds: its writer was woken at once, and the hub should let
    /// it run before queueing more.
    backlogged: bool,
}

impl Pending {
    /// Queues `line` for client `id`, leaving the wake-up of its writer to the write schedule
    /// unless its queue is getting long.
    fn queue(&mut self, id: ClientId, outbox: &Outbox, line: Bytes) {
        match outbox.push_quietly(line) {
            Ok(Queued::First { last_woken }) => {
                self.writes.queue(id, outbox, last_woken, self.now);
            }
            Ok(Queued::Urgent) => {
                outbox.wake();
                self.backlogged = true;
            }
            Ok(Queued::Behind | Queued::Closed) => {}
            Err(_) => self.too_slow.push(id),
        }
    }
}

impl RoomHub {
    /// A hub with these settings, and the handle sessions use to reach it.
    pub fn new(settings: HubSettings) -> (RoomHub, HubHandle) {
        let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
        let writes = WriteSchedule::new(settings.flush_interval, settings.busy_flush_interval);
        let hub = RoomHub {
            members: HashMap::new(),
            names: HashMap::new(),
            rooms: HashMap::new(),
            bans: Vec::new(),
            mutes: Vec::new(),
            default_room: Arc::from(settings.rooms.default.as_str()),
            settings,
            requests: rx,
            me: tx.clone(),
            queue: queue::Queue::default(),
            pending: Pending {
                too_slow: Vec::new(),
                writes,
                now: Instant::now(),
                backlogged: false,
            },
            cluster: cluster::ClusterState::default(),
        };
        let claims = Arc::new(std::sync::OnceLock::new());
        if let Some(link) = &hub.settings.cluster {
            let _ = claims.set(link.claims.clone());
        }
        (
            hub,
            HubHandle {
                requests: tx,
                claims,
            },
        )
    }

    /// Runs until `events` ends, which happens once every session has stopped feeding the
    /// pipeline and the pipeline has drained. Then every client is told the server is shutting
    /// down and its outbox is closed after what is already queued.
    ///
    /// Writers are woken on the write schedule (`hub::write_schedule`): a quiet client's lines
    /// gather for `flush_interval`, a busy client's go out once per `busy_flush_interval` in a
    /// slot of its own, in one write each. That is what keeps a busy room from costing one
    /// syscall per line per member, and its writes from all coming at once.
    ///
    /// A panic while carrying out one event or request costs that event only: it is logged,
    /// counted, and the client who sent it is told. A panic in the pipeline feeding the hub
    /// cannot be recovered from (the stream is broken); then every client is told and `run`
    /// returns [`HubFailure`], so the server can stop rather than pretend to be alive.
    ///
    /// # Errors
    /// [`HubFailure`] when the pipeline's output panicked.
    pub async fn run(mut self, events: impl Stream<Item = Event>) -> Result<(), HubFailure> {
        let mut events = std::pin::pin!(events);
        let mut requests_open = true;
        // Armed for the earliest writer due on the write schedule, unarmed while none is.
        let write_timer = tokio::time::sleep(Duration::ZERO);
        let mut write_timer = std::pin::pin!(write_timer);
        let mut write_at: Option<Instant> = None;
        // Armed only while lines are held, for the oldest one's expiry: an idle hub sets no
        // timers (and a paused clock in a test does not run away).
        let expiry = tokio::time::sleep(Duration::ZERO);
        let mut expiry = std::pin::pin!(expiry);
        let mut expiry_at: Option<Instant> = None;
        loop {
            let next_expiry = self.queue.next_expiry(self.settings.moderation.hold_for);
            if next_expiry != expiry_at {
                expiry_at = next_expiry;
                if let Some(at) = next_expiry {
                    expiry.as_mut().reset(at);
                }
            }
            let next_write = self.pending.writes.next_wake();
            if next_write != write_at {
                write_at = next_write;
                if let Some(at) = next_write {
                    write_timer.as_mut().reset(at);
                }
            }
            tokio::select! {
                // Registrations first: a waiting client is cheap to serve and is in a handshake.
                biased;
                request = self.requests.recv(), if requests_open => match request {
                    Some(request) => self.guarded(None, |hub| hub.handle_request(request)),
                    None => requests_open = false,
                },
                () = &mut write_timer, if write_at.is_some() => {
                    write_at = None;
                    self.pending.writes.wake_due(Instant::now());
                }
                () = &mut expiry, if expiry_at.is_some() => {
                    expiry_at = None;
                    self.guarded(None, |hub| hub.expire_held());
                }
                event = AssertUnwindSafe(events.next()).catch_unwind() => match event {
                    Ok(Some(event)) => {
                        let id = event.client.id();
                        self.guarded(Some(id), |hub| hub.handle_event(event));
                    }
                    Ok(None) => break,
                    Err(panic) => {
                        let failure = HubFailure(panic_message(panic.as_ref()));
                        tracing::error!(%failure, "the pipeline panicked; stopping the server");
                        self.flush();
                        self.shut_down(protocol::STOPPED_AFTER_ERROR);
                        return Err(failure);
                    }
                },
            }
            self.disconnect_slow_clients();
            if std::mem::take(&mut self.pending.backlogged) {
                // Writers fell behind (a paste, or a backlog released at once): wake them all
                // and step aside so they run before more is queued for them.
                self.flush();
                tokio::task::yield_now().await;
            }
            // With no `flush_interval`, writers are due as soon as they are given lines.
            let now = self.pending.now;
            if self.pending.writes.any_due(now) {
                self.pending.writes.wake_due(now);
            }
        }
        self.flush();
        self.shut_down(protocol::SHUTTING_DOWN);
        Ok(())
    }

    /// Runs `work`, containing a panic in it: the panic is logged and counted, and `client`
    /// (whose line or command it was) is told it could not be carried out.
    fn guarded(&mut self, client: Option<ClientId>, work: impl FnOnce(&mut RoomHub)) {
        self.pending.now = Instant::now();
        let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| work(self))) else {
            return;
        };
        let message = panic_message(panic.as_ref());
        tracing::error!(client = ?client, panic = %message, "handling an event panicked; it was dropped");
        self.settings.metrics.dropped(DropReason::Panic, 1);
        if let Some(id) = client {
            self.tell(
                id,
                "Sorry, that could not be done (an internal error); it was dropped.",
            );
        }
    }

    /// Wakes every writer that has lines waiting, due or not.
    fn flush(&mut self) {
        self.pending.writes.wake_all(Instant::now());
    }

    fn handle_request(&mut self, request: Request) {
        match request {
            Request::Register {
                client,
                outbox,
                door,
                reply,
            } => {
                let id = client.id();
                let result = self.register(client, outbox, door);
                // A session that went while it waited for this answer will never send its Left
                // event: take its client out again.
                if let Err(Ok(())) = reply.send(result) {
                    self.remove(id, "connection closed", None, true);
                }
            }
            Request::Continue(work) => work(self),
            Request::Cluster(input) => self.handle_cluster(input),
        }
    }

    fn register(
        &mut self,
        client: Arc<Client>,
        outbox: Outbox,
        door: DoorId,
    ) -> Result<(), RegisterError> {
        let name = client.name();
        let key = NameKey::new(&name);
        if let Some(ban) = self.ban_on(&key, client.addr().ip()) {
            return Err(ban);
        }
        if self.names.contains_key(&key) {
            return Err(RegisterError::NameTaken(name.to_string()));
        }
        let id = client.id();
        // A mute follows the person back: under a name it holds, or (a guest) from its address.
        let muted = self.mute_on_arrival(&name, client.addr().ip());
        self.names.insert(key, id);
        tracing::info!(
            client = %id, name = %name, peer = %client.addr(), role = client.info().role.as_str(),
            connections = self.members.len() + 1, "client joined"
        );
        self.members.insert(
            id,
            Member {
                client,
                outbox,
                door,
                rooms: Vec::new(),
                connected_at: Instant::now(),
                muted,
            },
        );
        let room = self.default_room.clone();
        if let Some(member) = self.members.get(&id) {
            let welcome = Delivery::Welcome {
                name: name.clone(),
                role: member.role(),
                rooms: vec![room.clone()],
            };
            self.deliver(id, &welcome);
        }
        self.enter_room(id, &room, Scope::Chat, Some(protocol::HELP_HINT));
        if self
            .members
            .get(&id)
            .is_some_and(|m| m.role() != Role::User)
        {
            self.send_moderator_view(id);
        }
        Ok(())
    }

    fn handle_event(&mut self, event: Event) {
        let room_change = matches!(event.body, Body::Command(Command::Join(_) | Command::Leave))
            .then(|| event.client.clone());
        self.handle_event_for_room(event);
        if let Some(client) = room_change {
            // Only now, with the move done (or refused), does the client's room say where its
            // next line goes: the worker pool may judge such lines again.
            client.room_change_done();
        }
    }

    fn handle_event_for_room(&mut self, event: Event) {
        let id = event.client.id();
        // Events from a client that already left (kicked, too slow, or racing its own /quit) are
        // moot.
        let Some(member) = self.members.get(&id) else {
            return;
        };
        // A question needs no room: answered here, in its turn among the chat events.
        if let Body::Query(query) = &event.body {
            query.answer(self);
            return;
        }
        // The room a line is for: the one the client named, if it is in it; else its current.
        let room = match &event.room {
            Some(named) if member.rooms.iter().any(|r| r == named) => named.clone(),
            Some(named) => {
                let named = named.clone();
                self.tell(id, &format!("You are not in {named}; /join it first."));
                return;
            }
            None => match member.current_room() {
                Some(room) => room.clone(),
                None => return,
            },
        };
        if event.filter_in_hub {
            self.filter_now(event, room);
            return;
        }
        let is_speech = matches!(
            event.body,
            Body::Chat(_) | Body::Action(_) | Body::Private { .. } | Body::Held { .. }
        );
        if is_speech {
            let latency = event.received_at.elapsed().as_secs_f64();
            self.settings.metrics.pipeline_latency.observe(latency);
        }
        let in_room = !matches!(event.body, Body::Private { .. });
        if is_speech && let Some((code, refusal)) = self.refusal_to_speak(id, &room, in_room) {
            self.deliver(id, &Delivery::room_coded(code, &room, &refusal));
            return;
        }
        match event.body {
            Body::Chat(text) => {
                let name = event.client.name();
                tracing::debug!(client = %id, room = %room, text = %text, "chat");
                self.say_in_room(&room, LineKind::Chat, name, text, false, Some(id));
            }
            Body::Action(text) => {
                let name = event.client.name();
                tracing::debug!(client = %id, room = %room, text = %text, "action");
                self.say_in_room(&room, LineKind::Action, name, text, false, Some(id));
            }
            Body::Private { to, text } => self.private_message(id, &to, &text),
            Body::Notice(text) => {
                let code = notice_code(&text);
                self.deliver(
                    id,
                    &Delivery::Notice {
                        text: Arc::from(text),
                        code,
                        room: None,
                    },
                );
            }
            Body::Blocked(text) => self.deliver(id, &Delivery::room_coded("blocked", &room, &text)),
            Body::Command(command) => self.handle_command(id, &room, command),
            Body::Left(reason) => self.remove(id, &reason, None, false),
            Body::Sanction(sanction) => self.apply_sanction(id, sanction),
            Body::Alert(text) => self.alert_moderators(&text),
            Body::Held {
                filter,
                reason,
                action,
                text,
            } => self.hold(id, &room, filter, reason, action, text),
            // Answered above.
            Body::Query(_) => {}
            // An unparsed line means the pipeline has no parse stage: relaying it as chat would
            // leak commands into rooms, so answer instead.
            Body::Line(_) => {
                tracing::error!(client = %id, "raw line reached the hub; is the parse stage missing?");
                self.tell(id, "Your message could not be processed.");
            }
        }
    }

    /// Runs the filters on a line the worker pool left unjudged ([`Event::filter_in_hub`]), now
    /// that the room it goes to is known, then handles the verdict (and any alerts) as if the
    /// worker pool had given it. Rare (a line sent right behind its sender's `/join` or
    /// `/leave`), so the hub's task can afford it.
    fn filter_now(&mut self, mut event: Event, room: Arc<str>) {
        event.filter_in_hub = false;
        event.room = Some(room);
        let chain = self.settings.filters.current();
        let (judged, alerts) =
            crate::pipeline::worker_pool::apply_filters(&chain, event, &self.settings.metrics);
        for event in judged.into_iter().chain(alerts) {
            self.handle_event_for_room(event);
        }
    }

    /// Why `id` may not speak now, if it may not: a mute silences everything; a moderated room
    /// only what is said `in_room` (private messages are not the room's business).
    fn refusal_to_speak(
        &self,
        id: ClientId,
        room: &str,
        in_room: bool,
    ) -> Option<(&'static str, String)> {
        let member = self.members.get(&id)?;
        if let Some(left) = member.muted_for() {
            return Some((
                "muted",
                match left {
                    Some(left) => format!("You are muted for another {}.", describe_duration(left)),
                    None => "You are muted until a moderator unmutes you.".to_owned(),
                },
            ));
        }
        let room_state = self.rooms.get(room)?;
        if in_room
            && room_state.moderated
            && member.role() == Role::User
            && !room_state
                .voiced
                .contains(&NameKey::new(&member.client.name()))
        {
            return Some((
                "moderated",
                format!("{room} is moderated: only moderators and voiced users may speak."),
            ));
        }
        None
    }

    fn private_message(&mut self, from: ClientId, to: &str, text: &str) {
        let Some(&target) = self.names.get(&NameKey::new(to)) else {
            if !self.private_message_elsewhere(from, to, text) {
                self.tell(from, &format!("No user named {to} is online."));
            }
            return;
        };
        let (Some(sender), Some(recipient)) = (self.members.get(&from), self.members.get(&target))
        else {
            return;
        };
        let (sender_name, recipient_name) = (sender.client.name(), recipient.client.name());
        tracing::debug!(from = %from, to = %target, text = %text, "private message");
        let text: Arc<str> = Arc::from(text);
        let incoming = Delivery::Private {
            from: sender_name.clone(),
            to: recipient_name.clone(),
            text: text.clone(),
            outgoing: false,
        };
        self.deliver(target, &incoming);
        let outgoing = Delivery::Private {
            from: sender_name,
            to: recipient_name,
            text,
            outgoing: true,
        };
        self.deliver(from, &outgoing);
    }

    /// A `SERVER:` line to one client.
    fn tell(&mut self, id: ClientId, text: &str) {
        self.deliver(id, &Delivery::notice(text));
    }

    /// Renders `delivery` for one client's door and queues it.
    fn deliver(&mut self, id: ClientId, delivery: &Delivery) {
        if let Some(member) = self.members.get(&id)
            && let Some(bytes) = self
                .settings
                .doors
                .get(member.door)
                .render_to(delivery, &member.client.name())
        {
            self.pending.queue(id, &member.outbox, bytes);
        }
    }

    /// Renders `delivery` once per door and puts the shared buffer into the outbox of every
    /// member of `room`.
    fn broadcast(&mut self, room: &str, delivery: &Delivery) {
        self.fan_out(room, delivery, None, Audience::Everyone);
    }

    /// [`RoomHub::broadcast`] of a chat-wide change (a member left, or was renamed), announced
    /// room by room: a member of a door that says it once ([`Render::presence_per_room`]) and
    /// already in `told` is skipped, and those told are added, so someone sharing several of
    /// the rooms hears it once.
    fn broadcast_once(&mut self, room: &str, delivery: &Delivery, told: &mut Told) {
        self.fan_out(room, delivery, Some(told), Audience::Everyone);
    }

    /// A join or a leave, to everyone in `room` — or, in a room larger than `[rooms]
    /// quiet_above`, only to the members whose door keeps a member list, and to the member it
    /// is about. Announcing every arrival to everyone costs a room of N members N² lines as it
    /// fills: 10,000 clients arriving took over two minutes of CPU that way.
    fn broadcast_presence(&mut self, room: &str, delivery: &Delivery) {
        self.broadcast_presence_once(room, delivery, None);
    }

    /// [`RoomHub::broadcast_presence`], told once as in [`RoomHub::broadcast_once`] when `told`
    /// is given.
    fn broadcast_presence_once(
        &mut self,
        room: &str,
        delivery: &Delivery,
        told: Option<&mut Told>,
    ) {
        let limit = self.settings.rooms.quiet_above;
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        // A leaving member is already out of the list: count the room as it was.
        let size = state.members.len() + usize::from(matches!(delivery, Delivery::Left { .. }));
        let audience = if limit == 0 || size <= limit {
            Audience::Everyone
        } else {
            let about = match delivery {
                Delivery::Joined { name, .. } | Delivery::Left { name, .. } => {
                    self.names.get(&NameKey::new(name)).copied()
                }
                _ => None,
            };
            Audience::MemberListsAnd(about)
        };
        self.fan_out(room, delivery, told, audience);
    }

    /// `delivery`, rendered once per door, queued for the members of `room` in `audience`
    /// (and not yet in `told`, for doors that say a chat-wide change once).
    fn fan_out(
        &mut self,
        room: &str,
        delivery: &Delivery,
        mut told: Option<&mut Told>,
        audience: Audience,
    ) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let doors = &self.settings.doors;
        let mut rendered: [Option<Option<Bytes>>; MAX_DOORS] = Default::default();
        for (id, door, outbox) in &state.members {
            let render = doors.get(*door);
            if let Audience::MemberListsAnd(about) = audience
                && !render.shows_members()
                && about != Some(*id)
            {
                continue;
            }
            if let Some(told) = told.as_deref_mut()
                && !render.presence_per_room()
                && !told.first_time(*id)
            {
                continue;
            }
            let slot = &mut rendered[usize::from(door.0) % MAX_DOORS];
            if let Some(bytes) = slot.get_or_insert_with(|| render.render(delivery)) {
                self.pending.queue(*id, outbox, bytes.clone());
            }
        }
    }

    /// `SERVER: TEXT` to every member of `room` (moderation announcements).
    fn announce(&mut self, room: &str, text: &str) {
        let room_name: Arc<str> = Arc::from(room);
        self.broadcast(room, &Delivery::room_notice(&room_name, text));
    }

    /// Brings the membership gauges up to date. Called wherever membership changes, before the
    /// change is announced, so nobody can see an announcement the metrics do not yet reflect.
    fn update_gauges(&self) {
        let metrics = &self.settings.metrics;
        metrics.connected_clients.set(self.members.len() as i64);
        metrics.rooms.set(self.rooms.len() as i64);
    }

    /// Says a chat line or action in `room`: alone, at once; in a cluster, through the room
    /// stream, which brings it back to every server (this one included) in the room's order.
    fn say_in_room(
        &mut self,
        room: &Arc<str>,
        kind: LineKind,
        from: Arc<str>,
        text: String,
        reviewed: bool,
        sender: Option<ClientId>,
    ) {
        if self.settings.cluster.is_some() {
            self.publish_line(room, kind, &from, text, reviewed, sender);
            return;
        }
        self.record_history(room, kind, &from, &text);
        self.deliver_line(room, kind, from, text, reviewed);
    }

    /// Broadcasts a chat line or action to this server's members of `room` and keeps it in the
    /// room's history.
    fn deliver_line(
        &mut self,
        room: &Arc<str>,
        kind: LineKind,
        from: Arc<str>,
        text: String,
        reviewed: bool,
    ) {
        let text: Arc<str> = Arc::from(text);
        let keep = self.settings.rooms.history;
        if keep > 0
            && let Some(state) = self.rooms.get_mut(room)
        {
            if state.history.len() == keep {
                state.history.pop_front();
            }
            state.history.push_back(Delivery::History {
                room: room.clone(),
                kind,
                from: from.clone(),
                text: text.clone(),
                at: std::time::SystemTime::now(),
            });
        }
        let room_name = room.clone();
        let delivery = match kind {
            LineKind::Chat => Delivery::Message {
                room: room_name,
                from,
                text,
                reviewed,
            },
            LineKind::Action => Delivery::Action {
                room: room_name,
                from,
                text,
                reviewed,
            },
        };
        self.broadcast(room, &delivery);
    }

    /// Sends a `SERVER:` line to every moderator and admin online.
    fn alert_moderators(&mut self, text: &str) {
        self.tell_moderators(&Delivery::coded("alert", text));
    }

    /// Disconnects every client found with a full outbox. Announcing one departure can fill
    /// another outbox, so this runs until no slow client is left.
    fn disconnect_slow_clients(&mut self) {
        while let Some(id) = self.pending.too_slow.pop() {
            self.remove(
                id,
                "too slow",
                Some(Delivery::coded("too_slow", protocol::TOO_SLOW)),
                true,
            );
        }
    }

    /// Removes a member, tells its rooms, and closes its outbox with `last` as the final line.
    fn remove(&mut self, id: ClientId, reason: &str, last: Option<Delivery>, discard_queued: bool) {
        let Some(member) = self.members.remove(&id) else {
            return;
        };
        let name = member.client.name();
        self.names.remove(&NameKey::new(&name));
        for room in &member.rooms {
            self.leave_room(id, room);
            self.publish_left(room, &name, true);
        }
        self.release_name(&name);
        let last = last.and_then(|d| self.settings.doors.get(member.door).render_to(&d, &name));
        let discarded = member.outbox.close(last, discard_queued);
        let metrics = &self.settings.metrics;
        metrics.disconnect(reason);
        if discarded > 0 {
            metrics.dropped(DropReason::SlowClient, discarded as u64);
        }
        tracing::info!(
            client = %id, name = %name, reason,
            connected_for = ?member.connected_at.elapsed(),
            connections = self.members.len(), "client left"
        );
        let mut told = Told::across(member.rooms.len());
        for room in &member.rooms {
            let left = Delivery::Left {
                room: room.clone(),
                name: name.clone(),
                scope: Scope::Chat,
            };
            self.broadcast_presence_once(room, &left, Some(&mut told));
        }
    }

    fn shut_down(&mut self, why: &str) {
        tracing::info!(
            connections = self.members.len(),
            "hub stopping: telling every client"
        );
        let notice = Delivery::coded("shutting_down", why);
        let mut rendered: [Option<Option<Bytes>>; MAX_DOORS] = Default::default();
        for member in self.members.values() {
            let doors = &self.settings.doors;
            let last = rendered[usize::from(member.door.0) % MAX_DOORS]
                .get_or_insert_with(|| doors.get(member.door).render(&notice))
                .clone();
            // Queued lines go first; the notice is written last even into a full outbox.
            member.outbox.close(last, false);
        }
        self.members.clear();
        self.rooms.clear();
        self.names.clear();
    }

    /// The member called `name` (any case), if online.
    fn find(&self, name: &str) -> Option<ClientId> {
        self.names.get(&NameKey::new(name)).copied()
    }
}

/// The machine-readable code of a notice the pipeline produced, where it has one.
fn notice_code(text: &str) -> Option<&'static str> {
    if text == protocol::RATE_LIMITED {
        Some("rate_limited")
    } else if text.starts_with("Unknown command") {
        Some("unknown_command")
    } else if text.starts_with("Usage:") {
        Some("usage")
    } else {
        None
    }
}

/// `1d 2h 5m 3s`-style text for a time, rounded up to whole seconds, the way every duration is
/// written to clients (and the way `/mute` and `/ban` read them).
pub(crate) fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic while carrying out one event costs that event: the hub goes on, the sender is
    /// told, the drop is counted.
    #[tokio::test]
    async fn a_panic_costs_one_event() {
        let (mut hub, _handle) = RoomHub::new(HubSettings::default());
        let client = Arc::new(Client::new(
            ClientId(1),
            "127.0.0.1:1".parse().unwrap(),
            crate::event::ClientInfo {
                name: Arc::from("alice"),
                room: Arc::from("lobby"),
                role: Role::User,
            },
        ));
        let outbox = Outbox::new(64, 1 << 16, Duration::from_secs(2));
        hub.register(client, outbox.clone(), DoorId::TEXT).unwrap();
        hub.guarded(Some(ClientId(1)), |_| panic!("a bug in a command"));
        assert!(hub.members.contains_key(&ClientId(1)), "the hub goes on");
        let told = match outbox.next_batch().await {
            crate::hub::Batch::Lines(lines, _) => lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect::<String>(),
            other => panic!("{other:?}"),
        };
        assert!(told.contains("an internal error"), "{told}");
        assert!(
            hub.settings
                .metrics
                .encode()
                .contains("chatpipe_lines_dropped_total{reason=\"panic\"} 1")
        );
    }

    #[test]
    fn durations_are_written_compactly() {
        assert_eq!(describe_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(describe_duration(Duration::from_secs(60)), "1m");
        assert_eq!(describe_duration(Duration::from_millis(90_500)), "1m 31s");
        assert_eq!(
            describe_duration(Duration::from_secs(90_061)),
            "1d 1h 1m 1s"
        );
        assert_eq!(describe_duration(Duration::ZERO), "0s");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_sanctions_last_until_lifted() {
        assert_eq!(Until::after(Some(Duration::MAX)), Until::Lifted);
        assert_eq!(Until::after(Some(MAX_SANCTION * 2)), Until::Lifted);
        assert_eq!(Until::after(None), Until::Lifted);
        let hour = Until::after(Some(Duration::from_secs(3600)));
        assert_eq!(hour.describe("unbanned"), "for 1h");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(hour.remaining(Instant::now()), None);
    }
}
