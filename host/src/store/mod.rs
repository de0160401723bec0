//! Persistence, behind async repositories: one trait per aggregate, all
//! reached through one [`Store`] handle that services hold. A backend (sled
//! for one embedded node; see `sled`) implements every trait and keeps its
//! machinery, such as sled's group-commit writer, to itself.
//!
//! Three promises hold for every backend:
//! - a write that returns `Ok` is durable: it survives a crash;
//! - every change that a cache may hold is announced through [`Changes`]
//!   once it is durable, before the write returns;
//! - the delivery queue is leased: a delivery is claimed by one owner until
//!   its lease expires, and only its owner completes it.

mod changes;
mod postgres;
mod sled;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::changes::{Change, Changes};
pub use self::postgres::{ConnectError, PgStore};
pub use self::sled::SledStore;
use crate::model::{
    Activation, ActivationOutcome, ApiKey, Callback, Delivery, DeliveryStatus, EventRecord, Health,
    HourCount, PluginRecord, PluginState, Template, Tenant,
};

/// Why storage failed. Only `Conflict` is the caller's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the string names the field.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The backend failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// Storage was closed: the server is stopping.
    #[error("storage is closed")]
    Closed,
    /// The database cannot be reached now; the caller may try again.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
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

/// Which of a callback's activations to list.
#[derive(Debug, Clone, Default)]
pub struct ActivationQuery {
    /// Only those with this outcome.
    pub outcome: Option<ActivationOutcome>,
    /// Only those at or after this time, in ms since the epoch.
    pub since: Option<u64>,
    /// Only those before this time, in ms since the epoch.
    pub until: Option<u64>,
    /// Where the page starts.
    pub from: PageFrom,
}

/// Where a page of a newest-first list starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PageFrom {
    /// At the newest.
    #[default]
    Newest,
    /// Just older than this id.
    Before(String),
    /// Just newer than this id: the page before, going back.
    After(String),
}

/// An event to store, with the deliveries and activations it caused.
#[derive(Debug, Clone)]
pub struct EventWrite {
    /// The event.
    pub record: Arc<EventRecord>,
    /// Its pending deliveries (after-events), due at once.
    pub deliveries: Vec<Delivery>,
    /// Its gate decisions' activations (before-events).
    pub activations: Vec<Activation>,
    /// The client chose the event's id, so it may repeat a stored one and
    /// must be looked up first. A generated id is new by construction.
    pub client_id: bool,
}

/// A delivery's new state after an attempt, with the attempt's activation.
pub type DeliveryWrite = (Delivery, Option<Activation>);

/// What a claim asks for.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// Who claims: a node's unique id.
    pub owner: &'a str,
    /// The time now, in ms since the epoch: deliveries due by then qualify.
    pub now: u64,
    /// How long the lease lasts, in ms.
    pub lease_ms: u64,
    /// How many slots at most.
    pub limit: usize,
    /// How many deliveries of one callback a slot may hold. Its owner
    /// attempts them one after another, and records each attempt while it
    /// makes the next, so a busy callback's attempts need not wait for the
    /// database. A backend whose records are written behind at no wait,
    /// as sled's are, may give each slot one.
    pub depth: usize,
    /// Slots one callback may hold at once, over every owner: it never has
    /// more attempts than that in flight.
    pub per_callback: usize,
    /// Tenants to leave out of this claim.
    pub exclude_tenants: &'a [String],
}

/// A claimed delivery: leased to its owner until `lease_until`.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery.
    pub delivery: Delivery,
    /// Its event, when the backend has it at hand (it may not: the caller
    /// then reads it).
    pub event: Option<Arc<EventRecord>>,
    /// When the lease ends, in ms since the epoch. A delivery leased again
    /// has a later end, so this names the lease too.
    pub lease_until: u64,
}

