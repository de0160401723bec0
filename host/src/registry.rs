//! Tenants' plugins: upload, list, delete, and the in-memory set of
//! compiled plugins the gate and delivery call.
//!
//! Every upload is compiled once; its artifact is stored beside the bytes,
//! and at start [`Registry::load_all`] maps artifacts back in without
//! recompiling (unless the engine changed, in which case it recompiles from
//! the stored bytes and replaces the artifact).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::event::now_ms;
use crate::ids::new_id;
use crate::input;
use crate::model::PluginRecord;
use crate::plugin::{Plugin, PluginError, Runtime};
use crate::store::Db;

/// The plugin service.
#[derive(Clone)]
pub struct Registry {
    runtime: Runtime,
    db: Db,
    loaded: Arc<RwLock<HashMap<String, Plugin>>>,
}

impl Registry {
    /// An empty registry; call [`Registry::load_all`] before serving.
    pub fn new(runtime: Runtime, db: Db) -> Self {
        Registry {
            runtime,
            db,
            loaded: Arc::default(),
        }
    }

    /// The runtime that calls plugins.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The compiled plugin with this id, if it exists.
    pub fn get(&self, id: &str) -> Option<Plugin> {
        self.read().get(id).cloned()
    }

    /// Loads every stored plugin from its artifact. A plugin that cannot be
    /// loaded is logged and left out rather than stopping the server: its
    /// callbacks then deny (before) or fail (after) with a clear reason.
    pub async fn load_all(&self) -> Result<usize> {
        let records = self.db.run(|s| s.all_plugins()).await?;
        let mut loaded = 0;
        for record in records {
            match self.load(&record.id).await {
                Ok(plugin) => {
                    self.write().insert(record.id.clone(), plugin);
                    loaded += 1;
                }
                Err(err) => {
                    tracing::error!(plugin = %record.id, name = %record.name, "cannot load plugin: {err}")
                }
            }
        }
        Ok(loaded)
    }

    async fn load(&self, id: &str) -> Result<Plugin> {
        let key = id.to_string();
        let artifact = self.db.run(move |s| s.artifact(&key)).await?;
        if let Some(artifact) = artifact {
            match self.runtime.load(artifact).await {
                Ok(plugin) => return Ok(plugin),
                Err(PluginError::StaleArtifact { reason }) => {
                    tracing::info!(plugin = %id, "recompiling plugin: {reason}");
                }
                Err(err) => return Err(Error::Internal(err.to_string())),
            }
        }
        let key = id.to_string();
        let wasm = self
            .db
            .run(move |s| s.plugin_wasm(&key))
            .await?
            .ok_or_else(|| Error::Internal(format!("plugin {id} has no stored component")))?;
        let compiled = self
            .compile(wasm)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let key = id.to_string();
        let artifact = compiled.artifact;
        self.db
            .write(move |s| s.put_artifact(&key, &artifact))
            .await?;
        Ok(compiled.plugin)
    }

    async fn compile(
        &self,
        wasm: Vec<u8>,
    ) -> std::result::Result<crate::plugin::Compiled, PluginError> {
        metrics::counter!("hookgate_plugin_compilations_total").increment(1);
        self.runtime.compile(wasm).await
    }

    /// Validates, compiles and stores a new version of plugin `name`.
    pub async fn upload(&self, tenant: &str, name: &str, wasm: Vec<u8>) -> Result<PluginRecord> {
        input::identifier("name", name, 64)?;
        let compiled = self.compile(wasm.clone()).await.map_err(Error::Plugin)?;
        let info = compiled.plugin.info().clone();
        let record = PluginRecord {
            id: new_id("plg"),
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            version: 0,
            sha256: info.sha256,
            size: info.size,
            exports: info.exports,
            created_at: now_ms(),
        };
        let artifact = compiled.artifact;
        let record = self
            .db
            .write(move |s| s.insert_plugin(record, &wasm, &artifact))
            .await?;
        self.write().insert(record.id.clone(), compiled.plugin);
        Ok(record)
    }

    /// A tenant's plugin versions.
    pub async fn list(&self, tenant: &str) -> Result<Vec<PluginRecord>> {
        let tenant = tenant.to_string();
        Ok(self.db.run(move |s| s.plugins(&tenant)).await?)
    }

    /// One of a tenant's plugin versions.
    pub async fn find(&self, tenant: &str, id: &str) -> Result<PluginRecord> {
        let (t, key) = (tenant.to_string(), id.to_string());
        self.db
            .run(move |s| s.plugin(&t, &key))
            .await?
            .ok_or_else(|| Error::not_found("plugin", id))
    }

    /// Deletes a plugin version from storage and memory.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        let (t, key) = (tenant.to_string(), id.to_string());
        if !self.db.write(move |s| s.delete_plugin(&t, &key)).await? {
            return Err(Error::not_found("plugin", id));
        }
        self.write().remove(id);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Plugin>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Plugin>> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }
}
