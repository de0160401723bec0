//! After-event delivery: every pending delivery is POSTed, signed, to its
//! callback's URL, retried on failure, and recorded attempt by attempt.
//!
//! Deliveries are stored (with a `pending` index) before the events
//! endpoint answers, so the queue itself can live in memory: at start,
//! [`Deliverer::resume`] schedules every pending delivery again, which is
//! what makes a crash lose nothing. Delivery is therefore at least once;
//! receivers deduplicate on `webhook-id`, the delivery id.
//!
//! Concurrency is bounded globally and per callback, and shared fairly
//! between tenants (see `scheduler`), so a slow receiver queues its own
//! deliveries without holding up anyone else's.
//!
//! Layout: this module schedules and dispatches; `scheduler` decides who
//! gets the next slot; `attempt` makes one attempt; `retry` decides what
//! a result means.

mod attempt;
mod retry;
mod scheduler;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use self::scheduler::{Bounds, Scheduler};

use crate::callbacks::Callbacks;
use crate::config::DeliveryConfig;
use crate::error::{Error, Result};
use crate::event::now_ms;
use crate::model::{Activation, Delivery, DeliveryStatus, EventRecord, Health};
use crate::outbound::HttpClient;
use crate::registry::Registry;
use crate::store::{Db, DeliveryFilter};

/// A delivery on its way to an attempt, with its event when at hand (a new
/// delivery's event is; one resumed after a restart is read from storage).
struct Work {
    delivery: Delivery,
    record: Option<Arc<EventRecord>>,
}

/// The delivery engine. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    callbacks: Callbacks,
    registry: Registry,
    http: HttpClient,
    config: DeliveryConfig,
    /// Deliveries due now, waiting for a slot.
    scheduler: Mutex<Scheduler<Work>>,
    /// Set at shutdown: no attempt starts after it.
    stopping: AtomicBool,
    /// Told whenever an attempt's slot is released.
    released: Notify,
    in_flight: Mutex<HashSet<String>>,
    pending: AtomicUsize,
    /// Callbacks' runs of failures, read from storage once and kept.
    health: Mutex<HashMap<String, Health>>,
}

/// A delivery with every attempt made so far.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Its attempts, oldest first.
    pub attempts_made: Vec<Activation>,
}

impl Deliverer {
    /// Starts the dispatcher. Call [`Deliverer::resume`] once storage is open.
    pub fn start(
        db: Db,
        callbacks: Callbacks,
        registry: Registry,
        http: HttpClient,
        config: DeliveryConfig,
    ) -> Self {
        let bounds = Bounds {
            global: config.concurrency,
            per_callback: config.per_callback_concurrency,
        };
        let inner = Arc::new(Inner {
            db,
            callbacks,
            registry,
            http,
            config,
            scheduler: Mutex::new(Scheduler::new(bounds)),
            stopping: AtomicBool::new(false),
            released: Notify::new(),
            in_flight: Mutex::default(),
            pending: AtomicUsize::new(0),
            health: Mutex::default(),
        });
        Deliverer { inner }
    }

