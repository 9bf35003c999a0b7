//! The assembly of the whole server: the doors ([`crate::doors`]) on their listeners
//! ([`crate::net`]), the shared session state ([`crate::session`]), the pipeline, the hub, the
//! store and the cluster; and the shutdown sequence.
//!
//! [`Server::run`] wires everything together:
//!
//! ```text
//! accept ─► session (reader) ─► pipeline input (bounded) ─► stages ─► RoomHub ─► outboxes ─► writers
//! ```
//!
//! Shutdown, when the future given to `run` completes:
//! 1. stop accepting and stop reading (sessions drop their handles on the pipeline input);
//! 2. the pipeline drains: every line read before the signal reaches the hub;
//! 3. the hub's input ends, so it queues `SERVER: Chat server is shutting down` behind everything
//!    else for every client and closes each outbox;
//! 4. the writers flush and close their sockets;
//! 5. `run` returns once every task has ended, or when the grace period is over, after cutting
//!    the remaining writers off.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::event::Event;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::addresses::AddressList;
use crate::admin::AdminState;
use crate::config::Config;
use crate::config::ConfigError;
use crate::doors::Protocol;
use crate::filters::{FilterErrors, FilterRules};
use crate::hub::{Doors, HubSettings, RoomHub};
use crate::metrics::Metrics;
use crate::names::NameKey;
use crate::net::admission::AddressLimits;
use crate::net::{listener, tls};
use crate::pipeline::{PipelineBuilder, StageContext};
use crate::session::SessionShared;
use crate::session::accounts::Accounts;
use crate::session::idle;
use crate::store::Store;

mod bind;
use bind::{bind_unless_off, listen};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen for {door} on {addr}: {source}")]
    Bind {
        /// Which listener: `the text door`, `the web door`, `the admin endpoints`, …
        door: &'static str,
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline cannot be assembled.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::UnknownStage),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The cluster could not be joined (and `[cluster] required` is on).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The hub stopped while the server was running: the server shut down instead of running
    /// on without delivering anything.
    #[error("{0}")]
    HubStopped(String),
}

/// Events queued between the sessions and the first stage. When it is full, readers wait, so a
/// saturated pipeline slows clients through TCP backpressure instead of growing a queue.
const PIPELINE_INPUT_CAPACITY: usize = 4096;

/// The pipeline's input: the sessions' events until shutdown begins, then what is already
/// queued, then the end. Closing it at shutdown (rather than waiting for every session to drop
/// its sender) lets the hub drain and tell every client goodbye while their connections are
/// still open to flush it.
fn pipeline_input(
    events: mpsc::Receiver<Event>,
    stop_reading: CancellationToken,
) -> impl futures::Stream<Item = Event> + Send {
    futures::stream::unfold(
        (events, stop_reading, false),
        |(mut events, stop_reading, closed)| async move {
            if !closed {
                // Shutdown first: a flood of events must not keep the input open.
                tokio::select! {
                    biased;
                    () = stop_reading.cancelled() => events.close(),
                    event = events.recv() => return event.map(|e| (e, (events, stop_reading, false))),
                }
            }
            let event = events.recv().await?;
            Some((event, (events, stop_reading, true)))
        },
    )
}

/// How long the writers get after the grace period has cut them, before `run` gives up waiting.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// How long `run` waits for the store to write what is queued at shutdown.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// A chat server: configuration plus a pipeline. See the module documentation.
pub struct Server {
    config: Config,
    pipeline: PipelineBuilder,
    rules: Option<FilterRules>,
    admin: Option<TcpListener>,
    web: Option<TcpListener>,
    irc: Option<TcpListener>,
    /// The TLS listeners of the text protocol and of IRC.
    text_tls: Option<TcpListener>,
    irc_tls: Option<TcpListener>,
    /// The certificate every TLS listener presents.
    certificates: Option<tls::TlsCertificates>,
    metrics: Arc<Metrics>,
}

impl Server {
    /// A server with the standard pipeline for `config`.
    pub fn new(config: Config) -> Self {
        let pipeline = PipelineBuilder::standard(&config);
        Server {
            config,
            pipeline,
            rules: None,
            admin: None,
            web: None,
            irc: None,
            text_tls: None,
            irc_tls: None,
            certificates: None,
            metrics: Metrics::new(),
        }
    }

    /// Binds the configured admin listener (`[admin] listen`), unless it is `""`.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address is bad or in use.
    pub async fn bind_admin(&self) -> Result<Option<TcpListener>, ServerError> {
        bind_unless_off(&self.config.admin.listen, "the admin endpoints").await
    }

    /// Binds the configured web listener (`[web] listen`), unless it is `""`.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address is bad or in use.
    pub async fn bind_web(&self) -> Result<Option<TcpListener>, ServerError> {
        bind_unless_off(&self.config.web.listen, "the web door").await
    }

