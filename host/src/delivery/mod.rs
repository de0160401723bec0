//! After-event delivery: every pending delivery is POSTed, signed, to its
//! callback's URL, retried on failure, and recorded attempt by attempt.
//!
//! Deliveries wait in the store's queue, due at a stored time. A worker
//! claims due ones with a lease, as many as its free slots allow (see
//! `scheduler` for how slots are shared between tenants), and attempts
//! each at once. An attempt's result is completed only by the lease's
//! owner; a retry is simply due again later. As it records the result, a
//! slot whose callback has more due may take the next one at once (a
//! handover, see `store::Handover`), a few times in a row before it goes
//! back to the pool, where every node claims. A node that stops without
//! completing lets its leases expire, and any node claims the deliveries
//! again, so delivery is at least once; receivers deduplicate on
//! `webhook-id`, the delivery id.
//!
//! Layout: this module claims and dispatches; `scheduler` sizes the
//! claims; `attempt` makes one attempt; `retry` decides what a result
//! means; `health` tracks each callback's run of failures.

mod attempt;
mod health;
mod retry;
mod scheduler;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};

use self::scheduler::Slots;
use crate::clock::SharedClock;
use crate::config::DeliveryConfig;
use crate::domain::callbacks::Callbacks;
use crate::domain::plugins::Plugins;
use crate::domain::{Error, Page, Result};
use crate::model::{Activation, Delivery, DeliveryStatus};
use crate::outbound::HttpClient;
use crate::store::{Change, Claim, ClaimOne, Claimed, DeliveryFilter, Handover, Store};

/// A lease lasts this much longer than the attempt's timeout: time for the
/// plugin, signing, and recording the result.
const LEASE_MARGIN_MS: u64 = 5_000;
/// The worker looks at the queue at least this often, whatever it was
/// told: leases of vanished owners end, and other nodes add work.
const POLL: Duration = Duration::from_secs(1);
/// A slot asks for the callback's next delivery with at most this many
/// attempts in a row, then empties and goes back to the pool, where other
/// nodes claim too: one node does not keep a busy callback to itself. Each
/// return costs a claim, so this is many: a busy callback's slot still
/// returns within a fraction of a second.
const HANDOVERS: usize = 64;
/// A lease is handed over, extended or attempted on only with at least
/// this long still to run, so that it is still live when that commits or
/// the attempt starts: a claim may count an ended lease's slot as free.
const LIVE_MARGIN_MS: u64 = 1_000;
/// A delivery is attempted only if its lease outlasts the attempt's
/// timeout by this much, time for the plugin, signing and recording; it is
/// extended first otherwise.
const ATTEMPT_MARGIN_MS: u64 = 2_000;
/// How many deliveries of one callback a slot takes at most. Its attempts
/// are made one after another, each recorded while the next is made, so a
/// slot goes on while its last record is written: about as long as a few
/// attempts to a fast receiver, and longer while intake keeps the database
/// busy. 16 delivered about a seventh more than 8 on one PostgreSQL node;
/// 32 no more than 16 (docs/architecture.md).
const SLOT_DEPTH: usize = 16;