    /// Starts no more attempts: the first step of a graceful shutdown.
    /// Deliveries not yet attempted stay pending in storage.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Waits until the attempts in flight have finished, or `deadline`
    /// passes; true if they all finished. Their results are queued for
    /// storage by then, so closing storage records them.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            let released = self.inner.released.notified();
            if self.inner.slots().in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), released)
                .await
                .is_err()
            {
                return self.inner.slots().in_flight() == 0;
            }
        }
    }

    /// Schedules every stored pending delivery: after a restart, this is
    /// how in-flight and waiting deliveries resume.
    pub async fn resume(&self) -> Result<usize> {
        let pending = self.inner.db.run(|s| s.pending_deliveries()).await?;
        self.inner.pending.store(pending.len(), Ordering::SeqCst);
        self.inner.gauge();
        for delivery in pending.iter().cloned() {
            self.inner.schedule(Work {
                delivery,
                record: None,
            });
        }
        Ok(pending.len())
    }

    /// Whether `n` more deliveries fit under the pending bound.
    pub fn has_room(&self, n: usize) -> bool {
        self.inner.pending.load(Ordering::SeqCst) + n <= self.inner.config.max_pending
    }

    /// Deliveries waiting for an attempt or a retry.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// Takes newly stored deliveries of `record` into the queue.
    pub fn accepted(&self, deliveries: Vec<Delivery>, record: Option<Arc<EventRecord>>) {
        self.inner
            .pending
            .fetch_add(deliveries.len(), Ordering::SeqCst);
        self.inner.gauge();
        for delivery in deliveries {
            self.inner.schedule(Work {
                delivery,
                record: record.clone(),
            });
        }
    }

    /// A delivery and its attempts.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<DeliveryView> {
        let delivery = self.inner.find(tenant, id).await?;
        let stored = delivery.clone();
        let attempts_made = self
            .inner
            .db
            .run(move |s| {
                stored
                    .attempt_ids
                    .iter()
                    .filter_map(|a| {
                        s.activation(&stored.tenant_id, &stored.callback_id, a)
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(DeliveryView {
            delivery,
            attempts_made,
        })
    }

    /// A page of a tenant's deliveries, newest first.
    pub async fn list(
        &self,
        tenant: &str,
        filter: DeliveryFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<crate::callbacks::Page<Delivery>> {
        let t = tenant.to_string();
        let mut items = self
            .inner
            .db
            .run(move |s| s.deliveries(&t, &filter, cursor.as_deref(), limit + 1))
            .await?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|d| d.id.clone())
        });
        Ok(crate::callbacks::Page {
            items,
            next_cursor: next_cursor.flatten(),
        })
    }

    /// A manual replay: one new attempt now, never rescheduled, whatever
    /// its outcome. A delivery still pending is already on its way.
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<DeliveryView> {
        let delivery = self.inner.find(tenant, id).await?;
        if delivery.status == DeliveryStatus::Pending {
            return Err(Error::Conflict {
                code: "delivery_pending",
                message: format!(
                    "delivery `{id}` is pending: its next attempt is already scheduled"
                ),
            });
        }
        if !self.inner.claim(&delivery.id) {
            return Err(Error::Conflict {
                code: "delivery_in_flight",
                message: format!("delivery `{id}` is being attempted right now"),
            });
        }
        let result = self
            .inner
            .attempt(
                Work {
                    delivery,
                    record: None,
                },
                true,
            )
            .await;
        self.inner.release(id);
        result?;
        self.get(tenant, id).await
    }

    /// Re-delivers a callback's failed deliveries created between `since`
    /// and `until` (ms since the epoch), each with a fresh round of retries.
    pub async fn replay(
        &self,
        tenant: &str,
        callback_id: &str,
        since: u64,
        until: u64,
    ) -> Result<Vec<String>> {
        self.inner.callbacks.get(tenant, callback_id).await?;
        let (t, filter) = (
            tenant.to_string(),
            DeliveryFilter {
                callback_id: Some(callback_id.to_string()),
                status: Some(DeliveryStatus::Failed),
            },
        );
        let failed = self
            .inner
            .db
            .run(move |s| s.deliveries(&t, &filter, None, usize::MAX))
            .await?;
        let now = now_ms();
        let mut replayed = Vec::new();
        for mut delivery in failed
            .into_iter()
            .filter(|d| (since..=until).contains(&d.created_at))
        {
            delivery.status = DeliveryStatus::Pending;
            delivery.round_start = delivery.attempts;
            delivery.next_attempt_at = Some(now);
            delivery.updated_at = now;
            let stored = delivery.clone();
            self.inner
                .db
                .write(move |s| s.update_deliveries(&[(stored, None)]))
                .await?;
            replayed.push(delivery.id.clone());
            self.accepted(vec![delivery], None);
        }
        Ok(replayed)
    }
}

/// An attempt's slot in the scheduler, given back when the attempt ends,
/// however it ends, so that the next due delivery can start.
struct Slot {
    inner: Arc<Inner>,
    tenant: String,
    callback: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.slots().release(&self.tenant, &self.callback);
        self.inner.released.notify_waiters();
        self.inner.dispatch();
    }
}