    /// Binds the configured IRC listener (`[irc] listen`), unless it is `""`.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address is bad or in use.
    pub async fn bind_irc(&self) -> Result<Option<TcpListener>, ServerError> {
        bind_unless_off(&self.config.irc.listen, "the IRC door").await
    }

    /// Binds the TLS listeners (`[server] listen_tls`, `[irc] listen_tls`) and loads the
    /// certificate of `[tls]` for them and for `[web] tls`, unless none is configured.
    ///
    /// # Errors
    /// [`ServerError::Tls`] naming the certificate or key file at fault; [`ServerError::Bind`].
    pub async fn bind_tls(mut self) -> Result<Self, ServerError> {
        let (text, irc) = (
            self.config.server.listen_tls.clone(),
            self.config.irc.listen_tls.clone(),
        );
        if text.is_empty() && irc.is_empty() && !self.config.web.tls {
            return Ok(self);
        }
        let certificates = tls::TlsCertificates::load(&self.config.tls.cert, &self.config.tls.key)
            .map_err(ServerError::Tls)?;
        self.text_tls = bind_unless_off(&text, "the text door over TLS").await?;
        self.irc_tls = bind_unless_off(&irc, "the IRC door over TLS").await?;
        self.certificates = Some(certificates);
        Ok(self)
    }

    /// Serves the text protocol over TLS on `listener` with `certificates` while running.
    pub fn tls_listener(
        mut self,
        listener: TcpListener,
        certificates: tls::TlsCertificates,
    ) -> Self {
        self.text_tls = Some(listener);
        self.certificates = Some(certificates);
        self
    }

    /// Serves IRC over TLS on `listener` with `certificates` while running.
    pub fn irc_tls_listener(
        mut self,
        listener: TcpListener,
        certificates: tls::TlsCertificates,
    ) -> Self {
        self.irc_tls = Some(listener);
        self.certificates = Some(certificates);
        self
    }

    /// The TLS certificate in use, for reloading it (on SIGHUP, say).
    pub fn tls_certificates(&self) -> Option<tls::TlsCertificates> {
        self.certificates.clone()
    }

    /// Serves the IRC front door on `listener` while running.
    pub fn irc_listener(mut self, listener: TcpListener) -> Self {
        self.irc = Some(listener);
        self
    }

    /// Serves the web front door (the page and `/ws`) on `listener` while running.
    pub fn web_listener(mut self, listener: TcpListener) -> Self {
        self.web = Some(listener);
        self
    }

    /// Serves the admin endpoints (health, readiness, metrics) on `listener` while running.
    pub fn admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin = Some(listener);
        self
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Loads the filter files in `dir` into the pipeline's filter set (between the filters added
    /// with [`PipelineBuilder::filter_first`] and [`PipelineBuilder::filter`]).
    ///
    /// # Errors
    /// Every problem in the directory's files, with file, line and column.
    pub fn filters_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Result<Self, FilterErrors> {
        self.rules = Some(FilterRules::load(dir, self.pipeline.filters().clone())?);
        Ok(self)
    }

    /// The loaded filter rules, for reloading them (on SIGHUP, say). `None` until
    /// [`Server::filters_dir`] was called.
    pub fn filter_rules(&self) -> Option<FilterRules> {
        self.rules.clone()
    }

