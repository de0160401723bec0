//! Tenants' plugins: upload, list, delete, and the plugins the gate and
//! delivery call, compiled by this node.
//!
//! The store keeps each version's component bytes; each node compiles them
//! itself (from its own compile cache when it has identical bytes), and
//! versions with identical bytes share one compiled copy in memory. An
//! upload is validated and stored at once, and compiled in the background:
//! its record says `compiling`, then `ready` or `failed`. When the store
//! announces it `ready`, every other node compiles it too, so that calls on
//! any node soon find it compiled rather than wait for a compilation.
//! Plugins stored before the node started load when first used, so a node
//! holding many plugins starts at once and stays small; past
//! a memory budget, the least recently used are dropped, to be loaded again
//! from the compile cache when next used. A plugin deleted on any node is
//! forgotten here when the store announces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::resident::Resident;
use super::{Error, Result, input};
use crate::clock::SharedClock;
use crate::model::ids::new_id;
use crate::model::{PluginRecord, PluginState};
use crate::plugin::{Plugin, PluginError, Runtime};
use crate::store::{Change, Store};

/// How long a call waits for a plugin that is being compiled before it
/// fails, saying so: a before-event is denied, a delivery retried.
const COMPILE_WAIT: Duration = Duration::from_secs(10);

/// The plugin service. Clones share one state, which the store's listener
/// and the task compiling announced plugins hold weakly, so that both stop
/// working with the last clone.
#[derive(Clone)]
pub struct Plugins(Arc<Shared>);

/// What every clone of [`Plugins`] shares.
pub struct Shared {
    runtime: Runtime,
    store: Store,
    clock: SharedClock,
    /// The sha256 of each plugin version loaded, by id.
    loaded: RwLock<HashMap<String, String>>,
    /// The compiled plugins by sha256, under a memory budget: versions with
    /// identical bytes share one compiled copy.
    resident: Resident,
    /// Plugins being loaded, one turn each: calls that miss together wait
    /// for the first to load, rather than each compiling the same bytes.
    loading: Turns,
    /// Bytes being compiled, one turn per sha256, for the same reason
    /// across versions: a thousand uploads of one component compile once.
    compiling: Turns,
    /// Plugin versions announced `ready` (tenant, id), for this node to
    /// compile. The only sender: the task receiving ends with the service.
    ready: UnboundedSender<(String, String)>,
}

impl std::ops::Deref for Plugins {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// One async turn per key, taken by whoever does the work for that key.
type Turns = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Why a plugin cannot be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin `{id}` is not available: {reason}")]
pub struct Unavailable {
    /// The plugin version's id.
    pub id: String,
    /// Why.
    pub reason: String,
    /// Whether trying later may succeed: the plugin is still compiling, or
    /// the node could not read or compile it; not when it was deleted or
    /// does not compile.
    pub retryable: bool,
}

impl Plugins {
    /// The plugin service, compiling in a task of the current runtime each
    /// plugin version the store announces `ready`;
    /// [`Plugins::settle_unfinished`] finishes what a stopped node left
    /// compiling. Compiled plugins past `resident_bytes` of code are dropped
    /// from memory, least recently used first.
    pub fn new(runtime: Runtime, store: Store, clock: SharedClock, resident_bytes: usize) -> Self {
        let (ready, announced) = tokio::sync::mpsc::unbounded_channel();
        let plugins = Plugins(Arc::new(Shared {
            runtime,
            store,
            clock,
            loaded: RwLock::default(),
            resident: Resident::new(resident_bytes),
            compiling: Turns::default(),
            loading: Turns::default(),
            ready,
        }));
        let listening = Arc::downgrade(&plugins.0);
        plugins.store.changes().subscribe(move |change| {
            let shared = || listening.upgrade();
            match change {
                Change::Plugin { id } => {
                    if let Some(shared) = shared() {
                        shared.write().remove(id);
                    }
                }
                Change::PluginReady { tenant, id } => {
                    if let Some(shared) = shared() {
                        let _ = shared.ready.send((tenant.clone(), id.clone()));
                    }
                }
                // Compiled plugins stay in this node's compile cache, so
                // loading them again costs a read, not a compilation.
                Change::Resync => {
                    if let Some(shared) = shared() {
                        shared.write().clear();
                        shared.resident.clear();
                    }
                }
                _ => {}
            }
        });
        tokio::spawn(compile_announced(Arc::downgrade(&plugins.0), announced));
        plugins
    }

    /// Compiles a plugin version announced `ready`, unless a call on this
    /// node loaded it already, or it is gone or not `ready`. The
    /// caller holds its loading turn, as calls that need it meanwhile
    /// expect. It is not marked loaded: a call finds it by its bytes, after
    /// reading its record, so that a deletion meanwhile is never missed.
    async fn compile_ready(&self, tenant: &str, id: &str) {
        if self.held(id).is_some() {
            return;
        }
        let compiled = match self.store.plugins().plugin(tenant, id).await {
            Ok(Some(record)) if record.state == PluginState::Ready => {
                self.compiled(&record).await.map(drop)
            }
            Ok(_) => Ok(()),
            Err(err) => Err(err.into()),
        };
        if let Err(err) = compiled {
            tracing::warn!(plugin = %id, "cannot compile a plugin that is ready; it compiles when first used: {err}");
        }
    }

