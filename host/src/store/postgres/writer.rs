//! Group commit on PostgreSQL: concurrent writes share a transaction.
//!
//! Two lanes, each one transaction at a time, taking everything queued
//! while the previous one ran:
//! - **durable**: after-events and their deliveries, answered once the
//!   commit is on disk (`synchronous_commit` as the server has it);
//! - **behind**: gate history and attempt results, which a crash may lose
//!   (the delivery is then attempted again), committed without waiting for
//!   the disk.
//!
//! Batching is what makes intake fast: one commit, and one disk flush, for
//! every event that arrived while the last one was being made.
//!
//! A completion may hand its lease over (see `store::Handover`): the same
//! transaction leases the callback's next due delivery to the same owner,
//! so that one busy callback's slots go from attempt to attempt without a
//! claim between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use tokio::sync::{mpsc, oneshot, watch};

use super::{db, decode, encode, notify, record};
use crate::model::{Activation, Delivery, EventRecord, HourCount};
use crate::store::{
    Change, Changes, Claimed, Completed, DeliveryWrite, EventWrite, Handover, StoreError,
    StoreResult,
};

/// Writes taken at once by one transaction, at most.
const BATCH: usize = 512;

type EventReply = oneshot::Sender<StoreResult<Option<EventRecord>>>;

/// An attempt to record, as `DeliveryRepo::complete` takes it.
struct Completion {
    owner: String,
    write: DeliveryWrite,
    handover: Option<Handover>,
}

enum Job {
    Event(Box<EventWrite>, Option<EventReply>),
    Complete(Box<Completion>, oneshot::Sender<StoreResult<Completed>>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The two lanes.
pub(super) struct Writer {
    durable: mpsc::UnboundedSender<Job>,
    behind: mpsc::UnboundedSender<Job>,
    /// Writes queued on the behind lane, and how many it has done, so that
    /// reads can wait for the history written behind answers.
    queued: AtomicU64,
    done: watch::Receiver<u64>,
}

impl Writer {
    pub(super) fn start(pool: PgPool, changes: Changes, origin: String) -> Self {
        let (durable, durable_rx) = mpsc::unbounded_channel();
        let (behind, behind_rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(0);
        let lane = Arc::new(Lane {
            pool,
            changes,
            origin,
        });
        tokio::spawn(lane.clone().run(durable_rx, true, None));
        tokio::spawn(lane.run(behind_rx, false, Some(done_tx)));
        Writer {
            durable,
            behind,
            queued: AtomicU64::new(0),
            done,
        }
    }

    /// Stores an event with what it caused; see `EventRepo::insert_event`.
    pub(super) async fn event(
        &self,
        write: EventWrite,
        durable: bool,
    ) -> StoreResult<Option<EventRecord>> {
        let (reply, answer) = oneshot::channel();
        let lane = if durable { &self.durable } else { &self.behind };
        lane.send(Job::Event(Box::new(write), Some(reply)))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores an event's history behind the answer.
    pub(super) fn record(&self, write: EventWrite) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.behind.send(Job::Event(Box::new(write), None)).is_err() {
            tracing::error!("cannot store an event's history: storage is closed");
        }
    }

    /// Waits until the history this node wrote behind so far is stored,
    /// so that a read sees it.
    pub(super) async fn settle(&self) {
        let target = self.queued.load(Ordering::SeqCst);
        if *self.done.borrow() >= target {
            return;
        }
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done >= target).await;
    }

    /// Records an attempt as `owner`; see `DeliveryRepo::complete`. A
    /// delivery handed over comes without its event.
    pub(super) async fn complete(
        &self,
        owner: &str,
        write: DeliveryWrite,
        handover: Option<Handover>,
    ) -> StoreResult<Completed> {
        let (reply, answer) = oneshot::channel();
        let completion = Completion {
            owner: owner.to_string(),
            write,
            handover,
        };
        self.behind
            .send(Job::Complete(Box::new(completion), reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets both lanes finish what is queued.
    pub(super) async fn close(&self) {
        for lane in [&self.durable, &self.behind] {
            let (done, finished) = oneshot::channel();
            if lane.send(Job::Flush(done)).is_ok() {
                let _ = finished.await;
            }
        }
    }
}

struct Lane {
    pool: PgPool,
    changes: Changes,
    origin: String,
}

impl Lane {
    async fn run(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Job>,
        durable: bool,
        done: Option<watch::Sender<u64>>,
    ) {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let history = batch
                .iter()
                .filter(|job| matches!(job, Job::Event(_, None)))
                .count() as u64;
            self.commit(batch, durable).await;
            if let Some(done) = &done {
                done.send_modify(|n| *n += history);
            }
        }
    }

    /// One transaction for the whole batch; everyone waiting hears how it
    /// went.
    async fn commit(&self, batch: Vec<Job>, durable: bool) {
        let mut events = Vec::new();
        let mut completions = Vec::new();
        let mut flushes = Vec::new();
        for job in batch {
            match job {
                Job::Event(write, reply) => events.push((*write, reply)),
                Job::Complete(completion, reply) => completions.push((*completion, reply)),
                Job::Flush(done) => flushes.push(done),
            }
        }
        let writes: Vec<&EventWrite> = events.iter().map(|(w, _)| w).collect();
        let finished: Vec<&Completion> = completions.iter().map(|(c, _)| c).collect();
        let outcome = if writes.is_empty() && finished.is_empty() {
            Ok((Vec::new(), Vec::new(), false))
        } else {
            self.transaction(&writes, &finished, durable).await
        };
        for done in flushes {
            let _ = done.send(());
        }
        match outcome {
            Ok((answers, completed, due)) => {
                if due {
                    self.changes.publish(&Change::DeliveriesDue);
                }
                for ((_, reply), answer) in events.into_iter().zip(answers) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(answer));
                    }
                }
                for ((_, reply), completed) in completions.into_iter().zip(completed) {
                    let _ = reply.send(Ok(completed));
                }
            }
            Err(err) => {
                tracing::error!(
                    events = events.len(),
                    attempts = completions.len(),
                    "cannot store a batch of writes: {err}"
                );
                let message = err.to_string();
                let failure = || match &err {
                    StoreError::Unavailable(_) => StoreError::Unavailable(message.clone()),
                    _ => StoreError::Backend(message.clone()),
                };
                for (_, reply) in events {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(failure()));
                    }
                }
                for (_, reply) in completions {
                    let _ = reply.send(Err(failure()));
                }
            }
        }
    }

    /// Returns each event's answer (the existing record for a repeated
    /// client id), what each completion did, and whether deliveries fell
    /// due.
    async fn transaction(
        &self,
        events: &[&EventWrite],
        completions: &[&Completion],
        durable: bool,
    ) -> StoreResult<(Vec<Option<EventRecord>>, Vec<Completed>, bool)> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if !durable {
            // A handover finds rows as the claim does, by `ctid`: only
            // nested loops keep that a lookup (see `CLAIM`).
            sqlx::query(
                "SELECT set_config('synchronous_commit', 'off', true), \
                 set_config('enable_hashjoin', 'off', true), \
                 set_config('enable_mergejoin', 'off', true)",
            )
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let (answers, due) = insert_events(&mut tx, events).await?;
        let held = complete(&mut tx, completions).await?;
        let completed = hand_over(&mut tx, completions, held).await?;
        if due {
            notify(&mut *tx, &self.origin, &Change::DeliveriesDue).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok((answers, completed, due))
    }
}

