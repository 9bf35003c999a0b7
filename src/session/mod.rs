//! What every door's session shares: the state every session reads (`SessionShared`), a
//! connection's place in the limits (`Admission`), sending into the pipeline (`send`,
//! `send_next`), bad-line counting (`BadLines`); and, in its modules, the one-task connection,
//! the idle watch, the login steps and their throttle, the line reader and codec, and the batched
//! writer.
//!
//! A door (see [`crate::doors`]) runs its protocol on top of these; nothing here knows a door.

pub mod accounts;
pub(crate) mod connection;
pub(crate) mod idle;
pub mod line_codec;
pub(crate) mod line_reader;
pub(crate) mod login;
pub(crate) mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::accounts::Accounts;
use self::idle::Liveness;
use crate::addresses::AddressList;
use crate::config::ServerConfig;
use crate::event::{Body, Client, ClientId, Event};
use crate::hub::{HubHandle, Outbox};
use crate::metrics::Metrics;
use crate::net::admission::{AddressGuard, AddressLimits};

/// Username attempts before the connection is closed.
pub const MAX_NAME_ATTEMPTS: usize = 5;

/// What every session shares.
pub(crate) struct SessionShared {
    pub(crate) config: ServerConfig,
    pub(crate) default_room: Arc<str>,
    pub(crate) hub: HubHandle,
    pub(crate) accounts: Accounts,
    pub(crate) address_limits: Arc<AddressLimits>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) pipeline: mpsc::Sender<Event>,
    /// Where registered accounts are looked up (after the configuration file's).
    pub(crate) store: crate::store::Store,
    /// Connections served at once, over every door: a permit is taken before a connection is
    /// served and released when it is fully closed.
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// The last client id handed out, over every door.
    pub(crate) next_id: std::sync::atomic::AtomicU64,
    /// Disconnects clients that stay silent too long.
    pub(crate) idle: Arc<idle::IdleWatch>,
    /// Cancelled when shutdown begins: stop reading.
    pub(crate) stop_reading: CancellationToken,
    /// Cancelled when the shutdown grace period is over: stop writing.
    pub(crate) cut: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Proxies whose word on a client's address is taken (`[admission] trusted_proxies`).
    pub(crate) trusted_proxies: AddressList,
    /// Refuse a trusted proxy's connection without a PROXY header.
    pub(crate) require_proxy_header: bool,
}

impl SessionShared {
    /// A new connection's outbox, with the configured bounds.
    pub(crate) fn new_outbox(&self) -> Outbox {
        let config = &self.config;
        Outbox::new(
            config.outbox_lines,
            config.outbox_bytes,
            config.stall_timeout,
        )
    }

    /// A new client id, unique over every door for the server's life.
    pub(crate) fn next_client_id(&self) -> ClientId {
        ClientId(
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
        )
    }
}

/// A connection's place in the connection limits; dropping it frees the place.
#[derive(Debug)]
#[expect(dead_code, reason = "the fields are held for what their Drop releases")]
pub(crate) struct Admission {
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) address: Option<AddressGuard>,
}

/// What a connection's reading side has sent into the pipeline: the registered client and the
/// number of its next event. It outlives the reading side, so the connection can still tell the
/// pipeline the client left when the writing side ends first. It also keeps when the client was
/// last heard: the idle watch holds it (weakly) for that, and one allocation serves both.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    client: OnceLock<Arc<Client>>,
    next_seq: AtomicU64,
    /// When the client was last heard, for the [`idle::IdleWatch`].
    liveness: Liveness,
}

impl Sent {
    /// The hub has taken the client: its lines may now go into the pipeline.
    pub(crate) fn registered(&self, client: Arc<Client>) {
        let _ = self.client.set(client);
    }

    /// When the client was last heard, and what the idle watch has asked of the reading side.
    pub(crate) fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// The registered client, if any.
    pub(crate) fn client(&self) -> Option<&Arc<Client>> {
        self.client.get()
    }

    /// The client's next event; `None` before registration. (Numbers may skip one whose event
    /// was never sent; the pipeline only needs them to grow.)
    pub(crate) fn event(&self, body: Body) -> Option<Event> {
        let client = self.client.get()?.clone();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        Some(Event::new(client, seq, body))
    }
}

/// Counts over-long and invalid lines in the last minute.
pub(crate) struct BadLines {
    max: usize,
    recent: std::collections::VecDeque<Instant>,
}

impl BadLines {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    pub(crate) fn new(max: usize) -> Self {
        BadLines {
            max,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Records an offence; true when it is one too many.
    pub(crate) fn offend(&mut self) -> bool {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Self::WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() >= self.max
    }
}

/// Sends the client's next event, with `body`, into the pipeline (see [`send`]). False when
/// the client is not registered, shutdown began or the pipeline is gone.
///
/// The event is made here rather than by the caller: an event an `async fn` holds while it is
/// sent stays in that future's state (eighty bytes in every idle connection) after it has gone.
pub(crate) fn send_next<'a>(
    shared: &'a SessionShared,
    sent: &Sent,
    body: Body,
) -> impl Future<Output = bool> + Send + 'a {
    send_if_any(shared, sent.event(body))
}

/// Sends into the pipeline, waiting while it is full (which stops reading from this client, so
/// TCP pushes back on it). False when shutdown began or the pipeline is gone.
pub(crate) fn send(shared: &SessionShared, event: Event) -> impl Future<Output = bool> + Send + '_ {
    send_if_any(shared, Some(event))
}

/// [`send`], or false at once for no event.
///
/// Not an `async fn`: the common case, room in the pipeline, needs no future state, and the
/// waiting case is boxed, so a session's future stays small while it is idle.
fn send_if_any(
    shared: &SessionShared,
    event: Option<Event>,
) -> impl Future<Output = bool> + Send + '_ {
    let waiting = match event {
        None => Some(None),
        Some(event) => match shared.pipeline.try_send(event) {
            Ok(()) => None,
            Err(TrySendError::Closed(_)) => Some(None),
            Err(TrySendError::Full(event)) => Some(Some(Box::pin(async move {
                tokio::select! {
                    _ = shared.stop_reading.cancelled() => false,
                    sent = shared.pipeline.send(event) => sent.is_ok(),
                }
            }))),
        },
    };
    async move {
        match waiting {
            None => true,
            Some(None) => false,
            Some(Some(wait)) => wait.await,
        }
    }
}