/// The delivery engine. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    callbacks: Callbacks,
    plugins: Plugins,
    http: HttpClient,
    config: DeliveryConfig,
    clock: SharedClock,
    /// This node's name on its leases.
    owner: String,
    slots: Mutex<Slots>,
    /// Told when deliveries may be due: new ones, or a freed slot.
    wake: Arc<Notify>,
    /// Told whenever an attempt ends.
    released: Notify,
    /// Set at shutdown: no attempt starts after it.
    stopping: AtomicBool,
    /// Callbacks known to have no run of failures.
    healthy: health::Healthy,
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
    /// Starts a worker that claims deliveries from `store` as `owner`, a
    /// name unique to this node. The pending gauge is set first, so that
    /// it is right from the first scrape, not from the first poll.
    pub async fn start(
        store: Store,
        callbacks: Callbacks,
        plugins: Plugins,
        http: HttpClient,
        config: DeliveryConfig,
        clock: SharedClock,
        owner: String,
    ) -> Self {
        if let Ok(pending) = store.deliveries().pending_count().await {
            metrics::gauge!("hookgate_delivery_pending").set(pending as f64);
        }
        let inner = Arc::new(Inner {
            slots: Mutex::new(Slots::new(config.concurrency)),
            healthy: health::Healthy::following(store.changes()),
            store,
            callbacks,
            plugins,
            http,
            config,
            clock,
            owner,
            wake: Arc::new(Notify::new()),
            released: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let listening = Arc::downgrade(&inner);
        inner.store.changes().subscribe(move |change| {
            if matches!(change, Change::DeliveriesDue | Change::Resync)
                && let Some(inner) = listening.upgrade()
            {
                inner.wake.notify_one();
            }
        });
        tokio::spawn(work(Arc::downgrade(&inner)));
        Deliverer { inner }
    }

    /// Starts no more attempts: the first step of a graceful shutdown.
    /// Deliveries not yet attempted stay pending in the store.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Waits until the attempts in flight have finished, or `deadline`
    /// passes; true if they all finished. Their results are recorded by
    /// then, so closing the store keeps them.
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

    /// A delivery and its attempts.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<DeliveryView> {
        let delivery = self.inner.find(tenant, id).await?;
        let attempts_made = self
            .inner
            .store
            .deliveries()
            .activations_by_id(tenant, &delivery.callback_id, &delivery.attempt_ids)
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
        filter: &DeliveryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let items = self
            .inner
            .store
            .deliveries()
            .deliveries(tenant, filter, cursor, limit + 1)
            .await?;
        Ok(Page::of(items, limit, |d| d.id.clone()))
    }

    /// A manual replay: one new attempt now, never rescheduled, whatever
    /// its outcome. A delivery still pending is already on its way.
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<DeliveryView> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let lease_ms = inner.config.timeout_ms + LEASE_MARGIN_MS;
        let claimed = match inner
            .store
            .deliveries()
            .claim_one(&inner.owner, tenant, id, now, lease_ms)
            .await?
        {
            ClaimOne::Claimed(claimed) => claimed,
            ClaimOne::Pending => {
                return Err(Error::Conflict {
                    code: "delivery_pending",
                    message: format!(
                        "delivery `{id}` is pending: its next attempt is already scheduled"
                    ),
                });
            }
            ClaimOne::Leased => {
                return Err(Error::Conflict {
                    code: "delivery_in_flight",
                    message: format!("delivery `{id}` is being attempted right now"),
                });
            }
            ClaimOne::NotFound => return Err(Error::not_found("delivery", id)),
        };
        if let Some(made) = inner.attempt(*claimed, true).await? {
            inner.clone().record(made, false).await?;
        }
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
        let now = self.inner.clock.now_ms();
        Ok(self
            .inner
            .store
            .deliveries()
            .replay(tenant, callback_id, since, until, now)
            .await?)
    }
}

