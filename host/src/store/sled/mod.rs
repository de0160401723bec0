//! The embedded backend: sled, for one node.
//!
//! Layout: `trees` reads and writes records; `writer` runs them on storage
//! threads and group-commits writes; `files` makes a commit durable with
//! `fdatasync`; `queue` is the in-memory delivery queue with leases. The
//! rest of the server sees only the repository traits.

mod files;
mod queue;
mod trees;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use async_trait::async_trait;

use self::queue::{One, Queue};
use self::trees::Trees;
use self::writer::Pool;
use super::{
    ActivationQuery, Backend, CallbackRepo, Change, Changes, Claim, ClaimOne, Claimed, Completed,
    DeliveryFilter, DeliveryRepo, DeliveryWrite, EventRepo, EventWrite, Handover, PluginRepo,
    StoreError, StoreResult, TenantRepo,
};
use crate::model::{
    Activation, ApiKey, Callback, Delivery, DeliveryStatus, EventRecord, Health, HourCount,
    PluginRecord, Template, Tenant,
};

/// The sled backend.
pub struct SledStore {
    pool: Pool,
    /// The trees, for the one call made without a storage thread, which
    /// holds the read lock while it runs. Taken at close, so that closing
    /// releases sled's lock on the directory even while a task still
    /// holds a clone of the store.
    trees: RwLock<Option<Arc<Trees>>>,
    queue: Mutex<Queue>,
    /// The queue's length, readable without its lock: every after-event
    /// checks it.
    pending: AtomicUsize,
    changes: Changes,
    /// Held by a replay from before its read until it has queued what it
    /// replays, and by a manual claim, so that a delivery is either
    /// attempted by hand or replayed, never both at once.
    replaying: tokio::sync::Mutex<()>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, loads the pending
    /// deliveries into the queue, and announces changes on `changes`.
    pub fn open(dir: &Path, changes: Changes) -> StoreResult<Self> {
        let trees = Arc::new(Trees::open(dir)?);
        let mut queue = Queue::default();
        for delivery in trees.pending_deliveries()? {
            queue.add(delivery, None);
        }
        Ok(SledStore {
            pool: Pool::new(trees.clone()),
            trees: RwLock::new(Some(trees)),
            pending: AtomicUsize::new(queue.len()),
            queue: Mutex::new(queue),
            changes,
            replaying: tokio::sync::Mutex::new(()),
        })
    }

    /// The queue, locked; its length is published when the guard drops.
    fn queue(&self) -> QueueGuard<'_> {
        QueueGuard {
            queue: self.queue.lock().unwrap_or_else(|p| p.into_inner()),
            pending: &self.pending,
        }
    }
}

/// The locked queue, which publishes its length when released.
struct QueueGuard<'a> {
    queue: MutexGuard<'a, Queue>,
    pending: &'a AtomicUsize,
}

impl std::ops::Deref for QueueGuard<'_> {
    type Target = Queue;

    fn deref(&self) -> &Queue {
        &self.queue
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut Queue {
        &mut self.queue
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.pending.store(self.queue.len(), Ordering::Relaxed);
    }
}

#[async_trait]
impl TenantRepo for SledStore {
    async fn insert_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> StoreResult<()> {
        let (tenant, key) = (tenant.clone(), first_key.clone());
        self.pool
            .write(move |t| t.insert_tenant(&tenant, &key))
            .await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.pool.run(|t| t.tenants()).await
    }

    async fn insert_key(&self, key: &ApiKey) -> StoreResult<()> {
        let key = key.clone();
        self.pool.write(move |t| t.insert_key(&key)).await
    }

    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let hash = hash.to_string();
        self.pool.run(move |t| t.key_by_hash(&hash)).await
    }

    async fn keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>> {
        let tenant = tenant.to_string();
        self.pool.run(move |t| t.keys(&tenant)).await
    }

    async fn delete_key(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let deleted = self.pool.write(move |t| t.delete_key(&tenant, &id)).await?;
        if deleted {
            self.changes.publish(&Change::Keys);
        }
        Ok(deleted)
    }
}