    /// Changes the pipeline: add stages or filters.
    ///
    /// ```
    /// use chatpipe::{Config, Server};
    /// use chatpipe::filters::{filter_fn, Verdict};
    ///
    /// let server = Server::new(Config::default())
    ///     .pipeline(|p| p.filter(filter_fn("polite", |_| Verdict::Pass)));
    /// ```
    pub fn pipeline(mut self, change: impl FnOnce(PipelineBuilder) -> PipelineBuilder) -> Self {
        self.pipeline = change(self.pipeline);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Binds the configured listen address.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address is bad or in use.
    pub async fn bind(&self) -> Result<TcpListener, ServerError> {
        let addr = self.config.listen_addr()?;
        listen(addr).map_err(|source| ServerError::Bind {
            door: "the text door",
            addr: self.config.server.listen.clone(),
            source,
        })
    }

    /// Serves `listener` until `shutdown` completes, then shuts down gracefully (see the module
    /// documentation) and returns.
    ///
    /// # Errors
    /// [`ServerError::Pipeline`] when the pipeline cannot be assembled.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let (cluster, join_later) =
            join_cluster(self.config.cluster.clone(), self.config.rooms.history).await?;
        let pipeline = self.pipeline.build()?;
        let filters = pipeline.filters().clone();
        let (store, snapshot, store_thread) = Store::open(
            &self.config.storage,
            self.config.rooms.history,
            self.metrics.clone(),
        )?;
        let tasks = TaskTracker::new();
        let stop_reading = CancellationToken::new();
        let cut = CancellationToken::new();

        let (input, input_rx) = mpsc::channel(PIPELINE_INPUT_CAPACITY);
        let metrics = self.metrics.clone();
        let ctx = StageContext {
            tasks: tasks.clone(),
            metrics: metrics.clone(),
        };
        if let Some(rules) = &self.rules {
            rules.attach_metrics(metrics.clone());
        }
        let output = pipeline.apply(
            Box::pin(pipeline_input(input_rx, stop_reading.clone())),
            &ctx,
        );
        let exempt = AddressList::new(&self.config.admission.exempt);
        let mut doors = Doors::default();
        let web_door = self
            .web
            .as_ref()
            .map(|_| doors.add(Arc::new(crate::doors::web::JsonRender)));
        let irc_render = Arc::new(crate::doors::irc::IrcRender::new(
            self.config.rooms.max_joined,
            self.config.server.max_line_bytes,
        ));
        let irc_door =
            (self.irc.is_some() || self.irc_tls.is_some()).then(|| doors.add(irc_render.clone()));
        let (mut hub, hub_handle) = RoomHub::new(HubSettings {
            rooms: self.config.rooms.clone(),
            exempt: exempt.clone(),
            filter_rules: self.rules.clone(),
            filters: filters.clone(),
            registered: self
                .config
                .accounts
                .iter()
                .map(|a| (NameKey::new(&a.name), a.role))
                .collect(),
            tasks: tasks.clone(),
            metrics: metrics.clone(),
            flush_interval: self.config.server.flush_interval,
            busy_flush_interval: self.config.server.busy_flush_interval,
            store: Some(store.clone()),
            configured: self
                .config
                .accounts
                .iter()
                .map(|a| NameKey::new(&a.name))
                .collect(),
            doors,
            moderation: self.config.moderation.clone(),
            tls: self.certificates.clone(),
            cluster: cluster.as_ref().map(|c| c.link()),
        });
        hub.restore(snapshot);
        if let Some(cluster) = cluster {
            cluster.start(hub_handle.clone(), &tasks, stop_reading.clone());
        }
        if join_later {
            tasks.spawn(crate::cluster::join_later(
                self.config.cluster.clone(),
                self.config.rooms.history,
                hub_handle.clone(),
                tasks.clone(),
                stop_reading.clone(),
            ));
        }
        let mut hub_task = tasks.spawn(hub.run(output));
        let ready = Arc::new(AtomicBool::new(true));
        let healthy = Arc::new(AtomicBool::new(true));
        // The admin listener outlives the other tasks (probes see the 503 during shutdown), so it
        // has its own token and is awaited last.
        let admin_stop = CancellationToken::new();
        let admin_task = self.admin.map(|admin| {
            let state = AdminState {
                metrics: metrics.clone(),
                started: tokio::time::Instant::now(),
                ready: ready.clone(),
                healthy: healthy.clone(),
                pipeline_input: input.downgrade(),
            };
            tokio::spawn(crate::admin::serve(admin, state, admin_stop.clone()))
        });
        let interval = self.config.admin.log_interval;
        if !interval.is_zero() {
            tasks.spawn(log_status(metrics.clone(), interval, stop_reading.clone()));
        }

        let idle = Arc::new(idle::IdleWatch::new(self.config.server.idle_timeout));
        tasks.spawn(idle.clone().run(stop_reading.clone()));
        let shared = Arc::new(SessionShared {
            config: self.config.server.clone(),
            default_room: Arc::from(self.config.rooms.default.as_str()),
            hub: hub_handle,
            accounts: Accounts::new(&self.config.accounts, &self.config.admission),
            address_limits: Arc::new(AddressLimits::new(
                exempt,
                self.config.admission.per_address_connections,
                self.config.admission.per_address_new_per_10m,
            )),
            pipeline: input,
            store: store.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(
                self.config.server.max_connections,
            )),
            next_id: std::sync::atomic::AtomicU64::new(0),
            idle,
            stop_reading: stop_reading.clone(),
            cut: cut.clone(),
            tasks: tasks.clone(),
            metrics: metrics.clone(),
            trusted_proxies: AddressList::new(&self.config.admission.trusted_proxies),
            require_proxy_header: self.config.admission.require_proxy_header,
        });
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("listening on {addr}");
        }
        if let (Some(web), Some(door)) = (self.web, web_door) {
            let state = crate::doors::web::WebState {
                shared: shared.clone(),
                door,
                origins: Arc::new(self.config.web.origins.clone()),
                client_address_header: self.config.web.client_address_header,
            };
            let certificates = self.certificates.clone().filter(|_| self.config.web.tls);
            tasks.spawn(crate::doors::web::serve(web, state, certificates));
        }
        let irc = irc_door.map(|door| {
            Protocol::Irc(Arc::new(crate::doors::irc::IrcDoor::new(
                shared.clone(),
                door,
                irc_render,
            )))
        });
        let listeners = [
            (Some(listener), Some(Protocol::Text), false),
            (self.text_tls, Some(Protocol::Text), true),
            (self.irc, irc.clone(), false),
            (self.irc_tls, irc, true),
        ];
        for (listener, protocol, over_tls) in listeners {
            let (Some(listener), Some(protocol)) = (listener, protocol) else {
                continue;
            };
            let certificates = self.certificates.clone().filter(|_| over_tls);
            let door = match protocol {
                Protocol::Text => "text protocol",
                Protocol::Irc(_) => "IRC door",
            };
            match listener.local_addr() {
                // The plain text listener's `listening on` line is logged above.
                Ok(addr) if over_tls => tracing::info!("{door} over TLS on {addr}"),
                Ok(addr) if door != "text protocol" => tracing::info!("{door} on {addr}"),
                _ => {}
            }
            tasks.spawn(listener::accept_loop(
                listener,
                shared.clone(),
                protocol,
                certificates,
            ));
        }
        // The pipeline's input ends (and with it the hub) only once every holder of `shared`
        // is gone: the listeners and sessions hold it from here on.
        drop(shared);
        if let Some(rules) = self.rules.filter(|_| self.config.filters.watch) {
            let interval = self.config.filters.watch_interval;
            tasks.spawn(rules.watch(interval, stop_reading.clone()));
        }

        // The hub ending before shutdown was asked for is a failure: the server must not go on
        // accepting clients it cannot serve.
        let hub_failure = tokio::select! {
            () = shutdown => None,
            ended = &mut hub_task => Some(match ended {
                Ok(Err(failure)) => failure.to_string(),
                Ok(Ok(())) => "the hub stopped: its input ended".to_owned(),
                Err(error) => format!("the hub stopped: {error}"),
            }),
        };
        if let Some(failure) = &hub_failure {
            healthy.store(false, Ordering::Relaxed);
            tracing::error!(%failure, "the hub stopped; shutting the server down");
        }
        tracing::info!("shutting down");
        ready.store(false, Ordering::Relaxed);
        stop_reading.cancel();
        tasks.close();
        let grace = self.config.server.shutdown_grace;
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                ?grace,
                "grace period over; closing the remaining connections"
            );
            cut.cancel();
            if tokio::time::timeout(CUT_WAIT, tasks.wait()).await.is_err() {
                tracing::warn!(tasks = tasks.len(), "some tasks did not stop");
            }
        }
        admin_stop.cancel();
        if let Some(admin) = admin_task {
            let _ = admin.await;
        }
        // Everything queued for the store is written before `run` returns: the thread ends once
        // the last handle is gone (the sessions' and the hub's went with their tasks).
        drop(store);
        let joined = tokio::task::spawn_blocking(move || store_thread.join());
        if tokio::time::timeout(STORE_WAIT, joined).await.is_err() {
            tracing::error!(
                ?STORE_WAIT,
                "the store did not finish writing in time; recent history may be lost"
            );
        }
        tracing::info!("shutdown complete");
        match hub_failure {
            Some(failure) => Err(ServerError::HubStopped(failure)),
            None => Ok(()),
        }
    }
}

