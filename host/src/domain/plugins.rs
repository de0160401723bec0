//! Tenants' plugins: upload, list, delete, and the plugins the gate and
//! delivery call, compiled by this node.
//!
//! The store keeps each version's component bytes; each node compiles them
//! itself (from its own compile cache when it has identical bytes) when a
//! plugin is first used, or at start for every stored plugin. A plugin
//! deleted on any node is forgotten here when the store announces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::{Error, Result, input};
use crate::clock::SharedClock;
use crate::model::PluginRecord;
use crate::model::ids::new_id;
use crate::plugin::{Plugin, PluginError, Runtime};
use crate::store::{Change, Store};

/// The plugin service.
#[derive(Clone)]
pub struct Plugins {
    runtime: Runtime,
    store: Store,
    clock: SharedClock,
    loaded: Arc<RwLock<HashMap<String, Plugin>>>,
    /// Plugins being loaded, one turn each: calls that miss together wait
    /// for the first to load, rather than each compiling the same bytes.
    loading: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Why a plugin cannot be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin `{id}` is not available: {reason}")]
pub struct Unavailable {
    /// The plugin version's id.
    pub id: String,
    /// Why.
    pub reason: String,
}

impl Plugins {
    /// The plugin service; [`Plugins::load_all`] warms it before serving.
    pub fn new(runtime: Runtime, store: Store, clock: SharedClock) -> Self {
        let loaded: Arc<RwLock<HashMap<String, Plugin>>> = Arc::default();
        let listening = loaded.clone();
        store.changes().subscribe(move |change| {
            let loaded = || listening.write().unwrap_or_else(|p| p.into_inner());
            match change {
                Change::Plugin { id } => {
                    loaded().remove(id);
                }
                // Compiled plugins stay in this node's compile cache, so
                // loading them again costs a read, not a compilation.
                Change::Resync => loaded().clear(),
                _ => {}
            }
        });
        Plugins {
            runtime,
            store,
            clock,
            loaded,
            loading: Arc::default(),
        }
    }

    /// The runtime that calls plugins.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A tenant's plugin, compiled: from memory, or else compiled (or
    /// taken from this node's compile cache) from the stored component.
    pub async fn get(&self, tenant: &str, id: &str) -> std::result::Result<Plugin, Unavailable> {
        if let Some(plugin) = self.read().get(id) {
            return Ok(plugin.clone());
        }
        let turn = self.loading().entry(id.to_string()).or_default().clone();
        let _turn = turn.lock().await;
        let loaded = self.read().get(id).cloned();
        let result = match loaded {
            Some(plugin) => Ok(plugin),
            None => self.load_stored(tenant, id).await,
        };
        self.loading().remove(id);
        result
    }

    async fn load_stored(
        &self,
        tenant: &str,
        id: &str,
    ) -> std::result::Result<Plugin, Unavailable> {
        let unavailable = |reason: String| Unavailable {
            id: id.to_string(),
            reason,
        };
        let stored = self.store.plugins();
        let record = stored
            .plugin(tenant, id)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| unavailable("it was deleted".into()))?;
        let plugin = self
            .load(&record)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(plugin)
    }

    /// Loads every stored plugin, so the first events do not wait for
    /// compilations. A plugin that cannot be loaded is logged and left out
    /// rather than stopping the server: its callbacks then deny (before)
    /// or fail (after) with a clear reason.
    pub async fn load_all(&self) -> Result<usize> {
        let records = self.store.plugins().all_plugins().await?;
        let mut loaded = 0;
        for record in records {
            match self.load(&record).await {
                Ok(_) => loaded += 1,
                Err(err) => {
                    tracing::error!(plugin = %record.id, name = %record.name, "cannot load plugin: {err}");
                }
            }
        }
        Ok(loaded)
    }

    async fn load(&self, record: &PluginRecord) -> Result<Plugin> {
        let wasm = self
            .store
            .plugins()
            .plugin_wasm(&record.id)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!("plugin {} has no stored component", record.id))
            })?;
        let prepared = self.compile(wasm).await.map_err(Error::Plugin)?;
        self.write().insert(record.id.clone(), prepared.clone());
        Ok(prepared)
    }

    async fn compile(&self, wasm: Vec<u8>) -> std::result::Result<Plugin, PluginError> {
        let prepared = self.runtime.compile(wasm).await?;
        if prepared.compiled {
            metrics::counter!("hookgate_plugin_compilations_total").increment(1);
        }
        Ok(prepared.plugin)
    }

    /// Validates, compiles and stores a new version of plugin `name`.
    pub async fn upload(&self, tenant: &str, name: &str, wasm: Vec<u8>) -> Result<PluginRecord> {
        input::identifier("name", name, 64)?;
        let plugin = self.compile(wasm.clone()).await.map_err(Error::Plugin)?;
        let info = plugin.info().clone();
        let record = PluginRecord {
            id: new_id("plg"),
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            version: 0,
            sha256: info.sha256,
            size: info.size,
            exports: info.exports,
            created_at: self.clock.now_ms(),
        };
        let record = self.store.plugins().insert_plugin(record, wasm).await?;
        self.write().insert(record.id.clone(), plugin);
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Plugin>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Plugin>> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }

    fn loading(&self) -> MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.loading.lock().unwrap_or_else(|p| p.into_inner())
    }
}
