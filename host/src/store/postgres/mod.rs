//! The shared backend: PostgreSQL, for any number of nodes.
//!
//! Every node is a peer: each holds a pool of connections and runs the
//! same queries. Records are stored as JSON text beside the columns that
//! queries use. The delivery queue is a table whose rows are leased with
//! `FOR UPDATE SKIP LOCKED` (see docs/architecture.md).
//!
//! Layout: this module holds the repositories' queries; `writer`
//! group-commits events, gate history and attempt results; `listen` carries
//! changes between nodes with `LISTEN`/`NOTIFY`.

mod listen;
mod writer;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Row};

use self::writer::Writer;
use super::{
    ActivationQuery, Backend, CallbackRepo, Change, Changes, Claim, ClaimOne, Claimed, Completed,
    DeliveryFilter, DeliveryRepo, DeliveryWrite, EventRepo, EventWrite, Handover, PageFrom,
    PluginRepo, StoreError, StoreResult, TenantRepo,
};
use crate::model::{
    Activation, ApiKey, Callback, Delivery, DeliveryStatus, EventRecord, Health, HourCount,
    PluginRecord, Template, Tenant,
};

/// The schema, embedded: every start brings the database up to date
/// under the migrator's advisory lock, so nodes starting together are safe.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections per node. Writes are batched, so a few go a long way, and
/// a cluster of nodes stays well under PostgreSQL's default of 100.
const POOL_SIZE: u32 = 8;
/// How long a request waits for a connection before it is answered 503:
/// a node whose database is gone says so quickly.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Events this node stored, kept to spare a read when it delivers them.
const RECENT_EVENTS: usize = 20_000;
/// The advisory lock that lets one node at a time prune.
const PRUNE_LOCK: i64 = 0x686f_6f6b_6761_7465;
/// The advisory lock that makes claims take turns over the cluster.
const CLAIM_LOCK: i64 = 0x686f_6f6b_636c_6169;
/// Bytes of events a claim reads for its deliveries, at most, so that a
/// claim of many deliveries of large events does not hold them all while
/// its slots work through them.
const CLAIM_EVENT_BYTES: i64 = 16 << 20;

/// The PostgreSQL backend.
pub struct PgStore {
    pool: PgPool,
    writer: Writer,
    changes: Changes,
    /// This node's name on the notifications it sends, so it ignores its
    /// own when they come back.
    origin: String,
    /// Pending deliveries over the cluster, as last counted.
    pending: Arc<AtomicUsize>,
    recent: Arc<Mutex<RecentEvents>>,
}

/// Why the database cannot be used: unreachable, or migrated by a newer
/// Hookgate.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection could be made.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// Its schema is newer than this binary knows.
    #[error(
        "the database's schema is at version {found}, newer than this binary's {known}: it was \
         migrated by a newer Hookgate; run that version, or a newer one"
    )]
    TooNew {
        /// The newest version applied in the database.
        found: i64,
        /// The newest version this binary has.
        known: i64,
    },
    /// Migrating failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
}

impl PgStore {
    /// Connects to `url`, brings the schema up to date, and starts the
    /// writer and the listener that carries other nodes' changes into
    /// `changes`. `origin` names this node.
    pub async fn connect(
        url: &str,
        changes: Changes,
        origin: String,
    ) -> Result<Self, ConnectError> {
        let pool = pool(url).await?;
        migrate(&pool).await?;
        let counted: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
                .fetch_one(&pool)
                .await
                .map_err(|e| ConnectError::Connect(e.to_string()))?;
        let pending = Arc::new(AtomicUsize::new(counted as usize));
        let store = PgStore {
            writer: Writer::start(
                pool.clone(),
                behind_pool(url).await?,
                changes.clone(),
                origin.clone(),
            ),
            pool: pool.clone(),
            changes: changes.clone(),
            origin: origin.clone(),
            pending: pending.clone(),
            recent: Arc::default(),
        };
        listen::start(pool.clone(), changes, origin);
        tokio::spawn(count_pending(pool, Arc::downgrade(&pending)));
        Ok(store)
    }

    /// Applies the migrations alone, as `hookgate migrate` does; returns
    /// the schema version now in place.
    pub async fn migrate_only(url: &str) -> Result<i64, ConnectError> {
        let pool = pool(url).await?;
        migrate(&pool).await?;
        Ok(newest_known())
    }

    fn remember(&self, record: &Arc<EventRecord>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.insert(record.clone());
    }

