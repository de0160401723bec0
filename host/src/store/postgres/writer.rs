//! Group commit on PostgreSQL: concurrent writes share a statement, and
//! so a commit.
//!
//! Two lanes, each one batch at a time, taking everything queued while the
//! previous one ran:
//! - **durable**: after-events and their deliveries, answered once the
//!   commit is on disk (`synchronous_commit` as the server has it);
//! - **behind**: gate history and attempt results, which a crash may lose
//!   (the delivery is then attempted again), committed without waiting for
//!   the disk, on connections of its own that are set up for it.
//!
//! Batching is what makes intake fast: one commit, and one disk flush, for
//! every event that arrived while the last one was being made. A batch of
//! events is one statement (`INSERT_EVENTS`) with no transaction block
//! around it, so one round trip: a lane's round trips are its cost when
//! the machine is busy, and in a cluster each node's batches are smaller.
//!
//! Attempt results are on the way of a busy callback's next attempt, so a
//! batch of them is one statement too (`COMPLETE`): every delivery's new
//! state, the attempts' history and hour counts, and the handovers (see
//! `store::Handover`), which lease each callback's next due delivery to the
//! same owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};
use tokio::sync::{mpsc, oneshot, watch};

use super::{db, decode, encode, listen, record};
use crate::model::{Activation, Delivery, EventRecord, HourCount};
use crate::store::{
    Change, Changes, Claimed, Completed, DeliveryWrite, EventWrite, Handover, StoreError,
    StoreResult,
};

/// Writes taken at once by one batch, at most.
const BATCH: usize = 512;
/// How many times a batch of events is made again after losing a race for
/// a client's id to another node.
const RACES: usize = 3;

type EventReply = oneshot::Sender<StoreResult<Option<EventRecord>>>;