/// Inserts events, skipping repeated client ids, then the deliveries and
/// activations of those inserted.
async fn insert_events(
    tx: &mut PgConnection,
    writes: &[&EventWrite],
) -> StoreResult<(Vec<Option<EventRecord>>, bool)> {
    if writes.is_empty() {
        return Ok((Vec::new(), false));
    }
    let tenants: Vec<&str> = writes.iter().map(|w| w.record.tenant_id.as_str()).collect();
    let ids: Vec<&str> = writes.iter().map(|w| w.record.event.id.as_str()).collect();
    let ats: Vec<i64> = writes
        .iter()
        .map(|w| w.record.event.timestamp_ms as i64)
        .collect();
    let records: Vec<String> = writes.iter().map(|w| encode(&*w.record)).collect();
    let inserted: Vec<(String, String)> = sqlx::query(
        "INSERT INTO events (tenant_id, id, at, record) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[]) \
         ON CONFLICT (tenant_id, id) DO NOTHING RETURNING tenant_id, id",
    )
    .bind(&tenants)
    .bind(&ids)
    .bind(&ats)
    .bind(&records)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(db)?;

    // Of writes sharing an id, only the first inserted anything; the
    // others, and repeats of stored events, answer with the stored record.
    let mut new = std::collections::HashSet::new();
    let fresh: Vec<bool> = writes
        .iter()
        .map(|w| {
            let key = (w.record.tenant_id.clone(), w.record.event.id.clone());
            inserted.contains(&key) && new.insert(key)
        })
        .collect();
    let mut answers = Vec::with_capacity(writes.len());
    for (write, fresh) in writes.iter().zip(&fresh) {
        answers.push(if *fresh {
            None
        } else {
            let row = sqlx::query("SELECT record FROM events WHERE tenant_id = $1 AND id = $2")
                .bind(&write.record.tenant_id)
                .bind(&write.record.event.id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            let text: String = row.try_get("record").map_err(db)?;
            Some(decode("event", &text)?)
        });
    }

    let deliveries: Vec<_> = writes
        .iter()
        .zip(&fresh)
        .filter(|(_, fresh)| **fresh)
        .flat_map(|(w, _)| &w.deliveries)
        .collect();
    if !deliveries.is_empty() {
        sqlx::query(
            "INSERT INTO deliveries \
             (tenant_id, id, callback_id, status, created_at, due_at, record) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                  $5::int8[], $6::int8[], $7::text[])",
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.tenant_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .bind(
            deliveries
                .iter()
                .map(|d| d.callback_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.created_at as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.next_attempt_at.map(|at| at as i64))
                .collect::<Vec<_>>(),
        )
        .bind(deliveries.iter().map(encode).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    let activations: Vec<&Activation> = writes
        .iter()
        .zip(&fresh)
        .filter(|(_, fresh)| **fresh)
        .flat_map(|(w, _)| &w.activations)
        .collect();
    insert_activations(tx, &activations).await?;
    Ok((answers, !deliveries.is_empty()))
}

/// Records attempts: each delivery's new state where its owner still holds
/// the lease, and every activation.
async fn complete(tx: &mut PgConnection, completions: &[&Completion]) -> StoreResult<Vec<bool>> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let deliveries: Vec<&Delivery> = completions.iter().map(|c| &c.write.0).collect();
    let applied: Vec<(String, String, String)> = sqlx::query(
        "UPDATE deliveries d SET status = u.status, due_at = u.due_at, record = u.record, \
             lease_owner = NULL, lease_until = NULL \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[]) \
             AS u(tenant_id, id, status, due_at, record, owner) \
         WHERE d.tenant_id = u.tenant_id AND d.id = u.id AND d.lease_owner = u.owner \
         RETURNING d.tenant_id, d.id, u.owner",
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.tenant_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
    .bind(
        deliveries
            .iter()
            .map(|d| d.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        deliveries
            .iter()
            .map(|d| d.next_attempt_at.map(|at| at as i64))
            .collect::<Vec<_>>(),
    )
    .bind(deliveries.iter().map(|d| encode(*d)).collect::<Vec<_>>())
    .bind(
        completions
            .iter()
            .map(|c| c.owner.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(db)?;
    let activations: Vec<&Activation> = completions
        .iter()
        .filter_map(|c| c.write.1.as_ref())
        .collect();
    insert_activations(tx, &activations).await?;
    // A row is updated once however many completions name it: only the
    // owner whose completion applied held the lease.
    let held: Vec<bool> = completions
        .iter()
        .map(|c| {
            let d = &c.write.0;
            applied.contains(&(d.tenant_id.clone(), d.id.clone(), c.owner.clone()))
        })
        .collect();
    let counted = completions
        .iter()
        .zip(&held)
        .filter(|(_, held)| **held)
        .filter_map(|(c, _)| c.write.1.as_ref());
    count_hours(tx, counted).await?;
    Ok(held)
}

/// Leases to each completion that asks for a handover, and held its lease,
/// its callback's earliest due delivery that no one holds. The k-th
/// completion of a callback is matched with the callback's k-th due
/// delivery before the rows are locked, so no row goes to two of them; a
/// row another statement holds is skipped, and its completion gets none.
const HAND_OVER: &str = "
WITH wanted AS (
    SELECT w.callback_id, w.owner, w.until, w.ord,
           row_number() OVER (PARTITION BY w.callback_id ORDER BY w.ord) AS n
    FROM UNNEST($1::text[], $2::text[], $3::int8[])
        WITH ORDINALITY AS w(callback_id, owner, until, ord)
), counts AS (
    SELECT callback_id, count(*) AS k FROM wanted GROUP BY callback_id
), candidates AS (
    SELECT c.tid, c.callback_id,
           row_number() OVER (PARTITION BY c.callback_id ORDER BY c.due_at) AS n
    FROM counts w CROSS JOIN LATERAL (
        SELECT d.ctid AS tid, d.callback_id, d.due_at FROM deliveries d
        WHERE d.callback_id = w.callback_id AND d.status = 'pending'
          AND d.due_at <= $4 AND (d.lease_until IS NULL OR d.lease_until <= $4)
        ORDER BY d.due_at LIMIT w.k
    ) c
), picked AS (
    SELECT l.tid, w.owner, w.until, w.ord
    FROM candidates c JOIN wanted w ON w.callback_id = c.callback_id AND w.n = c.n
    CROSS JOIN LATERAL (
        SELECT d.ctid AS tid FROM deliveries d
        WHERE d.ctid = c.tid
          AND d.status = 'pending' AND d.due_at <= $4
          AND (d.lease_until IS NULL OR d.lease_until <= $4)
        FOR UPDATE SKIP LOCKED
    ) l
)
UPDATE deliveries d SET lease_owner = picked.owner, lease_until = picked.until
FROM picked WHERE d.ctid = picked.tid
RETURNING d.record, d.lease_until, picked.ord";

/// What each completion did: whether it held its lease, and the delivery
/// handed over to it, if any (see `HAND_OVER`).
async fn hand_over(
    tx: &mut PgConnection,
    completions: &[&Completion],
    held: Vec<bool>,
) -> StoreResult<Vec<Completed>> {
    let mut completed: Vec<Completed> = held
        .into_iter()
        .map(|held| Completed { held, next: None })
        .collect();
    let wanted: Vec<(usize, &Completion, Handover)> = completions
        .iter()
        .enumerate()
        .filter(|(i, _)| completed[*i].held)
        .filter_map(|(i, c)| Some((i, *c, c.handover?)))
        .collect();
    let Some(now) = wanted.iter().map(|(_, _, h)| h.now).min() else {
        return Ok(completed);
    };
    let rows = sqlx::query(HAND_OVER)
        .bind(
            wanted
                .iter()
                .map(|(_, c, _)| c.write.0.callback_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            wanted
                .iter()
                .map(|(_, c, _)| c.owner.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            wanted
                .iter()
                .map(|(_, _, h)| (h.now + h.lease_ms) as i64)
                .collect::<Vec<_>>(),
        )
        .bind(now as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    for row in &rows {
        let ord: i64 = row.try_get("ord").map_err(db)?;
        let lease_until: i64 = row.try_get("lease_until").map_err(db)?;
        let delivery = match record(row) {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::error!("skipping a delivery that cannot be read: {err}");
                continue;
            }
        };
        let (at, _, _) = wanted[ord as usize - 1];
        completed[at].next = Some(Claimed {
            delivery,
            event: None,
            lease_until: lease_until as u64,
        });
    }
    Ok(completed)
}

/// Adds attempts to their callbacks' hours, one row per callback and hour
/// however many attempts share it.
async fn count_hours(
    tx: &mut PgConnection,
    attempts: impl Iterator<Item = &Activation>,
) -> StoreResult<()> {
    let counted = HourCount::tally(attempts.filter_map(|attempt| {
        let add = HourCount::of(attempt)?;
        Some(((attempt.callback_id.as_str(), add.at), add))
    }));
    if counted.is_empty() {
        return Ok(());
    }
    let callbacks: Vec<&str> = counted.keys().map(|(callback, _)| *callback).collect();
    let hours: Vec<i64> = counted.values().map(|c| c.at as i64).collect();
    let succeeded: Vec<i64> = counted.values().map(|c| c.succeeded as i64).collect();
    let failed: Vec<i64> = counted.values().map(|c| c.failed as i64).collect();
    sqlx::query(
        "INSERT INTO hour_counts (callback_id, hour, succeeded, failed) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[]) \
         ON CONFLICT (callback_id, hour) DO UPDATE SET \
             succeeded = hour_counts.succeeded + excluded.succeeded, \
             failed = hour_counts.failed + excluded.failed",
    )
    .bind(callbacks)
    .bind(hours)
    .bind(succeeded)
    .bind(failed)
    .execute(&mut *tx)
    .await
    .map(drop)
    .map_err(db)
}

async fn insert_activations(tx: &mut PgConnection, activations: &[&Activation]) -> StoreResult<()> {
    if activations.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO activations (tenant_id, callback_id, id, at, record) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(
        activations
            .iter()
            .map(|a| a.tenant_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        activations
            .iter()
            .map(|a| a.callback_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        activations
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(activations.iter().map(|a| a.at as i64).collect::<Vec<_>>())
    .bind(activations.iter().map(|a| encode(*a)).collect::<Vec<_>>())
    .execute(tx)
    .await
    .map(drop)
    .map_err(db)
}