    /// The runtime that calls plugins.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A tenant's plugin, compiled: from memory, or else compiled (or
    /// taken from this node's compile cache) from the stored component.
    pub async fn get(&self, tenant: &str, id: &str) -> std::result::Result<Plugin, Unavailable> {
        if let Some(plugin) = self.held(id) {
            return Ok(plugin);
        }
        let turn = self.turn(id);
        let Ok(_turn) = tokio::time::timeout(COMPILE_WAIT, turn.lock()).await else {
            return Err(Unavailable {
                id: id.to_string(),
                reason: format!(
                    "it is still compiling after {} s; try again shortly",
                    COMPILE_WAIT.as_secs()
                ),
                retryable: true,
            });
        };
        let loaded = self.held(id);
        let result = match loaded {
            Some(plugin) => Ok(plugin),
            None => self.load_stored(tenant, id).await,
        };
        self.loading().remove(id);
        result
    }

    /// A loaded plugin version still held in memory.
    fn held(&self, id: &str) -> Option<Plugin> {
        let sha256 = self.read().get(id).cloned()?;
        self.resident.get(&sha256)
    }

    async fn load_stored(
        &self,
        tenant: &str,
        id: &str,
    ) -> std::result::Result<Plugin, Unavailable> {
        let unavailable = |reason: String, retryable: bool| Unavailable {
            id: id.to_string(),
            reason,
            retryable,
        };
        let stored = self.store.plugins();
        let record = stored
            .plugin(tenant, id)
            .await
            .map_err(|e| unavailable(e.to_string(), true))?
            .ok_or_else(|| unavailable("it was deleted".into(), false))?;
        if record.state == PluginState::Failed {
            let error = record.error.unwrap_or_default();
            return Err(unavailable(format!("it failed to compile: {error}"), false));
        }
        self.load(&record).await.map_err(|e| {
            // The component's own faults stay; the node's may pass.
            let retryable = match &e {
                Error::Plugin(err) => matches!(err, PluginError::Runtime { .. }),
                _ => true,
            };
            unavailable(e.to_string(), retryable)
        })
    }

    /// Compiles, in the background, the plugins whose uploader stopped
    /// before recording how their compilation went, so that none stays
    /// `compiling`. Every other plugin is loaded when first used.
    pub async fn settle_unfinished(&self) -> Result<usize> {
        let records = self.store.plugins().all_plugins().await?;
        let unfinished: Vec<_> = records
            .into_iter()
            .filter(|r| r.state == PluginState::Compiling)
            .collect();
        let count = unfinished.len();
        let this = self.clone();
        tokio::spawn(async move {
            for record in unfinished {
                if let Err(err) = this.load(&record).await {
                    tracing::error!(plugin = %record.id, name = %record.name, "cannot load plugin: {err}");
                }
            }
        });
        Ok(count)
    }

    /// Compiles a stored plugin into this node's memory and records, if
    /// its record still said `compiling` (its uploader stopped before it
    /// finished), how that went.
    async fn load(&self, record: &PluginRecord) -> Result<Plugin> {
        let compiled = self.compiled(record).await;
        if record.state == PluginState::Compiling {
            match &compiled {
                Ok(_) => self.settle(record.clone(), None).await,
                Err(Error::Plugin(err)) => self.settle(record.clone(), Some(err)).await,
                // The store's fault says nothing of the component.
                Err(_) => {}
            }
        }
        let plugin = compiled?;
        self.write()
            .insert(record.id.clone(), record.sha256.clone());
        Ok(plugin)
    }