#[async_trait]
impl PluginRepo for SledStore {
    async fn insert_plugin(
        &self,
        record: PluginRecord,
        wasm: Vec<u8>,
    ) -> StoreResult<PluginRecord> {
        let stored = self
            .pool
            .write(move |t| t.insert_plugin(record, &wasm))
            .await?;
        self.changes.publish(&Change::Plugin {
            id: stored.id.clone(),
        });
        Ok(stored)
    }

    async fn plugin(&self, tenant: &str, id: &str) -> StoreResult<Option<PluginRecord>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool.run(move |t| t.plugin(&tenant, &id)).await
    }

    async fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        let tenant = tenant.to_string();
        self.pool.run(move |t| t.plugins(&tenant)).await
    }

    async fn all_plugins(&self) -> StoreResult<Vec<PluginRecord>> {
        self.pool.run(|t| t.all_plugins()).await
    }

    async fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let id = id.to_string();
        self.pool.run(move |t| t.plugin_wasm(&id)).await
    }

    async fn delete_plugin(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (tenant, key) = (tenant.to_string(), id.to_string());
        let deleted = self
            .pool
            .write(move |t| t.delete_plugin(&tenant, &key))
            .await?;
        if deleted {
            self.changes.publish(&Change::Plugin { id: id.to_string() });
        }
        Ok(deleted)
    }

    async fn update_plugin(&self, record: &PluginRecord) -> StoreResult<bool> {
        let stored = record.clone();
        let updated = self.pool.write(move |t| t.update_plugin(&stored)).await?;
        if let Some(change) = super::ready(record, updated) {
            self.changes.publish(&change);
        }
        Ok(updated)
    }
}

#[async_trait]
impl CallbackRepo for SledStore {
    async fn put_callback(&self, callback: &Callback) -> StoreResult<()> {
        let stored = callback.clone();
        self.pool.write(move |t| t.put_callback(&stored)).await?;
        self.changes.publish(&Change::Callbacks {
            tenant: callback.tenant_id.clone(),
        });
        Ok(())
    }

    async fn callback(&self, tenant: &str, id: &str) -> StoreResult<Option<Callback>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool.run(move |t| t.callback(&tenant, &id)).await
    }

    async fn callbacks(&self, tenant: &str) -> StoreResult<Vec<Callback>> {
        let tenant = tenant.to_string();
        self.pool.run(move |t| t.callbacks(&tenant)).await
    }

    async fn delete_callback(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (t, key) = (tenant.to_string(), id.to_string());
        let deleted = self
            .pool
            .write(move |s| s.delete_callback(&t, &key))
            .await?;
        if deleted {
            self.changes.publish(&Change::Callbacks {
                tenant: tenant.to_string(),
            });
        }
        Ok(deleted)
    }

    async fn put_template(&self, template: &Template) -> StoreResult<()> {
        let template = template.clone();
        self.pool.write(move |t| t.put_template(&template)).await
    }

    async fn template(&self, tenant: &str, id: &str) -> StoreResult<Option<Template>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool.run(move |t| t.template(&tenant, &id)).await
    }

    async fn template_by_name(&self, tenant: &str, name: &str) -> StoreResult<Option<Template>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.pool
            .run(move |t| t.template_by_name(&tenant, &name))
            .await
    }

    async fn templates(&self, tenant: &str) -> StoreResult<Vec<Template>> {
        let tenant = tenant.to_string();
        self.pool.run(move |t| t.templates(&tenant)).await
    }

    async fn delete_template(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool
            .write(move |t| t.delete_template(&tenant, &id))
            .await
    }

    async fn record_health(&self, callback_id: &str, failed: bool, at: u64) -> StoreResult<Health> {
        // One atomic update of a hot record in sled's page cache: cheap
        // enough to run here rather than queue for a storage thread.
        let health = {
            let trees = self.trees.read().unwrap_or_else(|p| p.into_inner());
            let trees = trees.as_ref().ok_or(StoreError::Closed)?;
            trees.record_health(callback_id, failed, at)?
        };
        if failed {
            self.changes.publish(&Change::Health {
                callback: callback_id.to_string(),
            });
        }
        Ok(health)
    }

    async fn hour_counts(&self, callbacks: &[String], since: u64) -> StoreResult<Vec<HourCount>> {
        let callbacks = callbacks.to_vec();
        self.pool
            .run(move |t| t.hour_counts(&callbacks, since))
            .await
    }
}