/// An attempt to record, as `DeliveryRepo::complete` takes it.
struct Completion {
    owner: String,
    /// The end of the lease the owner holds, which names it.
    lease_until: u64,
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
        lease_until: u64,
        write: DeliveryWrite,
        handover: Option<Handover>,
    ) -> StoreResult<Completed> {
        let (reply, answer) = oneshot::channel();
        let completion = Completion {
            owner: owner.to_string(),
            lease_until,
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

    /// Writes the batch: its events in one statement, its attempt results
    /// in another, each atomic on its own; everyone waiting hears how it
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
        if !events.is_empty() {
            let writes: Vec<&EventWrite> = events.iter().map(|(w, _)| w).collect();
            match self.insert(&writes).await {
                Ok((answers, due)) => {
                    if due {
                        self.changes.publish(&Change::DeliveriesDue);
                    }
                    for ((_, reply), answer) in events.into_iter().zip(answers) {
                        if let Some(reply) = reply {
                            let _ = reply.send(answer);
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(
                        events = events.len(),
                        "cannot store a batch of events: {err}"
                    );
                    for (_, reply) in events {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(again(&err)));
                        }
                    }
                }
            }
        }
        if !completions.is_empty() {
            let finished: Vec<&Completion> = completions.iter().map(|(c, _)| c).collect();
            match self.complete(&finished).await {
                Ok(completed) => {
                    for ((_, reply), completed) in completions.into_iter().zip(completed) {
                        let _ = reply.send(Ok(completed));
                    }
                }
                Err(err) => {
                    tracing::error!(
                        attempts = completions.len(),
                        "cannot store a batch of attempts: {err}"
                    );
                    for (_, reply) in completions {
                        let _ = reply.send(Err(again(&err)));
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }

    /// Inserts events with what they caused, one statement for the batch;
    /// see `INSERT_EVENTS`. Answers each write (the stored record for a
    /// repeated client id), and whether deliveries fell due.
    async fn insert(
        &self,
        writes: &[&EventWrite],
    ) -> StoreResult<(Vec<StoreResult<Option<EventRecord>>>, bool)> {
        // Writes sharing an id: the first to arrive goes to the statement,
        // the others answer as repeats of it. In key order, so that nodes
        // inserting the same chosen ids wait for each other in one order,
        // never in a cycle.
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by_key(|&i| event_key(writes[i]));
        let mut unique: Vec<&EventWrite> = Vec::new();
        let mut slots = vec![0; writes.len()];
        for i in order {
            if unique
                .last()
                .is_none_or(|last| event_key(last) != event_key(writes[i]))
            {
                unique.push(writes[i]);
            }
            slots[i] = unique.len() - 1;
        }
        let deliveries: Vec<(i64, &Delivery)> = caused(&unique, |w| &w.deliveries);
        let activations: Vec<(i64, &Activation)> = caused(&unique, |w| &w.activations);
        let history: Vec<&Activation> = activations.iter().map(|(_, a)| *a).collect();
        let payload = listen::payload(&self.origin, &Change::DeliveriesDue);
        let statement = || {
            let query = sqlx::query(INSERT_EVENTS)
                .bind(column(&unique, |w| w.record.tenant_id.as_str()))
                .bind(column(&unique, |w| w.record.event.id.as_str()))
                .bind(column(&unique, |w| w.record.event.timestamp_ms as i64))
                .bind(column(&unique, |w| encode(&*w.record)))
                .bind(column(&unique, |w| w.client_id))
                .bind(column(&deliveries, |(n, _)| n))
                .bind(column(&deliveries, |(_, d)| d.tenant_id.as_str()))
                .bind(column(&deliveries, |(_, d)| d.id.as_str()))
                .bind(column(&deliveries, |(_, d)| d.callback_id.as_str()))
                .bind(column(&deliveries, |(_, d)| d.status.as_str()))
                .bind(column(&deliveries, |(_, d)| d.created_at as i64))
                .bind(column(&deliveries, |(_, d)| {
                    d.next_attempt_at.map(|at| at as i64)
                }))
                .bind(column(&deliveries, |(_, d)| encode(d)))
                .bind(column(&activations, |(n, _)| n));
            bind_activations(query, &history).bind(&payload)
        };
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut raced = 0;
        let rows = loop {
            match statement().fetch_all(&mut *conn).await {
                Ok(rows) => break rows,
                // Another node stored an id a client chose after this
                // statement's snapshot was taken: again, and it is a repeat.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                    raced += 1;
                    if raced > RACES {
                        // Nothing of the batch is stored, so trying again is safe.
                        return Err(StoreError::Unavailable(format!(
                            "other nodes kept storing the same event ids: {e}"
                        )));
                    }
                }
                Err(err) => return Err(db(err)),
            }
        };

        let mut due = false;
        let mut stored: Vec<Option<String>> = vec![None; unique.len()];
        for row in &rows {
            let ord: i64 = row.try_get("ord").map_err(db)?;
            match usize::try_from(ord - 1) {
                Ok(at) => stored[at] = Some(row.try_get("record").map_err(db)?),
                Err(_) => due = true,
            }
        }
        let answers: Vec<StoreResult<Option<EventRecord>>> = stored
            .iter()
            .map(|text| text.as_deref().map(|t| decode("event", t)).transpose())
            .collect();
        let mut answered = vec![false; unique.len()];
        let answers = slots
            .iter()
            .map(|&slot| {
                let repeat = std::mem::replace(&mut answered[slot], true);
                match &answers[slot] {
                    Ok(None) if !repeat => Ok(None),
                    Ok(None) => Ok(Some((*unique[slot].record).clone())),
                    Ok(Some(record)) => Ok(Some(record.clone())),
                    Err(err) => Err(again(err)),
                }
            })
            .collect();
        Ok((answers, due))
    }

    /// Records attempts, and hands leases over; see `COMPLETE`.
    async fn complete(&self, completions: &[&Completion]) -> StoreResult<Vec<Completed>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        complete(&mut conn, completions).await
    }
}

/// A batch of events in one statement, so one round trip and one commit:
/// each event with its deliveries and activations, or, for an id already
/// stored, nothing. The batch's ids are distinct, and only one a client
/// chose can be stored already: those are looked up, the rest inserted
/// without a check. An id stored by another node after the snapshot was
/// taken fails the statement, which is then made again. `pg_notify` tells
/// the other nodes when deliveries fell due; it is sent at commit.
///
/// Every part joins only the few repeats, so the statement costs what it
/// inserts whatever joins the session allows.
///
/// Answers a row for each event not inserted, by position (counted from
/// 1), with the stored record; and a row at position 0 if deliveries fell
/// due.
const INSERT_EVENTS: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::bool[])
        WITH ORDINALITY AS u(tenant_id, id, at, record, chosen, ord)
), repeats AS MATERIALIZED (
    SELECT u.ord, e.record FROM input u
    JOIN events e ON e.tenant_id = u.tenant_id AND e.id = u.id
    WHERE u.chosen
), inserted AS (
    INSERT INTO events (tenant_id, id, at, record)
    SELECT tenant_id, id, at, record FROM input u
    WHERE NOT EXISTS (SELECT FROM repeats r WHERE r.ord = u.ord)
), due AS (
    INSERT INTO deliveries (tenant_id, id, callback_id, status, created_at, due_at, record)
    SELECT d.tenant_id, d.id, d.callback_id, d.status, d.created_at, d.due_at, d.record
    FROM UNNEST($6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[],
                $12::int8[], $13::text[])
        AS d(event, tenant_id, id, callback_id, status, created_at, due_at, record)
    WHERE NOT EXISTS (SELECT FROM repeats r WHERE r.ord = d.event)
    RETURNING 1
), history AS (
    INSERT INTO activations (tenant_id, callback_id, id, at, record)
    SELECT a.tenant_id, a.callback_id, a.id, a.at, a.record
    FROM UNNEST($14::int8[], $15::text[], $16::text[], $17::text[], $18::int8[], $19::text[])
        AS a(event, tenant_id, callback_id, id, at, record)
    WHERE NOT EXISTS (SELECT FROM repeats r WHERE r.ord = a.event)
    ON CONFLICT DO NOTHING
), notified AS (
    SELECT pg_notify('hookgate', $20) FROM (SELECT FROM due LIMIT 1) one
)
SELECT ord, record FROM repeats
UNION ALL
SELECT 0, NULL FROM notified";

