//! Persistence behind one trait, so that sled (embedded, the default) and a
//! future PostgreSQL backend are interchangeable.
//!
//! The trait is synchronous: implementations may block, and callers reach it
//! through [`Db`], which runs every call on the blocking pool so storage work
//! never stalls the async workers.

mod sled_store;

use std::sync::Arc;

pub use self::sled_store::SledStore;
use crate::model::{
    Activation, ApiKey, Callback, Delivery, DeliveryStatus, EventRecord, LastRun, PluginRecord,
    Tenant,
};
use crate::plugin::Artifact;

/// Why storage failed. Only `Conflict` is the caller's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the string names the field.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The backend failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Where.
        key: String,
        /// What the decoder said.
        reason: String,
    },
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this callback's.
    pub callback_id: Option<String>,
    /// Only in this state.
    pub status: Option<DeliveryStatus>,
}

/// Everything Hookgate persists. All tenant-owned records are addressed by
/// tenant and id, so one tenant can never reach another's.
pub trait Storage: Send + Sync + 'static {
    /// Makes every completed write durable.
    fn flush(&self) -> StoreResult<()>;

    /// Stores a new tenant with its first key.
    fn insert_tenant(&self, tenant: &Tenant, key: &ApiKey) -> StoreResult<()>;
    /// Every tenant, oldest first.
    fn tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// Stores a new API key.
    fn insert_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// Finds a key by the hash of its secret.
    fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// A tenant's keys, oldest first.
    fn keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>>;
    /// Deletes a key; false if the tenant has no such key.
    fn delete_key(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Stores a plugin version, assigning the next version number for its
    /// name, with its component bytes and precompiled artifact.
    fn insert_plugin(
        &self,
        record: PluginRecord,
        wasm: &[u8],
        artifact: &Artifact,
    ) -> StoreResult<PluginRecord>;
    /// A tenant's plugin version.
    fn plugin(&self, tenant: &str, id: &str) -> StoreResult<Option<PluginRecord>>;
    /// A tenant's plugin versions, oldest first.
    fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>>;
    /// Every tenant's plugin versions, for loading at start.
    fn all_plugins(&self) -> StoreResult<Vec<PluginRecord>>;
    /// The uploaded component of a plugin version.
    fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The stored artifact of a plugin version.
    fn artifact(&self, id: &str) -> StoreResult<Option<Artifact>>;
    /// Replaces a plugin version's artifact, after recompiling for a new engine.
    fn put_artifact(&self, id: &str, artifact: &Artifact) -> StoreResult<()>;
    /// Deletes a plugin version; false if the tenant has no such plugin.
    fn delete_plugin(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Inserts or replaces a callback. Names are unique within a tenant.
    fn put_callback(&self, callback: &Callback) -> StoreResult<()>;
    /// A tenant's callback.
    fn callback(&self, tenant: &str, id: &str) -> StoreResult<Option<Callback>>;
    /// A tenant's callbacks, oldest first.
    fn callbacks(&self, tenant: &str) -> StoreResult<Vec<Callback>>;
    /// Deletes a callback; false if the tenant has no such callback.
    fn delete_callback(&self, tenant: &str, id: &str) -> StoreResult<bool>;
    /// When a callback last ran.
    fn last_run(&self, callback_id: &str) -> StoreResult<LastRun>;
    /// Records when a callback last ran.
    fn set_last_run(&self, callback_id: &str, last: &LastRun) -> StoreResult<()>;

    /// A tenant's event.
    fn event(&self, tenant: &str, id: &str) -> StoreResult<Option<EventRecord>>;
    /// Stores an event with its deliveries and activations in one atomic
    /// write, unless the tenant already has an event with that id: then
    /// nothing is written and the existing record is returned.
    fn insert_event(
        &self,
        record: &EventRecord,
        deliveries: &[Delivery],
        activations: &[Activation],
    ) -> StoreResult<Option<EventRecord>>;

    /// A callback's activations, newest first, older than `before` if given.
    fn activations(
        &self,
        tenant: &str,
        callback_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Activation>>;
    /// An event's activations, oldest first.
    fn event_activations(&self, tenant: &str, event_id: &str) -> StoreResult<Vec<Activation>>;

    /// A tenant's delivery.
    fn delivery(&self, tenant: &str, id: &str) -> StoreResult<Option<Delivery>>;
    /// A tenant's deliveries, newest first, older than `before` if given.
    fn deliveries(
        &self,
        tenant: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>>;
}

/// The async face of a [`Storage`]: each call runs on the blocking pool.
#[derive(Clone)]
pub struct Db {
    storage: Arc<dyn Storage>,
}

impl Db {
    /// Wraps a storage backend.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Db { storage }
    }

    /// Runs `f` against the storage on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Storage) -> StoreResult<T> + Send + 'static,
    {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || f(storage.as_ref()))
            .await
            .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
    }
}