#[async_trait]
impl EventRepo for SledStore {
    async fn insert_event(
        &self,
        write: EventWrite,
        durable: bool,
    ) -> StoreResult<Option<EventRecord>> {
        let (record, deliveries) = (write.record.clone(), write.deliveries.clone());
        let existing = self.pool.insert_event(write, durable).await?;
        if existing.is_none() && !deliveries.is_empty() {
            let mut queue = self.queue();
            for delivery in deliveries {
                queue.add(delivery, Some(record.clone()));
            }
            drop(queue);
            self.changes.publish(&Change::DeliveriesDue);
        }
        Ok(existing)
    }

    fn record_event(&self, write: EventWrite) {
        self.pool.record_event(write);
    }

    async fn event(&self, tenant: &str, id: &str) -> StoreResult<Option<EventRecord>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool.run(move |t| t.event(&tenant, &id)).await
    }
}

#[async_trait]
impl DeliveryRepo for SledStore {
    async fn delivery(&self, tenant: &str, id: &str) -> StoreResult<Option<Delivery>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool.run(move |t| t.delivery(&tenant, &id)).await
    }

    async fn deliveries(
        &self,
        tenant: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let (tenant, filter, before) = (
            tenant.to_string(),
            filter.clone(),
            before.map(str::to_string),
        );
        self.pool
            .run(move |t| t.deliveries(&tenant, &filter, before.as_deref(), limit))
            .await
    }

    async fn activations(
        &self,
        tenant: &str,
        callback_id: &str,
        query: &ActivationQuery,
        limit: usize,
    ) -> StoreResult<Vec<Activation>> {
        let (tenant, callback, query) =
            (tenant.to_string(), callback_id.to_string(), query.clone());
        self.pool
            .run(move |t| t.activations(&tenant, &callback, &query, limit))
            .await
    }

    async fn activation(
        &self,
        tenant: &str,
        callback_id: &str,
        id: &str,
    ) -> StoreResult<Option<Activation>> {
        let (tenant, callback, id) = (tenant.to_string(), callback_id.to_string(), id.to_string());
        self.pool
            .run(move |t| t.activation(&tenant, &callback, &id))
            .await
    }

    async fn activations_by_id(
        &self,
        tenant: &str,
        callback_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Activation>> {
        let (tenant, callback, ids) = (tenant.to_string(), callback_id.to_string(), ids.to_vec());
        self.pool
            .run(move |t| {
                ids.iter()
                    .filter_map(|id| t.activation(&tenant, &callback, id).transpose())
                    .collect()
            })
            .await
    }

    async fn pending_count(&self) -> StoreResult<usize> {
        Ok(self.pending.load(Ordering::Relaxed))
    }

    async fn claim(&self, claim: Claim<'_>) -> StoreResult<Vec<Vec<Claimed>>> {
        // Completions change the queue at once and are written behind, so
        // a slot never waits on the disk between attempts: one each.
        Ok(self
            .queue()
            .claim(&claim)
            .into_iter()
            .map(|c| vec![c])
            .collect())
    }

    async fn claim_one(
        &self,
        owner: &str,
        tenant: &str,
        id: &str,
        now: u64,
        lease_ms: u64,
    ) -> StoreResult<ClaimOne> {
        let _replaying = self.replaying.lock().await;
        let key = trees::key(tenant, id);
        // The lease first, the record after it: whoever held the delivery
        // before queued its record as it let go (see `complete`), so this
        // read, which waits for queued writes, sees that record.
        match self.queue().claim_one(owner, &key, now, lease_ms) {
            One::Pending => return Ok(ClaimOne::Pending),
            One::Leased => return Ok(ClaimOne::Leased),
            One::Claimed => {}
        }
        match self.delivery(tenant, id).await {
            Ok(Some(delivery)) => Ok(ClaimOne::Claimed(Box::new(Claimed {
                delivery,
                event: None,
                lease_until: now + lease_ms,
            }))),
            found => {
                self.queue().unclaim_one(&key);
                found.map(|_| ClaimOne::NotFound)
            }
        }
    }

    async fn extend_lease(
        &self,
        owner: &str,
        claimed: &Claimed,
        live_at: u64,
        until: u64,
    ) -> StoreResult<bool> {
        Ok(self.queue().extend(owner, claimed, live_at, until))
    }

    async fn complete(
        &self,
        owner: &str,
        lease_until: u64,
        (delivery, attempt): DeliveryWrite,
        handover: Option<Handover>,
    ) -> StoreResult<Completed> {
        let mut queue = self.queue();
        let (held, next) = queue.complete(owner, lease_until, &delivery, handover);
        if held {
            // Written behind, in order: reads wait for it, and a crash
            // before it lands leaves the delivery pending, to be sent again.
            // Queued before the lease is seen to go, so that whoever leases
            // the delivery next reads this record, not the one before it.
            self.pool.record_delivery(delivery, attempt);
            return Ok(Completed { held, next });
        }
        drop(queue);
        if let Some(attempt) = attempt {
            tracing::warn!(
                delivery = %delivery.id,
                "an attempt finished after its lease passed to another owner; its history is kept"
            );
            self.pool.submit("an attempt's history", move |t| {
                t.insert_activation(&attempt)
            });
        }
        Ok(Completed { held, next })
    }

    async fn release(&self, owner: &str, claimed: &[Claimed]) -> StoreResult<()> {
        self.queue().release(owner, claimed);
        Ok(())
    }

    async fn next_due(&self, after: u64) -> StoreResult<Option<u64>> {
        Ok(self.queue().next_due(after))
    }

    async fn replay(
        &self,
        tenant: &str,
        callback_id: &str,
        since: u64,
        until: u64,
        now: u64,
    ) -> StoreResult<Vec<String>> {
        let filter = DeliveryFilter {
            callback_id: Some(callback_id.to_string()),
            status: Some(DeliveryStatus::Failed),
        };
        let _replaying = self.replaying.lock().await;
        // Known before the read: a manual attempt ending during the read
        // queues its record after it, and must not be replayed from the
        // record before. None starts meanwhile: `claim_one` waits.
        let by_hand = self.queue().attempted_by_hand(now);
        let failed = self.deliveries(tenant, &filter, None, usize::MAX).await?;
        let replayed: Vec<Delivery> = failed
            .into_iter()
            .filter(|d| (since..=until).contains(&d.created_at))
            .filter(|d| !by_hand.contains(&queue::key(d)))
            .map(|mut delivery| {
                delivery.status = DeliveryStatus::Pending;
                delivery.round_start = delivery.attempts;
                delivery.next_attempt_at = Some(now);
                delivery.updated_at = now;
                delivery
            })
            .collect();
        let writes: Vec<DeliveryWrite> = replayed.iter().map(|d| (d.clone(), None)).collect();
        self.pool
            .write(move |t| t.update_deliveries(&writes))
            .await?;
        let ids = replayed.iter().map(|d| d.id.clone()).collect();
        let mut queue = self.queue();
        for delivery in replayed {
            queue.add(delivery, None);
        }
        drop(queue);
        self.changes.publish(&Change::DeliveriesDue);
        Ok(ids)
    }

    async fn prune(&self, cutoff: u64, limit: usize) -> StoreResult<usize> {
        self.pool.run(move |t| t.prune(cutoff, limit)).await
    }
}

#[async_trait]
impl Backend for SledStore {
    async fn close(&self) -> StoreResult<()> {
        self.trees.write().unwrap_or_else(|p| p.into_inner()).take();
        self.pool.close().await
    }

    async fn check(&self) -> StoreResult<()> {
        // An embedded database answers while the process runs.
        Ok(())
    }
}