/// An event write's key in `events`.
fn event_key(write: &EventWrite) -> (&str, &str) {
    (&write.record.tenant_id, &write.record.event.id)
}

/// What a batch's events caused, each with its event's position in the
/// batch (counted from 1).
fn caused<'a, T>(
    writes: &[&'a EventWrite],
    of: impl Fn(&'a EventWrite) -> &'a Vec<T>,
) -> Vec<(i64, &'a T)> {
    writes
        .iter()
        .enumerate()
        .flat_map(|(n, w)| of(w).iter().map(move |item| (n as i64 + 1, item)))
        .collect()
}

/// A failure again, for each of the writes it failed: the database being
/// unavailable stays so, so that callers answer `503`.
fn again(err: &StoreError) -> StoreError {
    match err {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        StoreError::Backend(message) => StoreError::Backend(message.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Records a batch of attempts in one statement. Each delivery's new state
/// is stored where its owner still holds the lease; every attempt's
/// activation is stored; the attempts whose lease was held count into
/// their callback's hour, one row per callback and hour, in key order so
/// that concurrent batches lock those rows alike.
///
/// Then the handovers: each completion that held a lease still live as the
/// statement runs, and asks for one, gets its callback's earliest due
/// delivery that no one holds, into the same slot. (An ended lease's slot
/// may be counted free by a claim already.) The k-th such completion of a
/// callback is matched with the callback's k-th due delivery before the
/// rows are locked, so no row goes to two of them; a row another statement
/// holds is skipped, and its completion gets none. Rows are found as the
/// claim finds them, by `ctid` (see `CLAIM`), which the lane's sessions
/// keep a lookup by turning hash and merge joins off. Without those joins,
/// one list joined with another costs the product of their lengths, so
/// each part takes what it needs from `done` alone, and the k-th
/// completion is read from arrays. Every part reads the statement's one
/// snapshot, where the deliveries being completed are still leased; they
/// are left out of the candidates all the same, by id, so that no row is
/// changed twice.
///
/// Answers a row for each completion that held its lease, with its
/// position (counted from 1), and another for the delivery handed over to
/// it, if any, with its event: in a cluster most deliveries are of events another node took,
/// and reading them here costs no round trip of its own on the way to the
/// next attempt.
const COMPLETE: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[],
                         $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[],
                         $11::int8[], $18::int8[], $19::int8[])
        WITH ORDINALITY AS u(tenant_id, id, status, due_at, record, owner, callback_id,
                             hour, succeeded, failed, until, live_at, held, ord)
), done AS (
    -- `o` is the row as the snapshot holds it, so still with its slot.
    UPDATE deliveries d SET status = u.status, due_at = u.due_at, record = u.record,
        lease_owner = NULL, lease_until = NULL, lease_slot = NULL
    FROM input u JOIN deliveries o ON o.tenant_id = u.tenant_id AND o.id = u.id
    WHERE d.tenant_id = u.tenant_id AND d.id = u.id AND d.lease_owner = u.owner
      AND d.lease_until = u.held
    RETURNING u.ord, u.callback_id, u.hour, u.succeeded, u.failed, u.owner, u.until,
              u.live_at, u.held, o.lease_slot
), history AS (
    INSERT INTO activations (tenant_id, callback_id, id, at, record)
    SELECT * FROM UNNEST($12::text[], $13::text[], $14::text[], $15::int8[], $16::text[])
    ON CONFLICT DO NOTHING
), hours AS (
    INSERT INTO hour_counts (callback_id, hour, succeeded, failed)
    SELECT callback_id, hour, sum(succeeded)::int8, sum(failed)::int8
    FROM done WHERE hour IS NOT NULL
    GROUP BY callback_id, hour ORDER BY callback_id, hour
    ON CONFLICT (callback_id, hour) DO UPDATE SET
        succeeded = hour_counts.succeeded + excluded.succeeded,
        failed = hour_counts.failed + excluded.failed
), wanted AS (
    -- Each callback's completions that want a delivery, in order, as
    -- arrays the k-th candidate indexes: no join of one list with another.
    SELECT callback_id, count(*) AS k, array_agg(ord ORDER BY ord) AS ords,
           array_agg(owner ORDER BY ord) AS owners, array_agg(until ORDER BY ord) AS untils,
           array_agg(lease_slot ORDER BY ord) AS slots
    FROM done WHERE until IS NOT NULL AND held > live_at
    GROUP BY callback_id
), picked AS (
    SELECT l.tid, w.owners[c.n] AS owner, w.untils[c.n] AS until, w.ords[c.n] AS ord,
           w.slots[c.n] AS lease_slot
    FROM wanted w CROSS JOIN LATERAL (
        -- Numbered after the limit, so that n never passes k.
        SELECT q.tid, row_number() OVER (ORDER BY q.due_at) AS n FROM (
            SELECT d.ctid AS tid, d.due_at FROM deliveries d
            WHERE d.callback_id = w.callback_id AND d.status = 'pending'
              AND d.due_at <= $17 AND (d.lease_until IS NULL OR d.lease_until <= $17)
              AND d.id <> ALL($2)
            ORDER BY d.due_at LIMIT w.k
        ) q
    ) c
    CROSS JOIN LATERAL (
        SELECT d.ctid AS tid FROM deliveries d
        WHERE d.ctid = c.tid
          AND d.status = 'pending' AND d.due_at <= $17
          AND (d.lease_until IS NULL OR d.lease_until <= $17)
        FOR UPDATE SKIP LOCKED
    ) l
), handed AS (
    UPDATE deliveries d SET lease_owner = picked.owner, lease_until = picked.until,
        lease_slot = picked.lease_slot
    FROM picked WHERE d.ctid = picked.tid
    RETURNING picked.ord, d.tenant_id, d.record, d.lease_until
)
SELECT ord, NULL AS record, NULL::int8 AS lease_until, NULL AS event FROM done
UNION ALL
SELECT handed.ord, handed.record, handed.lease_until, e.record
FROM handed LEFT JOIN events e ON e.tenant_id = handed.tenant_id
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
        .bind(column(completions, |c| c.lease_until as i64))
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
