//! [`RoomHub`]: the actor that owns members, rooms, names and bans, and fans messages out.
//!
//! Invariants:
//! - every member is in at least one room and at most `[rooms] max_joined`, and in each of those
//!   rooms' member lists; a text-protocol member is in exactly one (`/join` moves);
//! - a username key maps to exactly one member; names are unique regardless of case;
//! - a room is removed when its last member leaves, unless it is permanent;
//! - fan-out never awaits: each recipient's [`Outbox`](crate::hub::Outbox) takes the shared line or is full, and a
//!   full outbox gets its client disconnected after the fan-out, so one slow client never delays
//!   the others;
//! - because one task sends everything, every member of a room sees that room's lines in the same
//!   order.
//!
//! This file holds the hub's state, its run loop and the dispatch of events and requests. The
//! way in from outside the pipeline ([`HubHandle`]) and the settings are in [`handle`], the
//! member table (registration, removal) in [`members`], fan-out to outboxes in [`fanout`], who
//! may speak and how a chat line or private message goes out in [`chat`]. Commands live in
//! [`commands`], moderation (kicks, bans) in [`moderation`] and mutes in [`mutes`], with when a
//! sanction ends in [`until`]; room moves, settings and history in [`rooms`], account commands
//! in [`accounts`], and the glue to the store (loading at start-up, saving changes, continuing
//! once they are committed) in [`persistence`]. In a cluster, room lines, presence and other servers' events are in [`cluster`], commands aimed at other servers' members in [`cross_server`], and the replicated shared state in [`shared_state`]. The moderation queue's held lines are in [`queue`], members' reports in
//! [`reports`].

mod accounts;
mod chat;
mod cluster;
mod commands;
mod cross_server;
mod fanout;
mod handle;
mod members;
mod moderation;
mod mutes;
mod persistence;
mod queries;
mod queue;
mod reports;
mod rooms;
mod shared_state;
mod until;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

pub use handle::{Doors, HubHandle, HubSettings, RegisterError};
pub use queries::{MemberSummary, RoomSummary};
pub(crate) use until::describe_duration;

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::delivery::{Delivery, MAX_DOORS};
use super::write_schedule::WriteSchedule;
use crate::event::{Body, ClientId, Command, Event};
use crate::metrics::DropReason;
use crate::names::NameKey;
use crate::protocol;
use crate::store::LineKind;
use fanout::Pending;
use handle::{Continuation, REQUEST_CAPACITY, Request};
use members::{Member, Told};
use moderation::Ban;
use mutes::Mute;
use rooms::Room;
use until::{MAX_SANCTION, Until};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Client, Role};
    use crate::hub::delivery::DoorId;
    use crate::hub::outbox::Outbox;

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
}