/// Connects to the cluster of `[cluster]`, if one is configured. Unreachable NATS fails start-up
/// unless `required = false`, which runs alone (`true` in the answer: keep trying to join).
async fn join_cluster(
    config: crate::config::ClusterConfig,
    history: usize,
) -> Result<(Option<crate::cluster::Cluster>, bool), ServerError> {
    if config.nats.is_empty() {
        return Ok((None, false));
    }
    match crate::cluster::Cluster::connect(&config, history).await {
        Ok(cluster) => Ok((Some(cluster), false)),
        Err(error) if config.required => Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "running alone for now: the cluster cannot be reached ([cluster] required = false); retrying in the background");
            Ok((None, true))
        }
    }
}

/// Logs connections, rooms and message rates every `interval` until `stop`.
async fn log_status(metrics: Arc<Metrics>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    let (mut received, mut delivered) = (0, 0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (now_received, now_delivered) =
            (metrics.lines_received.get(), metrics.lines_delivered.get());
        let seconds = interval.as_secs_f64();
        tracing::info!(
            connections = metrics.connected_clients.get(),
            rooms = metrics.rooms.get(),
            received_per_second = format!("{:.1}", (now_received - received) as f64 / seconds),
            delivered_per_second = format!("{:.1}", (now_delivered - delivered) as f64 / seconds),
            "status"
        );
        (received, delivered) = (now_received, now_delivered);
    }
}