impl Inner {
    /// Queues a delivery for its next attempt time.
    fn schedule(self: &Arc<Self>, work: Work) {
        let wait = work
            .delivery
            .next_attempt_at
            .map_or(0, |at| at.saturating_sub(now_ms()));
        if wait == 0 {
            self.enqueue(work);
            return;
        }
        let inner = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Some(inner) = inner.upgrade() {
                inner.enqueue(work);
            }
        });
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Scheduler<Work>> {
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a due delivery to the scheduler, and starts what it allows.
    fn enqueue(self: &Arc<Self>, work: Work) {
        let (tenant, callback) = (
            work.delivery.tenant_id.clone(),
            work.delivery.callback_id.clone(),
        );
        self.slots().push(&tenant, &callback, work);
        self.dispatch();
    }

    /// Starts every attempt the scheduler grants a slot to.
    fn dispatch(self: &Arc<Self>) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let granted: Vec<Work> = {
            let mut slots = self.slots();
            std::iter::from_fn(|| slots.next()).collect()
        };
        for work in granted {
            let slot = Slot {
                inner: self.clone(),
                tenant: work.delivery.tenant_id.clone(),
                callback: work.delivery.callback_id.clone(),
            };
            tokio::spawn(async move { slot.inner.clone().run(work, slot).await });
        }
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Delivery> {
        let (t, key) = (tenant.to_string(), id.to_string());
        self.db
            .run(move |s| s.delivery(&t, &key))
            .await?
            .ok_or_else(|| Error::not_found("delivery", id))
    }

    /// Marks a delivery as being attempted; false if it already is.
    fn claim(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
    }

    fn release(&self, id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// A granted attempt, holding its slot until it is done: attempts the
    /// delivery unless another attempt has it.
    async fn run(self: Arc<Self>, work: Work, _slot: Slot) {
        let id = work.delivery.id.clone();
        if work.delivery.status != DeliveryStatus::Pending || !self.claim(&id) {
            return;
        }
        if let Err(err) = self.attempt(work, false).await {
            tracing::error!(delivery = %id, "delivery attempt failed: {err}");
        }
        self.release(&id);
    }

    /// Makes one attempt and records it; schedules the next one if due.
    async fn attempt(self: &Arc<Self>, work: Work, manual: bool) -> Result<()> {
        let was_pending = work.delivery.status == DeliveryStatus::Pending;
        let (outcome, record) = attempt::make(self, work.delivery, work.record, manual).await?;
        let (updated, activation) = (outcome.delivery, outcome.activation);
        let finished = updated.status != DeliveryStatus::Pending;
        // What a finished delivery does to its callback (a disable, say) is
        // recorded first, so whoever sees the delivery finished sees that too.
        let settled = if finished {
            self.settle(&updated, outcome.gone).await
        } else {
            Ok(())
        };
        // Only a delivery with another attempt to come is needed after it
        // is recorded.
        let next = (!finished).then(|| updated.clone());
        // Written behind: a crash before it lands only means the delivery
        // is still pending at restart and is sent again (at least once).
        self.db.record_delivery(updated, Some(activation));
        metrics::counter!("hookgate_delivery_attempts_total", "outcome" => outcome.label)
            .increment(1);
        match next {
            Some(delivery) => self.schedule(Work { delivery, record }),
            None if was_pending => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                self.gauge();
            }
            None => {}
        }
        settled
    }

    /// Tracks a callback's run of failures, and disables it when the
    /// receiver unsubscribed (410) or it has failed past the threshold.
    async fn settle(&self, delivery: &Delivery, gone: Option<String>) -> Result<()> {
        if let Some(reason) = gone {
            return self
                .callbacks
                .disable(&delivery.tenant_id, &delivery.callback_id, &reason)
                .await;
        }
        if !matches!(
            delivery.status,
            DeliveryStatus::Succeeded | DeliveryStatus::Failed
        ) {
            return Ok(());
        }
        let id = delivery.callback_id.clone();
        let failed = delivery.status == DeliveryStatus::Failed;
        let now = now_ms();
        let known = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let before = match known {
            Some(health) => health,
            None => {
                let key = id.clone();
                self.db.run(move |s| s.health(&key)).await?
            }
        };
        let mut health = before.clone();
        if failed {
            health.consecutive_failures += 1;
            health.failing_since.get_or_insert(now);
        } else {
            health = Health::default();
        }
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), health.clone());
        // A success after successes changes nothing worth a write.
        if health != before {
            let stored = health.clone();
            self.db
                .submit("callback health", move |s| s.set_health(&id, &stored));
        }
        let hours = health
            .failing_since
            .map_or(0, |since| now.saturating_sub(since) / 3_600_000);
        let reason = if health.consecutive_failures >= self.config.disable_after_failures {
            Some(format!(
                "disabled after {} failed deliveries in a row",
                health.consecutive_failures
            ))
        } else if failed && hours >= self.config.disable_after_hours {
            Some(format!("disabled after failing for {hours} hours"))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.callbacks
                    .disable(&delivery.tenant_id, &delivery.callback_id, &reason)
                    .await
            }
            None => Ok(()),
        }
    }

    fn gauge(&self) {
        metrics::gauge!("hookgate_delivery_pending")
            .set(self.pending.load(Ordering::SeqCst) as f64);
    }
}