    fn recalled(&self, tenant: &str, id: &str) -> Option<Arc<EventRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.get(tenant, id)
    }

    /// Gives each claimed delivery that lacks its event the event, read in
    /// one statement: in a cluster most deliveries are of events another
    /// node took, and a read of each on the way to its attempt is a round
    /// trip apiece. Each event is read once, up to `CLAIM_EVENT_BYTES` in
    /// all. An event not read here, or that cannot be, is left to the
    /// worker, which reads it before the attempt, and says so if it still
    /// cannot.
    async fn read_events(&self, claimed: impl Iterator<Item = &mut Claimed>) {
        let lacking: Vec<&mut Claimed> = claimed.filter(|c| c.event.is_none()).collect();
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut places: HashMap<(String, String), usize> = HashMap::new();
        let place_of: Vec<usize> = lacking
            .iter()
            .map(|c| {
                let key = (c.delivery.tenant_id.clone(), c.delivery.event_id.clone());
                *places.entry(key).or_insert_with_key(|key| {
                    wanted.push(key.clone());
                    wanted.len() - 1
                })
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let tenants: Vec<&str> = wanted.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let ids: Vec<&str> = wanted.iter().map(|(_, id)| id.as_str()).collect();
        // One lookup by key for each event, whatever the planner would
        // make of the array's length.
        let rows = sqlx::query(
            "SELECT n, record FROM ( \
                 SELECT w.n, e.record, sum(octet_length(e.record)) OVER (ORDER BY w.n) AS bytes \
                 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS w(tenant_id, id, n) \
                 CROSS JOIN LATERAL (SELECT record FROM events \
                     WHERE tenant_id = w.tenant_id AND id = w.id OFFSET 0) e \
             ) r WHERE bytes <= $3",
        )
        .bind(&tenants)
        .bind(&ids)
        .bind(CLAIM_EVENT_BYTES)
        .fetch_all(&self.pool)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!("cannot read the events of claimed deliveries: {err}");
                return;
            }
        };
        let mut events: Vec<Option<Arc<EventRecord>>> = vec![None; wanted.len()];
        for row in &rows {
            let (Ok(n), Ok(event)) = (row.try_get::<i64, _>("n"), record::<EventRecord>(row))
            else {
                continue;
            };
            if let Some(place) = events.get_mut(n as usize - 1) {
                *place = Some(Arc::new(event));
            }
        }
        for (claimed, place) in lacking.into_iter().zip(place_of) {
            claimed.event = events[place].clone();
        }
    }

    /// The record a query finds by tenant and one more key, as most
    /// reads are.
    async fn one<T: DeserializeOwned>(
        &self,
        sql: &str,
        tenant: &str,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let row = sqlx::query(sql)
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(record).transpose()
    }

    /// Every record of a tenant that a query lists.
    async fn all_of<T: DeserializeOwned>(&self, sql: &str, tenant: &str) -> StoreResult<Vec<T>> {
        let rows = sqlx::query(sql)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(records(&rows))
    }
    /// Deletes a tenant's row by key and, if there was one, announces
    /// `change` to this node and, through the same transaction, to the
    /// others.
    async fn delete_announced(
        &self,
        sql: &str,
        tenant: &str,
        id: &str,
        change: Change,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let deleted = sqlx::query(sql)
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            > 0;
        if deleted {
            notify(&mut *tx, &self.origin, &change).await?;
        }
        tx.commit().await.map_err(db)?;
        if deleted {
            self.changes.publish(&change);
        }
        Ok(deleted)
    }
}

/// Connections for everything but the writer's behind lane.
async fn pool(url: &str) -> Result<PgPool, ConnectError> {
    connect(url, POOL_SIZE, &[]).await
}

/// The behind lane's connection (see `writer`). It never waits for the
/// disk: what it writes, a crash may lose. And it finds rows by `ctid`, as
/// the claim does, which only nested loops keep a lookup.
async fn behind_pool(url: &str) -> Result<PgPool, ConnectError> {
    let settings = [
        ("synchronous_commit", "off"),
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
    ];
    connect(url, 1, &settings).await
}

async fn connect(url: &str, size: u32, settings: &[(&str, &str)]) -> Result<PgPool, ConnectError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| ConnectError::Connect(e.to_string()))?
        // Every statement here touches a few rows through an index; JIT
        // compiling one costs more than running it, and the planner's
        // estimates of a queue table, which churns, often ask for it.
        .options([("jit", "off")])
        .options(settings.iter().copied());
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| ConnectError::Connect(e.to_string()))
}

fn newest_known() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

async fn migrate(pool: &PgPool) -> Result<(), ConnectError> {
    let known = newest_known();
    // A table the migrator creates; absent before the first migration.
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .unwrap_or(None);
    if let Some(found) = applied
        && found > known
    {
        return Err(ConnectError::TooNew { found, known });
    }
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| ConnectError::Migrate(e.to_string()))
}

