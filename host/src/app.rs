//! Wiring: open storage, start the plugin runtime and the services, bind
//! the listener, and serve until told to stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::api::state::{AppState, Services};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::delivery::Deliverer;
use crate::domain::callbacks::Callbacks;
use crate::domain::events::{Events, IntakeLimits};
use crate::domain::gate::Gate;
use crate::domain::plugins::Plugins;
use crate::domain::subscriptions::Subscriptions;
use crate::domain::templates::Templates;
use crate::domain::tenants::Tenants;
use crate::model::ids::{new_id, new_token};
use crate::outbound::HttpClient;
use crate::plugin::Runtime;
use crate::store::{Changes, ConnectError, PgStore, SledStore, Store, StoreError};

/// A Hookgate server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    store: Store,
    clock: SharedClock,
    state: AppState,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or database is unusable.
    #[error("storage: {0}")]
    Storage(String),
    /// The plugin runtime failed to start.
    #[error("plugin runtime: {0}")]
    Runtime(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Application {
    /// Opens the data directory, loads plugins and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with time read from `clock`: tests move
    /// it to run retry schedules and leases without waiting.
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Self, StartError> {
        crate::tune_allocator();
        // First, so that what starting up records is not lost.
        let metrics = metrics_handle();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let node = new_id("node");
        let changes = Changes::default();
        let (store, admin_token_sha256) = match &config.database {
            Some(url) => {
                let backend = connect(url, changes.clone(), &node).await?;
                let admin = shared_admin_token(&config, &backend).await?;
                (Store::new(Arc::new(backend), changes), admin)
            }
            None => {
                let backend = SledStore::open(&config.data_dir.join("db"), changes.clone())
                    .map_err(|e| StartError::Storage(e.to_string()))?;
                let admin = admin_token(&config)?;
                (Store::new(Arc::new(backend), changes), admin)
            }
        };
        let runtime = Runtime::with_compiler(
            config.plugin.limits(),
            Some(config.data_dir.join("plugin-cache")),
            config.compiler.clone(),
        )
        .map_err(|e| StartError::Runtime(e.to_string()))?;
        let plugins = Plugins::new(
            runtime,
            store.clone(),
            clock.clone(),
            config.plugin.resident_mib << 20,
        );
        // Stored plugins load when first used; only those a stopped node
        // left compiling are compiled now, in the background, as are those
        // uploaded from now on, on whichever node.
        let unfinished = plugins
            .settle_unfinished()
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;
        tracing::info!(compiling = unfinished, "plugins load on first use");

        let http = HttpClient::new(config.allow_private_targets);
        let callbacks = Callbacks::new(store.clone(), clock.clone());
        let gate = Gate::new(
            plugins.clone(),
            http.clone(),
            Duration::from_millis(config.gate.timeout_ms),
            clock.clone(),
        );
        let deliverer = Deliverer::start(
            store.clone(),
            callbacks.clone(),
            plugins.clone(),
            http,
            config.delivery.clone(),
            clock.clone(),
            node,
        )
        .await;
        let events = Events::new(
            store.clone(),
            callbacks.clone(),
            gate,
            clock.clone(),
            IntakeLimits {
                max_depth: config.max_event_depth,
                max_pending: config.delivery.max_pending,
            },
        );
        let templates = Templates::new(store.clone(), callbacks.clone(), clock.clone());
        let subscriptions = Subscriptions::new(templates.clone(), callbacks.clone());
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Application {
            listener,
            store: store.clone(),
            clock: clock.clone(),
            state: AppState(Arc::new(Services {
                tenants: Tenants::new(store.clone(), clock),
                store,
                plugins,
                callbacks,
                templates,
                subscriptions,
                events,
                deliverer,
                config: Arc::new(config),
                admin_token_sha256,
                metrics,
            })),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops: no new requests and
    /// no new delivery attempts; in-flight requests and attempts get the
    /// configured grace period to finish and be recorded; background tasks
    /// stop; and storage is flushed and closed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<Instant>();
        let state = self.state.clone();
        let pruner = spawn_pruner(
            self.store.clone(),
            self.clock.clone(),
            state.config.delivery.retention_days,
        );
        let deliverer = state.deliverer.clone();
        let app = crate::api::router(self.state, crate::console::router());
        let server = axum::serve(crate::api::wire::Listener(self.listener), app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!(
                    "shutting down: no new requests or attempts; finishing in-flight ones"
                );
                deliverer.stop();
                let _ = stopping_tx.send(Instant::now());
            });
        let mut server = tokio::spawn(server.into_future());
        let (result, deadline) = tokio::select! {
            result = &mut server => (result, Instant::now() + grace),
            Ok(at) = stopping_rx => {
                let deadline = at + grace;
                match tokio::time::timeout_at(deadline.into(), &mut server).await {
                    Ok(result) => (result, deadline),
                    Err(_) => {
                        tracing::warn!("in-flight requests outlived the {grace:?} grace period; stopping anyway");
                        server.abort();
                        (Ok(Ok(())), deadline)
                    }
                }
            }
        };
        state.deliverer.stop();
        if !state.deliverer.drained(deadline).await {
            tracing::warn!(
                "delivery attempts outlived the {grace:?} grace period; they stay pending and are \
                 attempted again after a restart"
            );
        }
        pruner.abort();
        self.store.close().await.map_err(std::io::Error::other)?;
        tracing::info!("storage flushed and closed; stopped");
        result.map_err(std::io::Error::other)?
    }
}

/// Records pruned per storage call, so pruning never holds a storage
/// thread for long and deliveries keep flowing between batches.
const PRUNE_BATCH: usize = 1000;
/// How often history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prunes history older than `retention_days`, hourly, in small batches.
/// A failed round is logged and tried again at the next.
fn spawn_pruner(
    store: Store,
    clock: SharedClock,
    retention_days: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tick.tick().await;
            let cutoff = clock.now_ms().saturating_sub(retention_days * 86_400_000);
            let mut total = 0;
            loop {
                match store.deliveries().prune(cutoff, PRUNE_BATCH).await {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(StoreError::Closed) => return,
                    Err(err) => {
                        tracing::error!("pruning history failed; trying again in an hour: {err}");
                        break;
                    }
                }
                tokio::task::yield_now().await;
            }
            if total > 0 {
                tracing::info!(
                    records = total,
                    "pruned history older than {retention_days} days"
                );
            }
        }
    })
}