/// A completion's request to keep its slot: the same callback's next due
/// delivery, leased to the same owner and slot as the attempt is recorded.
/// The callback's count of slots stays as it was, one lease ending as one
/// starts, so the handover needs no turn among the claims, and the slot
/// skips the round trip through the pool.
#[derive(Debug, Clone, Copy)]
pub struct Handover {
    /// The time now, in ms since the epoch: deliveries due by then qualify.
    pub now: u64,
    /// How long the new lease lasts, in ms.
    pub lease_ms: u64,
}

/// What recording an attempt did.
#[derive(Debug)]
pub struct Completed {
    /// Whether the owner still held the lease: only then is the delivery's
    /// new state stored.
    pub held: bool,
    /// The delivery handed over, if a [`Handover`] was asked for, the lease
    /// was held, and the callback had one due.
    pub next: Option<Claimed>,
}

/// The answer to claiming one delivery for a manual retry.
#[derive(Debug)]
pub enum ClaimOne {
    /// Claimed; make the attempt.
    Claimed(Box<Claimed>),
    /// It is pending: its next attempt is already scheduled.
    Pending,
    /// Another owner is attempting it now.
    Leased,
    /// No such delivery.
    NotFound,
}

/// A tenant and its API keys.
#[async_trait]
pub trait TenantRepo: Send + Sync {
    /// Stores a new tenant with its first key.
    async fn insert_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> StoreResult<()>;
    /// Every tenant, oldest first.
    async fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Stores a new API key.
    async fn insert_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// Finds a key by the hash of its secret.
    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// A tenant's keys, oldest first.
    async fn keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>>;
    /// Deletes a key, announcing [`Change::Keys`]; false if the tenant has
    /// no such key.
    async fn delete_key(&self, tenant: &str, id: &str) -> StoreResult<bool>;
}

/// Plugin versions and their uploaded components. Compiled code is never
/// stored here: each node compiles for itself (see `plugin::cache`).
#[async_trait]
pub trait PluginRepo: Send + Sync {
    /// Stores a plugin version with its component, assigning the next
    /// version number for its name.
    async fn insert_plugin(&self, record: PluginRecord, wasm: Vec<u8>)
    -> StoreResult<PluginRecord>;
    /// A tenant's plugin version.
    async fn plugin(&self, tenant: &str, id: &str) -> StoreResult<Option<PluginRecord>>;
    /// A tenant's plugin versions, oldest first.
    async fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>>;
    /// Every tenant's plugin versions.
    async fn all_plugins(&self) -> StoreResult<Vec<PluginRecord>>;
    /// The uploaded component of a plugin version.
    async fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Deletes a plugin version, announcing [`Change::Plugin`]; false if
    /// the tenant has no such plugin.
    async fn delete_plugin(&self, tenant: &str, id: &str) -> StoreResult<bool>;
    /// Replaces a plugin version's record, as its compilation ends, if it
    /// still says `compiling`: the first outcome recorded stands, when
    /// several nodes compile it at once. False if it was deleted or settled
    /// meanwhile. The component and version stay, so nodes holding it
    /// compiled keep it; a version now `ready` is announced
    /// ([`Change::PluginReady`]), for every node to compile.
    async fn update_plugin(&self, record: &PluginRecord) -> StoreResult<bool>;
}

/// What a backend announces for a plugin record it updated: that it is
/// ready, if it is. One that failed is never compiled anywhere else.
pub(crate) fn ready(record: &PluginRecord, updated: bool) -> Option<Change> {
    (updated && record.state == PluginState::Ready).then(|| Change::PluginReady {
        tenant: record.tenant_id.clone(),
        id: record.id.clone(),
    })
}