/// Recounts the cluster's pending deliveries every second: intake refuses
/// new after-events past a limit, and a count per event would cost more
/// than the limit is worth.
async fn count_pending(pool: PgPool, pending: std::sync::Weak<AtomicUsize>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let counted: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
                .fetch_one(&pool)
                .await;
        if let Ok(n) = counted {
            pending.store(n as usize, Ordering::Relaxed);
        }
    }
}

/// Sends a change to the other nodes, at the commit of whatever runs it.
pub(super) async fn notify<'e, E: Executor<'e, Database = sqlx::Postgres>>(
    executor: E,
    origin: &str,
    change: &Change,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify('hookgate', $1)")
        .bind(listen::payload(origin, change))
        .execute(executor)
        .await
        .map(drop)
        .map_err(db)
}

/// A database error in storage's terms: a broken uniqueness rule is the
/// caller's conflict; a lost connection is a database unavailable for now.
pub(super) fn db(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(e) if e.code().as_deref() == Some("23505") => {
            StoreError::Conflict("name")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(e)
            if e.code()
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
        {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Backend(err.to_string()),
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialize")
}

/// Decodes a stored record, without serde_json's 128-level limit: every
/// record was encoded from input checked against the intake nesting limit.
pub(super) fn decode<T: DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    T::deserialize(&mut deserializer).map_err(|e| StoreError::Corrupt {
        key: what.to_string(),
        reason: e.to_string(),
    })
}

pub(super) fn record<T: DeserializeOwned>(row: &PgRow) -> StoreResult<T> {
    let text: String = row.try_get("record").map_err(db)?;
    decode("record", &text)
}

/// Decodes every row's record, logging and skipping the unreadable ones.
fn records<T: DeserializeOwned>(rows: &[PgRow]) -> Vec<T> {
    rows.iter()
        .filter_map(|row| match record(row) {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::error!("skipping a record that cannot be read: {err}");
                None
            }
        })
        .collect()
}

/// Events this node stored lately, oldest forgotten first.
#[derive(Default)]
struct RecentEvents {
    by_key: HashMap<(String, String), Arc<EventRecord>>,
    order: VecDeque<(String, String)>,
}

impl RecentEvents {
    fn insert(&mut self, record: Arc<EventRecord>) {
        let key = (record.tenant_id.clone(), record.event.id.clone());
        if self.by_key.insert(key.clone(), record).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > RECENT_EVENTS {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
    }

    fn get(&self, tenant: &str, id: &str) -> Option<Arc<EventRecord>> {
        self.by_key
            .get(&(tenant.to_string(), id.to_string()))
            .cloned()
    }
}

#[async_trait]
impl TenantRepo for PgStore {
    async fn insert_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("INSERT INTO tenants (id, created_at, record) VALUES ($1, $2, $3)")
            .bind(&tenant.id)
            .bind(tenant.created_at as i64)
            .bind(encode(tenant))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        insert_key(&mut tx, first_key).await?;
        tx.commit().await.map_err(db)
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT record FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(records(&rows))
    }

    async fn insert_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_key(&mut tx, key).await?;
        tx.commit().await.map_err(db)
    }

    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query("SELECT record FROM api_keys WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(record).transpose()
    }

    async fn keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>> {
        self.all_of(
            "SELECT record FROM api_keys WHERE tenant_id = $1 ORDER BY id",
            tenant,
        )
        .await
    }

    async fn delete_key(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_announced(
            "DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
            Change::Keys,
        )
        .await
    }
}

async fn insert_key(tx: &mut sqlx::PgConnection, key: &ApiKey) -> StoreResult<()> {
    sqlx::query("INSERT INTO api_keys (tenant_id, id, hash, record) VALUES ($1, $2, $3, $4)")
        .bind(&key.tenant_id)
        .bind(&key.id)
        .bind(&key.hash)
        .bind(encode(key))
        .execute(tx)
        .await
        .map(drop)
        .map_err(db)
}