    /// A stored plugin version, compiled: the copy of the same bytes this
    /// node holds, if any, without reading them again; else compiled from
    /// the stored component (or loaded from this node's compile cache).
    async fn compiled(&self, record: &PluginRecord) -> Result<Plugin> {
        if let Some(plugin) = self.resident.get(&record.sha256) {
            return Ok(plugin);
        }
        let wasm = self
            .store
            .plugins()
            .plugin_wasm(&record.id)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!("plugin {} has no stored component", record.id))
            })?;
        self.compile(&record.sha256, wasm)
            .await
            .map_err(Error::Plugin)
    }

    /// A plugin ready to call: the compiled copy of another version with
    /// the same bytes, if this node holds one, else compiled (or loaded from
    /// this node's compile cache).
    async fn compile(
        &self,
        sha256: &str,
        wasm: Vec<u8>,
    ) -> std::result::Result<Plugin, PluginError> {
        let shared = || self.resident.get(sha256);
        if let Some(plugin) = shared() {
            return Ok(plugin);
        }
        let turn = lock(&self.compiling)
            .entry(sha256.to_string())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        let compiled = match shared() {
            Some(plugin) => Ok(plugin),
            None => self.compile_now(sha256, wasm).await,
        };
        if let Ok(plugin) = &compiled {
            self.resident.insert(sha256, plugin.clone());
        }
        lock(&self.compiling).remove(sha256);
        compiled
    }

    async fn compile_now(
        &self,
        sha256: &str,
        wasm: Vec<u8>,
    ) -> std::result::Result<Plugin, PluginError> {
        let prepared = self.runtime.compile(wasm).await?;
        if prepared.compiled {
            let plugin = sha256.get(..12).unwrap_or_default().to_string();
            metrics::counter!("hookgate_plugin_compilations_total", "plugin" => plugin)
                .increment(1);
        }
        Ok(prepared.plugin)
    }

    /// Records how a plugin's compilation ended. A failure of this node,
    /// not of the component (say, a compile worker that could not start),
    /// leaves it `compiling`, to be tried again when next used.
    async fn settle(&self, record: PluginRecord, failure: Option<&PluginError>) {
        if let Some(err @ PluginError::Runtime { .. }) = failure {
            tracing::warn!(plugin = %record.id, "cannot compile the plugin on this node; it stays compiling: {err}");
            return;
        }
        let record = PluginRecord {
            state: match failure {
                None => PluginState::Ready,
                Some(_) => PluginState::Failed,
            },
            error: failure.map(ToString::to_string),
            ..record
        };
        if let Err(err) = self.store.plugins().update_plugin(&record).await {
            tracing::error!(plugin = %record.id, "cannot record the plugin's state: {err}");
        }
    }

    /// Validates and stores a new version of plugin `name`, and compiles it
    /// in the background: the record answered says `compiling`. What fails
    /// the quick checks (size, kind, imports, exports, memory) is refused
    /// here, naming the problem; what fails to compile ends `failed`.
    pub async fn upload(&self, tenant: &str, name: &str, wasm: Vec<u8>) -> Result<PluginRecord> {
        input::identifier("name", name, 64)?;
        let info = self.runtime.validate(&wasm).map_err(Error::Plugin)?;
        let record = PluginRecord {
            id: new_id("plg"),
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            version: 0,
            sha256: info.sha256,
            size: info.size,
            exports: info.exports,
            created_at: self.clock.now_ms(),
            state: PluginState::Compiling,
            error: None,
        };
        let record = self
            .store
            .plugins()
            .insert_plugin(record, wasm.clone())
            .await?;
        // Calls that need it meanwhile wait for this compilation's turn
        // rather than starting their own. Nobody knows the id yet, so the
        // turn is free; the plugin is announced `ready` only under it.
        let turn = self.turn(&record.id).lock_owned().await;
        let this = self.clone();
        let stored = record.clone();
        tokio::spawn(async move {
            let compiled = this.compile(&stored.sha256, wasm).await;
            if compiled.is_ok() {
                this.write()
                    .insert(stored.id.clone(), stored.sha256.clone());
            }
            let id = stored.id.clone();
            this.settle(stored, compiled.as_ref().err()).await;
            drop(turn);
            this.loading().remove(&id);
        });
        Ok(record)
    }

    /// A tenant's plugin versions.
    pub async fn list(&self, tenant: &str) -> Result<Vec<PluginRecord>> {
        Ok(self.store.plugins().plugins(tenant).await?)
    }

    /// One of a tenant's plugin versions.
    pub async fn find(&self, tenant: &str, id: &str) -> Result<PluginRecord> {
        self.store
            .plugins()
            .plugin(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("plugin", id))
    }

    /// Deletes a plugin version; every node forgets it.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        if self.store.plugins().delete_plugin(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::not_found("plugin", id))
        }
    }
}

impl Shared {
    /// Plugin version `id`'s loading turn.
    fn turn(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.loading().entry(id.to_string()).or_default().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }

    fn loading(&self) -> MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        lock(&self.loading)
    }
}

/// Compiles each plugin version announced `ready`, one at a time, so that
/// its first call on this node does not wait for a compilation, which for
/// a large component takes longer than a call waits. It waits for a
/// plugin's turn without holding the service, and ends with it.
async fn compile_announced(
    plugins: Weak<Shared>,
    mut announced: UnboundedReceiver<(String, String)>,
) {
    while let Some((tenant, id)) = announced.recv().await {
        let Some(turn) = plugins.upgrade().map(|shared| shared.turn(&id)) else {
            return;
        };
        let turn = turn.lock_owned().await;
        let Some(shared) = plugins.upgrade() else {
            return;
        };
        let service = Plugins(shared);
        service.compile_ready(&tenant, &id).await;
        drop(turn);
        service.loading().remove(&id);
    }
}

fn lock(turns: &Turns) -> MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
    turns.lock().unwrap_or_else(|p| p.into_inner())
}