/// Callbacks, the templates that make them, and how each callback fares.
#[async_trait]
pub trait CallbackRepo: Send + Sync {
    /// Inserts or replaces a callback, announcing [`Change::Callbacks`].
    /// Names are unique within a tenant.
    async fn put_callback(&self, callback: &Callback) -> StoreResult<()>;
    /// A tenant's callback.
    async fn callback(&self, tenant: &str, id: &str) -> StoreResult<Option<Callback>>;
    /// A tenant's callbacks, oldest first.
    async fn callbacks(&self, tenant: &str) -> StoreResult<Vec<Callback>>;
    /// Deletes a callback, announcing [`Change::Callbacks`]; false if the
    /// tenant has no such callback.
    async fn delete_callback(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Inserts or replaces a template. Names are unique within a tenant.
    async fn put_template(&self, template: &Template) -> StoreResult<()>;
    /// A tenant's template.
    async fn template(&self, tenant: &str, id: &str) -> StoreResult<Option<Template>>;
    /// A tenant's template, by name.
    async fn template_by_name(&self, tenant: &str, name: &str) -> StoreResult<Option<Template>>;
    /// A tenant's templates, oldest first.
    async fn templates(&self, tenant: &str) -> StoreResult<Vec<Template>>;
    /// Deletes a template; false if the tenant has no such template.
    async fn delete_template(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Counts one finished delivery of a callback into its run of
    /// failures, atomically, and returns the run as it now stands. A
    /// failure announces [`Change::Health`]; a success ends the run, as
    /// enabling the callback again does.
    async fn record_health(&self, callback_id: &str, failed: bool, at: u64) -> StoreResult<Health>;
    /// Delivery attempts by hour, added up over `callbacks`, from the hour
    /// starting at `since` on, oldest first; hours without attempts are
    /// left out. `DeliveryRepo::complete` counts them.
    async fn hour_counts(&self, callbacks: &[String], since: u64) -> StoreResult<Vec<HourCount>>;
}

/// Events, as received and answered.
#[async_trait]
pub trait EventRepo: Send + Sync {
    /// Stores an event with what it caused, in one atomic write, and
    /// answers once it is written, or with `durable` once it is durable.
    /// An event with a client id the tenant already used is not stored:
    /// the answer is the existing record. New deliveries join the queue,
    /// and [`Change::DeliveriesDue`] is announced.
    async fn insert_event(
        &self,
        write: EventWrite,
        durable: bool,
    ) -> StoreResult<Option<EventRecord>>;
    /// Stores an event's history without waiting for it: a crash may lose
    /// it, and reads that follow still see it.
    fn record_event(&self, write: EventWrite);
    /// A tenant's event.
    async fn event(&self, tenant: &str, id: &str) -> StoreResult<Option<EventRecord>>;
}

/// Deliveries, their attempts' history, and the queue they wait in.
#[async_trait]
pub trait DeliveryRepo: Send + Sync {
    /// A tenant's delivery.
    async fn delivery(&self, tenant: &str, id: &str) -> StoreResult<Option<Delivery>>;
    /// A tenant's deliveries, newest first, older than `before` if given.
    async fn deliveries(
        &self,
        tenant: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>>;
    /// Up to `limit` of a callback's activations that `query` selects,
    /// newest first; with [`PageFrom::After`], the `limit` nearest to it.
    async fn activations(
        &self,
        tenant: &str,
        callback_id: &str,
        query: &ActivationQuery,
        limit: usize,
    ) -> StoreResult<Vec<Activation>>;
    /// One activation of a callback.
    async fn activation(
        &self,
        tenant: &str,
        callback_id: &str,
        id: &str,
    ) -> StoreResult<Option<Activation>>;
    /// Activations by id, in the order asked, skipping those gone.
    async fn activations_by_id(
        &self,
        tenant: &str,
        callback_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Activation>>;

    /// Pending deliveries, leased or not.
    async fn pending_count(&self) -> StoreResult<usize>;
    /// Claims up to `claim.limit` slots of deliveries that are due and not
    /// leased (or whose lease expired), round-robin across tenants, oldest
    /// due first within a tenant, keeping each callback under
    /// `claim.per_callback` slots. Each slot holds one or more of a
    /// callback's deliveries, oldest due first, to be attempted in that
    /// order and never two at once.
    async fn claim(&self, claim: Claim<'_>) -> StoreResult<Vec<Vec<Claimed>>>;
    /// Claims one delivery, due or not, for a manual attempt: only a
    /// finished delivery, and only if no one holds it.
    async fn claim_one(
        &self,
        owner: &str,
        tenant: &str,
        id: &str,
        now: u64,
        lease_ms: u64,
    ) -> StoreResult<ClaimOne>;
    /// Moves a lease's end to `until`, if `owner` still holds that very
    /// lease, its end still `claimed.lease_until`, and it still runs at
    /// `live_at` (later by however long the call waited for the database);
    /// false otherwise. A delivery leased again, even to the same owner in
    /// another slot, has a later end; and a lease that ended may have let a
    /// claim count its slot free.
    async fn extend_lease(
        &self,
        owner: &str,
        claimed: &Claimed,
        live_at: u64,
        until: u64,
    ) -> StoreResult<bool>;
    /// Records an attempt: the activation always, the delivery's new state
    /// only if `owner` still holds its lease, the one ending at
    /// `lease_until` (see `extend_lease`), and the lease ends. A pending
    /// delivery is due again at its `next_attempt_at`. The attempt is
    /// counted into its callback's hour (see [`HourCount`]) with the
    /// delivery's new state. With a `handover`, the lease passes in the
    /// same step to the callback's earliest due delivery that no one holds.
    /// The backend may write it behind: a crash before then means the
    /// delivery is attempted again.
    async fn complete(
        &self,
        owner: &str,
        lease_until: u64,
        write: DeliveryWrite,
        handover: Option<Handover>,
    ) -> StoreResult<Completed>;
    /// Gives leases back unattempted, as at shutdown: each only if `owner`
    /// still holds that very lease (see `extend_lease`).
    async fn release(&self, owner: &str, claimed: &[Claimed]) -> StoreResult<()>;
    /// The first moment after `after` when a delivery falls due or a lease
    /// ends, if any.
    async fn next_due(&self, after: u64) -> StoreResult<Option<u64>>;
    /// Makes a callback's failed deliveries created between `since` and
    /// `until` pending again, due `now`, each with a fresh round of
    /// retries. Returns their ids. One attempted by hand right now (a live
    /// lease from `claim_one`) is left out: that attempt decides what it
    /// becomes, and a replay must not start a second one beside it.
    async fn replay(
        &self,
        tenant: &str,
        callback_id: &str,
        since: u64,
        until: u64,
        now: u64,
    ) -> StoreResult<Vec<String>>;
    /// Removes up to `limit` events, finished deliveries and activations
    /// from before `cutoff` (ms since the epoch) and returns how many went.
    /// Pending deliveries are kept whatever their age.
    async fn prune(&self, cutoff: u64, limit: usize) -> StoreResult<usize>;
}

/// Everything a backend implements.
#[async_trait]
pub trait Backend: TenantRepo + PluginRepo + CallbackRepo + EventRepo + DeliveryRepo {
    /// Makes every write durable and releases the backend; later calls fail.
    async fn close(&self) -> StoreResult<()>;
    /// Whether the backend answers now, for `/healthz`.
    async fn check(&self) -> StoreResult<()>;
}

/// What services hold: every repository of one backend, and the changes
/// it announces. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    changes: Changes,
}

impl Store {
    /// A store over `backend`, which announces its changes on `changes`.
    pub fn new(backend: Arc<dyn Backend>, changes: Changes) -> Self {
        Store { backend, changes }
    }

    /// Tenants and keys.
    pub fn tenants(&self) -> &dyn TenantRepo {
        &*self.backend
    }

    /// Plugins.
    pub fn plugins(&self) -> &dyn PluginRepo {
        &*self.backend
    }

    /// Callbacks, templates and their health.
    pub fn callbacks(&self) -> &dyn CallbackRepo {
        &*self.backend
    }

    /// Events.
    pub fn events(&self) -> &dyn EventRepo {
        &*self.backend
    }

    /// Deliveries, their history and their queue.
    pub fn deliveries(&self) -> &dyn DeliveryRepo {
        &*self.backend
    }

    /// The changes this store announces, for caches to follow.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Makes every write durable and closes the backend.
    pub async fn close(&self) -> StoreResult<()> {
        self.backend.close().await
    }

    /// Whether the backend answers now.
    pub async fn check(&self) -> StoreResult<()> {
        self.backend.check().await
    }
}
