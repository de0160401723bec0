//! Group commit on PostgreSQL: concurrent writes share a transaction.
//!
//! Two lanes, each one transaction at a time, taking everything queued
//! while the previous one ran:
//! - **durable**: after-events and their deliveries, answered once the
//!   commit is on disk (`synchronous_commit` as the server has it);
//! - **behind**: gate history and attempt results, which a crash may lose
//!   (the delivery is then attempted again), committed without waiting for
//!   the disk, on connections of its own that are set up for it.
//!
//! Batching is what makes intake fast: one commit, and one disk flush, for
//! every event that arrived while the last one was being made.
//!
//! Attempt results are on the way of a busy callback's next attempt, so a
//! batch of them is one statement (`COMPLETE`), and one round trip, with no
//! transaction block around it: every delivery's new state, the attempts'
//! history and hour counts, and the handovers (see `store::Handover`),
//! which lease each callback's next due delivery to the same owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};
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
    /// When it was queued: a handover's `now` is older by the time since.
    queued: Instant,
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
    /// Starts both lanes: the durable one on `pool`, the behind one on
    /// `behind_pool`, whose sessions do not wait for the disk.
    pub(super) fn start(
        pool: PgPool,
        behind_pool: PgPool,
        changes: Changes,
        origin: String,
    ) -> Self {
        let (durable, durable_rx) = mpsc::unbounded_channel();
        let (behind, behind_rx) = mpsc::unbounded_channel();
        let (done_tx, done) = watch::channel(0);
        let lane = |pool| Lane {
            pool,
            changes: changes.clone(),
            origin: origin.clone(),
        };
        tokio::spawn(lane(pool).run(durable_rx, None));
        tokio::spawn(lane(behind_pool).run(behind_rx, Some(done_tx)));
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
    /// delivery handed over comes with its event, unless it could not be
    /// read.
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
            queued: Instant::now(),
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
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>, done: Option<watch::Sender<u64>>) {
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
            self.commit(batch).await;
            if let Some(done) = &done {
                done.send_modify(|n| *n += history);
            }
        }
    }

    /// One transaction for the whole batch; everyone waiting hears how it
    /// went.
    async fn commit(&self, batch: Vec<Job>) {
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
            self.transaction(&writes, &finished).await
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
    ) -> StoreResult<(Vec<Option<EventRecord>>, Vec<Completed>, bool)> {
        if events.is_empty() {
            // One statement is atomic on its own.
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let completed = complete(&mut conn, completions).await?;
            return Ok((Vec::new(), completed, false));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let (answers, due) = insert_events(&mut tx, events).await?;
        let completed = complete(&mut tx, completions).await?;
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
        .bind(column(&deliveries, |d| d.tenant_id.as_str()))
        .bind(column(&deliveries, |d| d.id.as_str()))
        .bind(column(&deliveries, |d| d.callback_id.as_str()))
        .bind(column(&deliveries, |d| d.status.as_str()))
        .bind(column(&deliveries, |d| d.created_at as i64))
        .bind(column(&deliveries, |d| {
            d.next_attempt_at.map(|at| at as i64)
        }))
        .bind(column(&deliveries, encode))
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

/// Records a batch of attempts in one statement. Each delivery's new state
/// is stored where its owner still holds the lease; every attempt's
/// activation is stored; the attempts whose lease was held count into
/// their callback's hour, one row per callback and hour, in key order so
/// that concurrent batches lock those rows alike.
///
/// Then the handovers: each completion that held a lease still live as the
/// statement runs, and asks for one, gets its callback's earliest due
/// delivery that no one holds. (An ended lease's slot may be counted free
/// by a claim already.) The
/// k-th such completion of a callback is matched with the callback's k-th
/// due delivery before the rows are locked, so no row goes to two of them;
/// a row another statement holds is skipped, and its completion gets none.
/// Rows are found as the claim finds them, by `ctid` (see `CLAIM`), which
/// the lane's sessions keep a lookup by turning hash and merge joins off.
/// Every part reads the statement's one snapshot, where the deliveries
/// being completed are still leased; they are left out of the candidates
/// all the same, so that no row is changed twice.
///
/// Answers, for each completion that held its lease, its position
/// (counted from 1) and the delivery handed over to it, if any, with its
/// event: in a cluster most deliveries are of events another node took,
/// and reading them here costs no round trip of its own on the way to the
/// next attempt.
const COMPLETE: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[],
                         $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[],
                         $11::int8[], $18::int8[])
        WITH ORDINALITY AS u(tenant_id, id, status, due_at, record, owner, callback_id,
                             hour, succeeded, failed, until, live_at, ord)
), done AS (
    UPDATE deliveries d SET status = u.status, due_at = u.due_at, record = u.record,
        lease_owner = NULL, lease_until = NULL
    FROM input u
    WHERE d.tenant_id = u.tenant_id AND d.id = u.id AND d.lease_owner = u.owner
    RETURNING u.ord
), history AS (
    INSERT INTO activations (tenant_id, callback_id, id, at, record)
    SELECT * FROM UNNEST($12::text[], $13::text[], $14::text[], $15::int8[], $16::text[])
    ON CONFLICT DO NOTHING
), hours AS (
    INSERT INTO hour_counts (callback_id, hour, succeeded, failed)
    SELECT u.callback_id, u.hour, sum(u.succeeded)::int8, sum(u.failed)::int8
    FROM input u JOIN done ON done.ord = u.ord
    WHERE u.hour IS NOT NULL
    GROUP BY u.callback_id, u.hour ORDER BY u.callback_id, u.hour
    ON CONFLICT (callback_id, hour) DO UPDATE SET
        succeeded = hour_counts.succeeded + excluded.succeeded,
        failed = hour_counts.failed + excluded.failed
), wanted AS (
    SELECT u.callback_id, u.owner, u.until, u.ord,
           row_number() OVER (PARTITION BY u.callback_id ORDER BY u.ord) AS n
    FROM input u JOIN done ON done.ord = u.ord
    -- The snapshot still holds the lease as it was before `done`.
    JOIN deliveries o ON o.tenant_id = u.tenant_id AND o.id = u.id
    WHERE u.until IS NOT NULL AND o.lease_until > u.live_at
), counts AS (
    SELECT callback_id, count(*) AS k FROM wanted GROUP BY callback_id
), candidates AS (
    SELECT c.tid, c.callback_id,
           row_number() OVER (PARTITION BY c.callback_id ORDER BY c.due_at) AS n
    FROM counts w CROSS JOIN LATERAL (
        SELECT d.ctid AS tid, d.callback_id, d.due_at FROM deliveries d
        WHERE d.callback_id = w.callback_id AND d.status = 'pending'
          AND d.due_at <= $17 AND (d.lease_until IS NULL OR d.lease_until <= $17)
          AND NOT EXISTS (SELECT 1 FROM input i WHERE i.tenant_id = d.tenant_id AND i.id = d.id)
        ORDER BY d.due_at LIMIT w.k
    ) c
), picked AS (
    SELECT l.tid, w.owner, w.until, w.ord
    FROM candidates c JOIN wanted w ON w.callback_id = c.callback_id AND w.n = c.n
    CROSS JOIN LATERAL (
        SELECT d.ctid AS tid FROM deliveries d
        WHERE d.ctid = c.tid
          AND d.status = 'pending' AND d.due_at <= $17
          AND (d.lease_until IS NULL OR d.lease_until <= $17)
        FOR UPDATE SKIP LOCKED
    ) l
), handed AS (
    UPDATE deliveries d SET lease_owner = picked.owner, lease_until = picked.until
    FROM picked WHERE d.ctid = picked.tid
    RETURNING picked.ord, d.tenant_id, d.record, d.lease_until
)
SELECT done.ord, handed.record, handed.lease_until, e.record AS event
FROM done LEFT JOIN handed ON handed.ord = done.ord
LEFT JOIN events e ON e.tenant_id = handed.tenant_id
    AND e.id = handed.record::json ->> 'event_id'";