#[async_trait]
impl PluginRepo for PgStore {
    async fn insert_plugin(
        &self,
        record: PluginRecord,
        wasm: Vec<u8>,
    ) -> StoreResult<PluginRecord> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Two uploads of one name at once: the advisory lock orders them,
        // so each gets its own next version.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("plugin/{}/{}", record.tenant_id, record.name))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let last: Option<i32> = sqlx::query_scalar(
            "SELECT max(version) FROM plugins WHERE tenant_id = $1 AND name = $2",
        )
        .bind(&record.tenant_id)
        .bind(&record.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let record = PluginRecord {
            version: last.unwrap_or(0) as u32 + 1,
            ..record
        };
        sqlx::query(
            "INSERT INTO plugins (tenant_id, id, name, version, record, wasm) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.tenant_id)
        .bind(&record.id)
        .bind(&record.name)
        .bind(record.version as i32)
        .bind(encode(&record))
        .bind(wasm)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let change = Change::Plugin {
            id: record.id.clone(),
        };
        notify(&mut *tx, &self.origin, &change).await?;
        tx.commit().await.map_err(db)?;
        self.changes.publish(&change);
        Ok(record)
    }

    async fn update_plugin(&self, record: &PluginRecord) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let updated = sqlx::query(
            "UPDATE plugins SET record = $3 WHERE tenant_id = $1 AND id = $2 \
                 AND record::jsonb ->> 'state' = 'compiling'",
        )
        .bind(&record.tenant_id)
        .bind(&record.id)
        .bind(encode(record))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            > 0;
        let announced = super::ready(record, updated);
        if let Some(change) = &announced {
            notify(&mut *tx, &self.origin, change).await?;
        }
        tx.commit().await.map_err(db)?;
        if let Some(change) = &announced {
            self.changes.publish(change);
        }
        Ok(updated)
    }

    async fn plugin(&self, tenant: &str, id: &str) -> StoreResult<Option<PluginRecord>> {
        self.one(
            "SELECT record FROM plugins WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
        )
        .await
    }

    async fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        self.all_of(
            "SELECT record FROM plugins WHERE tenant_id = $1 ORDER BY id",
            tenant,
        )
        .await
    }

    async fn all_plugins(&self) -> StoreResult<Vec<PluginRecord>> {
        let rows = sqlx::query("SELECT record FROM plugins ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(records(&rows))
    }

    async fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT wasm FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn delete_plugin(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_announced(
            "DELETE FROM plugins WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
            Change::Plugin { id: id.to_string() },
        )
        .await
    }
}