/// The worker: claims what is due and starts it, then waits until told,
/// until the next delivery falls due, or for the poll interval. Under load
/// it is told of every new event, so a round costs little: the pending
/// gauge, for one, is set on the poll only.
async fn work(inner: std::sync::Weak<Inner>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if strong.stopping.load(Ordering::SeqCst) {
            return;
        }
        let wake = strong.wake.clone();
        let woken = wake.notified();
        let full = match strong.dispatch().await {
            Ok(full) => full,
            Err(err) => {
                tracing::error!("claiming deliveries failed: {err}");
                false
            }
        };
        // A delivery already due but not claimed waits for a slot, of the
        // node or of its callback; a finishing attempt wakes the worker.
        // Only a time still to come is worth sleeping until, and only when
        // a slot is free.
        let next = if full {
            None
        } else {
            let now = strong.clock.now_ms();
            strong.store.deliveries().next_due(now).await.ok().flatten()
        };
        let due: Pin<Box<dyn Future<Output = ()> + Send>> = match next {
            Some(at) => strong.clock.sleep_until(at),
            None => Box::pin(std::future::pending()),
        };
        let store = strong.store.clone();
        drop(strong);
        tokio::select! {
            () = woken => {}
            () = due => {}
            _ = poll.tick() => {
                if let Ok(pending) = store.deliveries().pending_count().await {
                    metrics::gauge!("hookgate_delivery_pending").set(pending as f64);
                }
            }
        }
    }
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims as many slots as are free, the reserve only for tenants below
    /// their share, and starts each. True if every slot asked for was
    /// filled.
    async fn dispatch(self: &Arc<Self>) -> Result<bool> {
        let open = self.slots().open();
        let mut claimed = self.claim(open, &[]).await?;
        let mut full = claimed.len() == open;
        if full {
            let (reserved, at_share) = self.slots().reserved();
            let more = self.claim(reserved, &at_share).await?;
            full = more.len() == reserved;
            claimed.extend(more);
        }
        for slot in claimed {
            tokio::spawn(self.clone().run(slot));
        }
        Ok(full)
    }

    /// Claims up to `limit` slots, taking one of this node's for each.
    async fn claim(&self, limit: usize, exclude: &[String]) -> Result<Vec<Vec<Claimed>>> {
        if limit == 0 || self.stopping.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let claimed = self
            .store
            .deliveries()
            .claim(Claim {
                owner: &self.owner,
                now: self.clock.now_ms(),
                lease_ms: self.config.timeout_ms + LEASE_MARGIN_MS,
                limit,
                depth: SLOT_DEPTH,
                per_callback: self.config.per_callback_concurrency,
                exclude_tenants: exclude,
            })
            .await?;
        let mut slots = self.slots();
        for slot in &claimed {
            slots.take(&slot[0].delivery.tenant_id);
        }
        Ok(claimed)
    }

    /// A slot: its deliveries' attempts one after another, and then those
    /// of the deliveries handed over to it. Each attempt is recorded while
    /// the next one is made, so with more than one in hand the slot never
    /// waits for the database between attempts.
    async fn run(self: Arc<Self>, slot: Vec<Claimed>) {
        let tenant = slot[0].delivery.tenant_id.clone();
        let mut held: VecDeque<Claimed> = slot.into();
        let mut recording = JoinSet::new();
        let mut attempts = 0;
        loop {
            while let Some(recorded) = recording.try_join_next() {
                hold(&mut held, recorded);
            }
            let Some(claimed) = held.pop_front() else {
                match recording.join_next().await {
                    Some(recorded) => {
                        hold(&mut held, recorded);
                        continue;
                    }
                    None => break,
                }
            };
            // No attempt starts once the node stops, nor for a tenant
            // above its share once it made one: what the slot holds goes
            // back, and so does what is still handed over to it, for the
            // others to take.
            if self.stopping.load(Ordering::SeqCst)
                || (attempts > 0 && !self.slots().may_keep(&tenant))
            {
                held.push_front(claimed);
                self.release(&mut held).await;
                continue;
            }
            let id = claimed.delivery.id.clone();
            let keep = attempts < HANDOVERS && self.slots().may_keep(&tenant);
            attempts += 1;
            match self.attempt(claimed, false).await {
                Ok(Some(made)) => {
                    recording.spawn(self.clone().record(made, keep));
                }
                Ok(None) => {}
                Err(err) => tracing::error!(delivery = %id, "delivery attempt failed: {err}"),
            }
        }

        self.slots().give_back(&tenant);
        self.released.notify_waiters();
        // The worker fills the freed slot: slots freed while it claims are
        // filled together, in one claim.
        self.wake.notify_one();
    }

    /// Gives back the leases of deliveries a slot holds unattempted.
    async fn release(&self, held: &mut VecDeque<Claimed>) {
        if held.is_empty() {
            return;
        }
        let owned: Vec<Claimed> = held.drain(..).collect();
        if let Err(err) = self.store.deliveries().release(&self.owner, &owned).await {
            tracing::warn!("cannot give {} leases back: {err}", owned.len());
        }
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Delivery> {
        self.store
            .deliveries()
            .delivery(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("delivery", id))
    }

    /// Makes one attempt, as the lease's owner, and settles what it did to
    /// its callback; `None` if the lease ended, or passed to another slot,
    /// while the delivery waited in its slot.
    async fn attempt(&self, claimed: Claimed, manual: bool) -> Result<Option<Made>> {
        let callback = self
            .callbacks
            .cached(&claimed.delivery.tenant_id, &claimed.delivery.callback_id)
            .await?;
        let timeout = callback.as_ref().and_then(|c| c.timeout_ms);
        let timeout = timeout.unwrap_or(self.config.timeout_ms);
        let Some(lease_until) = self.cover(&claimed, timeout).await? else {
            tracing::warn!(
                delivery = %claimed.delivery.id,
                "a delivery's lease ended before its attempt; it is left to the next claim"
            );
            return Ok(None);
        };
        let outcome =
            attempt::make(self, claimed.delivery, claimed.event, callback, manual).await?;
        let finished = outcome.delivery.status != DeliveryStatus::Pending;
        // What a finished delivery does to its callback (a disable, say) is
        // recorded first, so whoever sees the delivery finished sees that too.
        let settled = if finished {
            health::settle(self, &outcome.delivery, outcome.gone.clone()).await
        } else {
            Ok(())
        };
        metrics::counter!("hookgate_delivery_attempts_total", "outcome" => outcome.label)
            .increment(1);
        Ok(Some(Made {
            delivery: outcome.delivery,
            activation: outcome.activation,
            lease_until,
            settled,
        }))
    }

    /// Records an attempt, as the lease's owner. With `keep`, the lease
    /// passes to the callback's next due delivery, if any, which is
    /// returned.
    async fn record(self: Arc<Self>, made: Made, keep: bool) -> Result<Option<Claimed>> {
        let now = self.clock.now_ms();
        let handover = (keep
            && !self.stopping.load(Ordering::SeqCst)
            && made.lease_until > now + LIVE_MARGIN_MS)
            .then_some(Handover {
                now,
                lease_ms: self.config.timeout_ms + LEASE_MARGIN_MS,
            });
        let completed = self
            .store
            .deliveries()
            .complete(
                &self.owner,
                made.lease_until,
                (made.delivery, Some(made.activation)),
                handover,
            )
            .await?;
        if !completed.held {
            tracing::warn!("a delivery's lease passed to another owner during its attempt");
        }
        match (made.settled, completed.next) {
            (Ok(()), next) => Ok(next),
            // The attempt is recorded, and the next delivery is this
            // slot's to attempt: only the callback's health was not.
            (Err(err), Some(next)) => {
                tracing::error!("cannot record a callback's health: {err}");
                Ok(Some(next))
            }
            (Err(err), None) => Err(err),
        }
    }

    /// Makes sure the lease outlasts the attempt: a delivery may have
    /// waited in its slot behind others, and a callback's timeout may be
    /// longer than the default one that every lease covers. Returns when
    /// the lease ends, or `None` if it is no longer this slot's to attempt:
    /// it (nearly) ended, so a claim may count the slot free, or it was
    /// leased again.
    async fn cover(&self, claimed: &Claimed, timeout: u64) -> Result<Option<u64>> {
        let now = self.clock.now_ms();
        if claimed.lease_until <= now + LIVE_MARGIN_MS {
            return Ok(None);
        }
        if claimed.lease_until >= now + timeout + ATTEMPT_MARGIN_MS {
            return Ok(Some(claimed.lease_until));
        }
        let until = now + timeout + LEASE_MARGIN_MS;
        let held = self
            .store
            .deliveries()
            .extend_lease(&self.owner, claimed, now + LIVE_MARGIN_MS, until)
            .await?;
        Ok(held.then_some(until))
    }
}

/// An attempt made, to be recorded.
struct Made {
    delivery: Delivery,
    activation: Activation,
    /// When its lease ends.
    lease_until: u64,
    /// Whether what it did to its callback was recorded.
    settled: Result<()>,
}

/// Adds what a recorded attempt handed over to its slot, if anything. A
/// delivery whose lease ended while it waited in the slot may come back to
/// the same slot: it is held once, and attempted once.
fn hold(
    held: &mut VecDeque<Claimed>,
    recorded: std::result::Result<Result<Option<Claimed>>, JoinError>,
) {
    let next = match recorded {
        Ok(Ok(next)) => next,
        Ok(Err(err)) => {
            tracing::error!("cannot record a delivery attempt: {err}");
            None
        }
        Err(err) => {
            tracing::error!("recording a delivery attempt stopped: {err}");
            None
        }
    };
    if let Some(next) = next {
        match held.iter_mut().find(|c| c.delivery.id == next.delivery.id) {
            Some(waiting) => *waiting = next,
            None => held.push_back(next),
        }
    }
}