/// One column of an `UNNEST`: `f` of each item, in order.
fn column<T: Copy, U>(items: &[T], f: impl Fn(T) -> U) -> Vec<U> {
    items.iter().copied().map(f).collect()
}

/// Records attempts, and hands leases over; see `COMPLETE`.
async fn complete(
    conn: &mut PgConnection,
    completions: &[&Completion],
) -> StoreResult<Vec<Completed>> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let deliveries: Vec<&Delivery> = completions.iter().map(|c| &c.write.0).collect();
    let hours: Vec<Option<HourCount>> = completions
        .iter()
        .map(|c| c.write.1.as_ref().and_then(HourCount::of))
        .collect();
    let activations: Vec<&Activation> = completions
        .iter()
        .filter_map(|c| c.write.1.as_ref())
        .collect();
    let now = completions
        .iter()
        .filter_map(|c| c.handover.map(|h| h.now))
        .min()
        .unwrap_or(0);
    let query = sqlx::query(COMPLETE)
        .bind(column(&deliveries, |d| d.tenant_id.as_str()))
        .bind(column(&deliveries, |d| d.id.as_str()))
        .bind(column(&deliveries, |d| d.status.as_str()))
        .bind(column(&deliveries, |d| {
            d.next_attempt_at.map(|at| at as i64)
        }))
        .bind(column(&deliveries, encode))
        .bind(column(completions, |c| c.owner.as_str()))
        .bind(column(&deliveries, |d| d.callback_id.as_str()))
        .bind(column(&hours, |h| h.map(|h| h.at as i64)))
        .bind(column(&hours, |h| h.map_or(0, |h| h.succeeded as i64)))
        .bind(column(&hours, |h| h.map_or(0, |h| h.failed as i64)))
        .bind(column(completions, |c| {
            c.handover.map(|h| (h.now + h.lease_ms) as i64)
        }));
    let rows = bind_activations(query, &activations)
        .bind(now as i64)
        .bind(column(completions, |c| {
            let waited = c.queued.elapsed().as_millis() as u64;
            c.handover.map_or(0, |h| (h.now + waited) as i64)
        }))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let mut completed: Vec<Completed> = completions
        .iter()
        .map(|_| Completed {
            held: false,
            next: None,
        })
        .collect();
    for row in &rows {
        let ord: i64 = row.try_get("ord").map_err(db)?;
        let answer = &mut completed[ord as usize - 1];
        answer.held = true;
        let Some(lease_until) = row.try_get::<Option<i64>, _>("lease_until").map_err(db)? else {
            continue;
        };
        // An event that cannot be read is left to the worker, which reads
        // it again before the attempt, and says so if it still cannot.
        let event = row
            .try_get::<Option<String>, _>("event")
            .ok()
            .flatten()
            .and_then(|text| decode::<EventRecord>("event", &text).ok())
            .map(Arc::new);
        match record(row) {
            Ok(delivery) => {
                answer.next = Some(Claimed {
                    delivery,
                    event,
                    lease_until: lease_until as u64,
                })
            }
            Err(err) => tracing::error!("skipping a delivery that cannot be read: {err}"),
        }
    }
    Ok(completed)
}

async fn insert_activations(tx: &mut PgConnection, activations: &[&Activation]) -> StoreResult<()> {
    if activations.is_empty() {
        return Ok(());
    }
    let query = sqlx::query(
        "INSERT INTO activations (tenant_id, callback_id, id, at, record) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) \
         ON CONFLICT DO NOTHING",
    );
    bind_activations(query, activations)
        .execute(tx)
        .await
        .map(drop)
        .map_err(db)
}

/// Binds activations as the five arrays both inserts of them take, in
/// column order: tenant, callback, id, time and record.
fn bind_activations<'q>(
    query: Query<'q, Postgres, PgArguments>,
    activations: &[&'q Activation],
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(column(activations, |a| a.tenant_id.as_str()))
        .bind(column(activations, |a| a.callback_id.as_str()))
        .bind(column(activations, |a| a.id.as_str()))
        .bind(column(activations, |a| a.at as i64))
        .bind(column(activations, encode))
}