#[async_trait]
impl CallbackRepo for PgStore {
    async fn put_callback(&self, callback: &Callback) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO callbacks (tenant_id, id, name, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = $3, record = $4",
        )
        .bind(&callback.tenant_id)
        .bind(&callback.id)
        .bind(&callback.name)
        .bind(encode(callback))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let change = Change::Callbacks {
            tenant: callback.tenant_id.clone(),
        };
        notify(&mut *tx, &self.origin, &change).await?;
        tx.commit().await.map_err(db)?;
        self.changes.publish(&change);
        Ok(())
    }

    async fn callback(&self, tenant: &str, id: &str) -> StoreResult<Option<Callback>> {
        self.one(
            "SELECT record FROM callbacks WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
        )
        .await
    }

    async fn callbacks(&self, tenant: &str) -> StoreResult<Vec<Callback>> {
        self.all_of(
            "SELECT record FROM callbacks WHERE tenant_id = $1 ORDER BY id",
            tenant,
        )
        .await
    }

    async fn delete_callback(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_announced(
            "DELETE FROM callbacks WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
            Change::Callbacks {
                tenant: tenant.to_string(),
            },
        )
        .await
    }

    async fn put_template(&self, template: &Template) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO templates (tenant_id, id, name, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = $3, record = $4",
        )
        .bind(&template.tenant_id)
        .bind(&template.id)
        .bind(&template.spec.name)
        .bind(encode(template))
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db)
    }

    async fn template(&self, tenant: &str, id: &str) -> StoreResult<Option<Template>> {
        self.one(
            "SELECT record FROM templates WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
        )
        .await
    }

    async fn template_by_name(&self, tenant: &str, name: &str) -> StoreResult<Option<Template>> {
        self.one(
            "SELECT record FROM templates WHERE tenant_id = $1 AND name = $2",
            tenant,
            name,
        )
        .await
    }

    async fn templates(&self, tenant: &str) -> StoreResult<Vec<Template>> {
        self.all_of(
            "SELECT record FROM templates WHERE tenant_id = $1 ORDER BY id",
            tenant,
        )
        .await
    }

    async fn delete_template(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query("DELETE FROM templates WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                > 0,
        )
    }

    async fn record_health(&self, callback_id: &str, failed: bool, at: u64) -> StoreResult<Health> {
        if !failed {
            sqlx::query("DELETE FROM callback_health WHERE callback_id = $1")
                .bind(callback_id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            return Ok(Health::default());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(
            "INSERT INTO callback_health (callback_id, consecutive_failures, failing_since) \
             VALUES ($1, 1, $2) ON CONFLICT (callback_id) DO UPDATE SET \
             consecutive_failures = callback_health.consecutive_failures + 1, \
             failing_since = coalesce(callback_health.failing_since, $2) \
             RETURNING consecutive_failures, failing_since",
        )
        .bind(callback_id)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let change = Change::Health {
            callback: callback_id.to_string(),
        };
        notify(&mut *tx, &self.origin, &change).await?;
        tx.commit().await.map_err(db)?;
        self.changes.publish(&change);
        let failures: i32 = row.try_get("consecutive_failures").map_err(db)?;
        let since: Option<i64> = row.try_get("failing_since").map_err(db)?;
        Ok(Health {
            consecutive_failures: failures as u32,
            failing_since: since.map(|s| s as u64),
        })
    }

    async fn hour_counts(&self, callbacks: &[String], since: u64) -> StoreResult<Vec<HourCount>> {
        self.writer.settle().await;
        let rows = sqlx::query(
            "SELECT hour, sum(succeeded)::int8, sum(failed)::int8 FROM hour_counts \
             WHERE callback_id = ANY($1) AND hour >= $2 GROUP BY hour ORDER BY hour",
        )
        .bind(callbacks)
        .bind((since - since % HourCount::HOUR_MS) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let (at, succeeded, failed): (i64, i64, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                Ok(HourCount {
                    at: at as u64,
                    succeeded: succeeded as u64,
                    failed: failed as u64,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db)
    }
}

#[async_trait]
impl EventRepo for PgStore {
    async fn insert_event(
        &self,
        write: EventWrite,
        durable: bool,
    ) -> StoreResult<Option<EventRecord>> {
        let (record, new_deliveries) = (write.record.clone(), write.deliveries.len());
        let existing = self.writer.event(write, durable).await?;
        if existing.is_none() && new_deliveries > 0 {
            self.remember(&record);
            self.pending.fetch_add(new_deliveries, Ordering::Relaxed);
            self.changes.publish(&Change::DeliveriesDue);
        }
        Ok(existing)
    }

    fn record_event(&self, write: EventWrite) {
        self.writer.record(write);
    }

    async fn event(&self, tenant: &str, id: &str) -> StoreResult<Option<EventRecord>> {
        self.writer.settle().await;
        self.one(
            "SELECT record FROM events WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
        )
        .await
    }
}

/// The claim: see docs/architecture.md. It costs what it returns, not
/// what is pending: a skip scan finds the callbacks with pending
/// deliveries; each deals its oldest due over its free slots (its limit
/// less the slots with a live lease, over every node), up to `$7` to a
/// slot; slots are ranked within their tenant for round-robin across
/// tenants, and their rows are locked, skipping those another statement
/// holds, and leased. Run under `CLAIM_LOCK`, so that two claims never
/// both count a callback's last slot as free.
const CLAIM: &str = "
WITH RECURSIVE with_pending AS (
    (SELECT callback_id FROM deliveries WHERE status = 'pending'
     ORDER BY callback_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.callback_id FROM deliveries d
            WHERE d.status = 'pending' AND d.callback_id > p.callback_id
            ORDER BY d.callback_id LIMIT 1)
    FROM with_pending p WHERE p.callback_id IS NOT NULL
), free AS MATERIALIZED (
    -- A slot counts once however many deliveries it holds; a lease without
    -- a slot counts alone. Counted once per callback, not again for each
    -- candidate that reads it.
    SELECT p.callback_id,
           least($4, $5 - (SELECT count(DISTINCT l.lease_slot)
                                  + count(*) FILTER (WHERE l.lease_slot IS NULL)
                           FROM deliveries l
                           WHERE l.callback_id = p.callback_id AND l.status = 'pending'
                             AND l.lease_until > $2)) AS slots
    FROM with_pending p WHERE p.callback_id IS NOT NULL
), candidates AS (
    -- A callback's due deliveries, dealt out in turn over the slots it
    -- has free (and this node can take), so that a few fill as many slots
    -- and many fill each to `$7`.
    SELECT c.tid, c.tenant_id, c.callback_id, c.due_at, c.n,
           (c.n - 1) % least(f.slots, count(*) OVER (PARTITION BY c.callback_id)) AS slot
    FROM free f CROSS JOIN LATERAL (
        SELECT q.*, row_number() OVER (ORDER BY q.due_at) AS n FROM (
            SELECT d.ctid AS tid, d.tenant_id, d.callback_id, d.due_at FROM deliveries d
            WHERE d.callback_id = f.callback_id AND d.status = 'pending'
              AND d.due_at <= $2 AND (d.lease_until IS NULL OR d.lease_until <= $2)
              AND d.tenant_id <> ALL($6)
            ORDER BY d.due_at LIMIT greatest(f.slots, 0) * $7
        ) q
    ) c
), chosen AS (
    -- Slots go round-robin over tenants, oldest first within one, as the
    -- first delivery of each says; each gets a new number.
    SELECT h.callback_id, h.slot, nextval('lease_slots') AS lease_slot
    FROM (SELECT callback_id, slot FROM candidates WHERE n - 1 = slot
          ORDER BY row_number() OVER (PARTITION BY tenant_id ORDER BY due_at), due_at
          LIMIT $4) h
), picked AS (
    -- Each row is found where the scan saw it, by `ctid`: a lookup that
    -- no plan can turn into a scan of the queue, whatever the plan cache
    -- learnt while the queue was nearly empty. A row changed since this
    -- statement's snapshot (completed, or leased by a manual retry) has a
    -- new ctid: it is not found, or fails the lease conditions checked
    -- again here, and is left for the next claim.
    SELECT l.tid, s.lease_slot
    FROM candidates c JOIN chosen s ON s.callback_id = c.callback_id AND s.slot = c.slot
    CROSS JOIN LATERAL (
        SELECT d.ctid AS tid FROM deliveries d
        WHERE d.ctid = c.tid
          AND d.status = 'pending' AND d.due_at <= $2
          AND (d.lease_until IS NULL OR d.lease_until <= $2)
        FOR UPDATE SKIP LOCKED
    ) l
)
UPDATE deliveries d SET lease_owner = $1, lease_until = $2 + $3, lease_slot = picked.lease_slot
FROM picked WHERE d.ctid = picked.tid
RETURNING d.record, d.lease_until, d.lease_slot, d.due_at";

#[async_trait]
impl DeliveryRepo for PgStore {
    async fn delivery(&self, tenant: &str, id: &str) -> StoreResult<Option<Delivery>> {
        self.writer.settle().await;
        self.one(
            "SELECT record FROM deliveries WHERE tenant_id = $1 AND id = $2",
            tenant,
            id,
        )
        .await
    }

    async fn deliveries(
        &self,
        tenant: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        self.writer.settle().await;
        let rows = sqlx::query(
            "SELECT record FROM deliveries WHERE tenant_id = $1 \
             AND ($2::text IS NULL OR callback_id = $2) \
             AND ($3::text IS NULL OR status = $3) \
             AND ($4::text IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(tenant)
        .bind(filter.callback_id.as_deref())
        .bind(filter.status.map(DeliveryStatus::as_str))
        .bind(before)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(records(&rows))
    }

    async fn activations(
        &self,
        tenant: &str,
        callback_id: &str,
        query: &ActivationQuery,
        limit: usize,
    ) -> StoreResult<Vec<Activation>> {
        self.writer.settle().await;
        let (before, after) = match &query.from {
            PageFrom::Newest => (None, None),
            PageFrom::Before(id) => (Some(id.as_str()), None),
            PageFrom::After(id) => (None, Some(id.as_str())),
        };
        // Newer pages are the nearest ones going up, turned newest first.
        let order = if after.is_some() { "ASC" } else { "DESC" };
        let rows = sqlx::query(&format!(
            "SELECT record FROM activations WHERE tenant_id = $1 AND callback_id = $2 \
             AND ($3::text IS NULL OR id < $3) AND ($4::text IS NULL OR id > $4) \
             AND ($5::int8 IS NULL OR at >= $5) AND ($6::int8 IS NULL OR at < $6) \
             AND ($7::text IS NULL OR record::jsonb->>'outcome' = $7) \
             ORDER BY id {order} LIMIT $8"
        ))
        .bind(tenant)
        .bind(callback_id)
        .bind(before)
        .bind(after)
        .bind(query.since.map(|t| t.min(i64::MAX as u64) as i64))
        .bind(query.until.map(|t| t.min(i64::MAX as u64) as i64))
        .bind(query.outcome.map(|o| o.as_str()))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut found = records(&rows);
        if after.is_some() {
            found.reverse();
        }
        Ok(found)
    }

    async fn activation(
        &self,
        tenant: &str,
        callback_id: &str,
        id: &str,
    ) -> StoreResult<Option<Activation>> {
        self.writer.settle().await;
        let row = sqlx::query(
            "SELECT record FROM activations WHERE tenant_id = $1 AND callback_id = $2 AND id = $3",
        )
        .bind(tenant)
        .bind(callback_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(record).transpose()
    }

    async fn activations_by_id(
        &self,
        tenant: &str,
        callback_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Activation>> {
        self.writer.settle().await;
        let rows = sqlx::query(
            "SELECT record FROM activations WHERE tenant_id = $1 AND callback_id = $2 \
             AND id = ANY($3) ORDER BY id",
        )
        .bind(tenant)
        .bind(callback_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(records(&rows))
    }

    async fn pending_count(&self) -> StoreResult<usize> {
        Ok(self.pending.load(Ordering::Relaxed))
    }

    async fn claim(&self, claim: Claim<'_>) -> StoreResult<Vec<Vec<Claimed>>> {
        // Claims take turns over the cluster: each counts the slots the
        // last one committed. A claim touches a handful of rows through
        // their indexes, so nested loops are right whatever the table's
        // statistics say; a hash join would read the whole queue. Its
        // commit does not wait for the disk: other nodes see the leases at
        // once, and a lease lost with a crash of the database only lets a
        // delivery be attempted again, which at-least-once allows.
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "SELECT set_config('enable_hashjoin', 'off', true), \
             set_config('enable_mergejoin', 'off', true), \
             set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock($1)",
        )
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let rows = sqlx::query(CLAIM)
            .bind(claim.owner)
            .bind(claim.now as i64)
            .bind(claim.lease_ms as i64)
            .bind(claim.limit as i64)
            .bind(claim.per_callback as i64)
            .bind(claim.exclude_tenants)
            .bind(claim.depth.max(1) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut slots: BTreeMap<i64, Vec<(i64, Claimed)>> = BTreeMap::new();
        for row in &rows {
            let delivery: Delivery = match record(row) {
                Ok(delivery) => delivery,
                Err(err) => {
                    tracing::error!("skipping a delivery that cannot be read: {err}");
                    continue;
                }
            };
            let lease_until: i64 = row.try_get("lease_until").map_err(db)?;
            let slot: i64 = row.try_get("lease_slot").map_err(db)?;
            let due_at: i64 = row.try_get("due_at").map_err(db)?;
            slots.entry(slot).or_default().push((
                due_at,
                Claimed {
                    event: self.recalled(&delivery.tenant_id, &delivery.event_id),
                    delivery,
                    lease_until: lease_until as u64,
                },
            ));
        }
        let mut slots: Vec<Vec<Claimed>> = slots
            .into_values()
            .map(|mut slot| {
                slot.sort_by_key(|(due_at, _)| *due_at);
                slot.into_iter().map(|(_, claimed)| claimed).collect()
            })
            .collect();
        self.read_events(slots.iter_mut().flatten()).await;
        Ok(slots)
    }

    async fn claim_one(
        &self,
        owner: &str,
        tenant: &str,
        id: &str,
        now: u64,
        lease_ms: u64,
    ) -> StoreResult<ClaimOne> {
        let row = sqlx::query(
            "UPDATE deliveries SET lease_owner = $3, lease_until = $4 + $5, lease_slot = NULL \
             WHERE tenant_id = $1 AND id = $2 AND status <> 'pending' \
             AND (lease_until IS NULL OR lease_until <= $4) RETURNING record, lease_until",
        )
        .bind(tenant)
        .bind(id)
        .bind(owner)
        .bind(now as i64)
        .bind(lease_ms as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(row) = row {
            let lease_until: i64 = row.try_get("lease_until").map_err(db)?;
            return Ok(ClaimOne::Claimed(Box::new(Claimed {
                delivery: record(&row)?,
                event: None,
                lease_until: lease_until as u64,
            })));
        }
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM deliveries WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(match status.as_deref() {
            None => ClaimOne::NotFound,
            Some("pending") => ClaimOne::Pending,
            Some(_) => ClaimOne::Leased,
        })
    }

    async fn extend_lease(
        &self,
        owner: &str,
        claimed: &Claimed,
        live_at: u64,
        until: u64,
    ) -> StoreResult<bool> {
        let asked = Instant::now();
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let live_at = live_at + asked.elapsed().as_millis() as u64;
        Ok(sqlx::query(
            "UPDATE deliveries SET lease_until = $5 \
             WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND lease_until = $4 \
             AND lease_until > $6",
        )
        .bind(&claimed.delivery.tenant_id)
        .bind(&claimed.delivery.id)
        .bind(owner)
        .bind(claimed.lease_until as i64)
        .bind(until as i64)
        .bind(live_at as i64)
        .execute(&mut *conn)
        .await
        .map_err(db)?
        .rows_affected()
            > 0)
    }

    async fn complete(
        &self,
        owner: &str,
        lease_until: u64,
        write: DeliveryWrite,
        handover: Option<Handover>,
    ) -> StoreResult<Completed> {
        let finished = write.0.status != DeliveryStatus::Pending;
        let completed = self
            .writer
            .complete(owner, lease_until, write, handover)
            .await?;
        if completed.held && finished {
            // Another node may have accepted it: the count is this node's
            // estimate until the next recount, and never below zero.
            let _ = self
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        Ok(completed)
    }

    async fn release(&self, owner: &str, claimed: &[Claimed]) -> StoreResult<()> {
        let tenants: Vec<&str> = claimed
            .iter()
            .map(|c| c.delivery.tenant_id.as_str())
            .collect();
        let ids: Vec<&str> = claimed.iter().map(|c| c.delivery.id.as_str()).collect();
        let until: Vec<i64> = claimed.iter().map(|c| c.lease_until as i64).collect();
        sqlx::query(
            "UPDATE deliveries d SET lease_owner = NULL, lease_until = NULL, lease_slot = NULL \
             FROM UNNEST($1::text[], $2::text[], $4::int8[]) AS u(tenant_id, id, until) \
             WHERE d.tenant_id = u.tenant_id AND d.id = u.id AND d.lease_owner = $3 \
             AND d.lease_until = u.until",
        )
        .bind(tenants)
        .bind(ids)
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(db)
    }

    async fn next_due(&self, after: u64) -> StoreResult<Option<u64>> {
        // The earliest delivery still to fall due and the earliest lease to
        // end, each from its index.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT least( \
               (SELECT min(due_at) FROM deliveries WHERE status = 'pending' AND due_at > $1), \
               (SELECT min(lease_until) FROM deliveries \
                WHERE status = 'pending' AND lease_until > $1))",
        )
        .bind(after.min(i64::MAX as u64) as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(next.map(|n| n as u64))
    }

    async fn replay(
        &self,
        tenant: &str,
        callback_id: &str,
        since: u64,
        until: u64,
        now: u64,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let rows = sqlx::query(
            "SELECT record FROM deliveries WHERE tenant_id = $1 AND callback_id = $2 \
             AND status = 'failed' AND created_at BETWEEN $3 AND $4 \
             AND (lease_until IS NULL OR lease_until <= $5) FOR UPDATE",
        )
        .bind(tenant)
        .bind(callback_id)
        .bind(since.min(i64::MAX as u64) as i64)
        .bind(until.min(i64::MAX as u64) as i64)
        .bind(now as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut ids = Vec::new();
        for mut delivery in records::<Delivery>(&rows) {
            delivery.status = DeliveryStatus::Pending;
            delivery.round_start = delivery.attempts;
            delivery.next_attempt_at = Some(now);
            delivery.updated_at = now;
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', due_at = $3, record = $4, \
                 lease_owner = NULL, lease_until = NULL, lease_slot = NULL \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(&delivery.id)
            .bind(now as i64)
            .bind(encode(&delivery))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            ids.push(delivery.id);
        }
        notify(&mut *tx, &self.origin, &Change::DeliveriesDue).await?;
        tx.commit().await.map_err(db)?;
        self.changes.publish(&Change::DeliveriesDue);
        Ok(ids)
    }

    async fn prune(&self, cutoff: u64, limit: usize) -> StoreResult<usize> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PRUNE_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if !ours {
            // Another node prunes now.
            return Ok(0);
        }
        let (cutoff, limit) = (cutoff as i64, limit as i64);
        let mut removed = 0;
        for statement in [
            "DELETE FROM events WHERE ctid IN \
             (SELECT ctid FROM events WHERE at < $1 LIMIT $2)",
            "DELETE FROM deliveries WHERE ctid IN (SELECT ctid FROM deliveries \
             WHERE status <> 'pending' AND created_at < $1 LIMIT $2)",
            "DELETE FROM activations WHERE ctid IN \
             (SELECT ctid FROM activations WHERE at < $1 LIMIT $2)",
            "DELETE FROM hour_counts WHERE ctid IN \
             (SELECT ctid FROM hour_counts WHERE hour + 3600000 <= $1 LIMIT $2)",
        ] {
            removed += sqlx::query(statement)
                .bind(cutoff)
                .bind(limit - removed as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected() as usize;
        }
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }
}

#[async_trait]
impl Backend for PgStore {
    async fn close(&self) -> StoreResult<()> {
        self.writer.close().await;
        self.pool.close().await;
        Ok(())
    }

    async fn check(&self) -> StoreResult<()> {
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
        .map_err(|_| StoreError::Unavailable("PostgreSQL did not answer within 2 s".into()))?
        .map(drop)
        .map_err(db)
    }
}

/// The node's own record of its admin token, kept in the database so that
/// every node shares it.
impl PgStore {
    /// The administrator token's hash, stored once: the first node to
    /// start stores `candidate`; the others find it. Returns the stored hash.
    pub async fn admin_token_hash(&self, candidate: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ('admin_token_sha256', $1) ON CONFLICT DO NOTHING")
            .bind(candidate)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'admin_token_sha256'")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }
}