/// The recorder is process-wide, so every application in a process
/// (tests start several) shares one.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// How long a starting node waits for its database to answer.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Connects to PostgreSQL, waiting with backoff while it does not answer
/// yet (nodes and their database often start together).
async fn connect(url: &str, changes: Changes, node: &str) -> Result<PgStore, StartError> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut backoff = Duration::from_millis(200);
    loop {
        match PgStore::connect(url, changes.clone(), node.to_string()).await {
            Ok(store) => return Ok(store),
            Err(ConnectError::Connect(reason)) if Instant::now() < deadline => {
                tracing::warn!("waiting for PostgreSQL: {reason}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(StartError::Storage(err.to_string())),
        }
    }
}

/// The administrator token's hash when nodes share a database: from the
/// configuration, or the one the database holds, or generated now, stored
/// there and printed once by the node that made it.
async fn shared_admin_token(config: &Config, store: &PgStore) -> Result<[u8; 32], StartError> {
    if let Some(token) = &config.admin_token {
        return Ok(Sha256::digest(token.as_bytes()).into());
    }
    let token = new_token("hgadm_");
    let ours = hex::encode(Sha256::digest(token.as_bytes()));
    let stored = store
        .admin_token_hash(&ours)
        .await
        .map_err(|e| StartError::Storage(e.to_string()))?;
    if stored == ours {
        println!(
            "Generated an administrator token; it is shown only this once (only its hash is kept, in the database):\n\n    {token}\n\nSet HOOKGATE_ADMIN_TOKEN to use a token of your own instead."
        );
    }
    decode_hash(Path::new("the database's settings"), &stored)
}

/// The administrator token's hash: from the configuration, or from the data
/// directory, or generated now, stored as a hash and printed once.
fn admin_token(config: &Config) -> Result<[u8; 32], StartError> {
    if let Some(token) = &config.admin_token {
        return Ok(Sha256::digest(token.as_bytes()).into());
    }
    let path = config.data_dir.join("admin-token.sha256");
    match std::fs::read_to_string(&path) {
        Ok(text) => decode_hash(&path, text.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = new_token("hgadm_");
            let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            std::fs::write(&path, hex::encode(hash)).map_err(|e| {
                StartError::Storage(format!("cannot write {}: {e}", path.display()))
            })?;
            println!(
                "Generated an administrator token; it is shown only this once (only its hash is kept in {}):\n\n    {token}\n\nSet HOOKGATE_ADMIN_TOKEN to use a token of your own instead.",
                path.display()
            );
            Ok(hash)
        }
        Err(e) => Err(StartError::Storage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn decode_hash(path: &Path, text: &str) -> Result<[u8; 32], StartError> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            StartError::Storage(format!("{} does not hold a SHA-256 hash", path.display()))
        })
}
