//! sled's storage threads and its group-commit writer, private to the
//! backend.
//!
//! Reads run on a small pool of storage threads. Writes go through one
//! writer thread, which applies what is queued in order, batches runs of
//! events and of delivery updates into shared transactions, and syncs the
//! disk once for everything written since the last sync, before answering
//! whoever waits for durability.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::watch;

use super::trees::Trees;
use crate::model::{Activation, Delivery, EventRecord};
use crate::store::{DeliveryWrite, EventWrite, StoreError, StoreResult};

/// Threads that run storage work. Two keep sled busy on both cores while
/// one of them waits on the disk; more only add contention.
const STORAGE_THREADS: usize = 2;

/// How long writes nobody waits for wait for company before the writer
/// applies them, so that under load gate history and delivery updates share
/// a transaction. Reads that must see those writes wait at most this much
/// longer; a write someone waits for cuts the wait short.
const WRITE_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

type Job = Box<dyn FnOnce(&Trees) + Send>;
type EventReply = tokio::sync::oneshot::Sender<StoreResult<Option<EventRecord>>>;
/// Told once a write is on disk, or that flushing it failed.
type Answer = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write the writer thread runs; it returns the answer that waits for
/// the disk, if anyone waits.
type WriteJob = Box<dyn FnOnce(&Trees) -> Option<Answer> + Send>;

/// Who waits for an event's write, and for how much of it.
struct Waiter {
    reply: EventReply,
    /// Answer only once the write is on disk.
    durable: bool,
}

/// What a storage thread is told: run a job, or stop.
enum Msg {
    Job(Job),
    Stop,
}

/// What the writer thread is given. Jobs apply in order; the events, and
/// the delivery updates, between two jobs are written together.
enum Queued {
    /// A write, and whether someone waits for it.
    Job(WriteJob, bool),
    Event(Box<EventWrite>, Option<Waiter>),
    Delivery(Box<DeliveryWrite>),
    Stop,
}

/// The async face of the [`Trees`]: each call runs on a small, dedicated
/// pool of storage threads, and writes can be queued behind a single
/// writer thread, which also makes them durable for whoever asks.
///
/// A fixed pool, rather than the runtime's blocking pool, matters under
/// load: the blocking pool grows a thread per concurrent call, and dozens
/// of threads taking turns on a couple of cores spend more time switching
/// than storing. Only these threads hold the backend, so [`Pool::close`],
/// which stops and joins them, closes it.
#[derive(Clone)]
pub(super) struct Pool {
    jobs: mpsc::Sender<Msg>,
    behind: Arc<WriteBehind>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

/// Writes queued with [`Pool::submit`] and its kin, applied by one thread
/// (see [`apply`] for their order).
struct WriteBehind {
    jobs: mpsc::Sender<Queued>,
    submitted: AtomicU64,
    done: watch::Receiver<u64>,
}

impl Pool {
    /// Wraps a storage backend and starts its threads.
    pub(super) fn new(storage: Arc<Trees>) -> Self {
        let (jobs, queue) = mpsc::channel::<Msg>();
        let queue = Arc::new(Mutex::new(queue));
        let mut threads = Vec::new();
        for n in 0..STORAGE_THREADS {
            let (queue, storage) = (queue.clone(), storage.clone());
            threads.push(spawn(&format!("hookgate-store-{n}"), move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match next {
                        Ok(Msg::Job(job)) => job(storage.as_ref()),
                        Ok(Msg::Stop) | Err(_) => break,
                    }
                }
            }));
        }
        let (behind_jobs, behind_queue) = mpsc::channel::<Queued>();
        let (done_tx, done) = watch::channel(0u64);
        threads.push(spawn("hookgate-writer", move || {
            while let Ok(first) = behind_queue.recv() {
                let mut batch = gather(&behind_queue, first);
                let stop = batch.iter().position(|q| matches!(q, Queued::Stop));
                if let Some(at) = stop {
                    batch.truncate(at);
                }
                let applied = batch.len() as u64;
                let unflushed = apply(storage.as_ref(), batch);
                done_tx.send_modify(|done| *done += applied);
                commit(storage.as_ref(), unflushed);
                if stop.is_some() {
                    return;
                }
            }
        }));
        Pool {
            jobs,
            behind: Arc::new(WriteBehind {
                jobs: behind_jobs,
                submitted: AtomicU64::new(0),
                done,
            }),
            threads: Arc::new(Mutex::new(threads)),
        }
    }

    /// Runs `f` against the storage on a storage thread, after every write
    /// queued with [`Pool::submit`] before this call, so reads see them.
    pub(super) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Trees) -> StoreResult<T> + Send + 'static,
    {
        self.settle().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |storage| {
            let _ = tx.send(f(storage));
        });
        self.jobs
            .send(Msg::Job(job))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a write without waiting for it. Writes apply in submission
    /// order; a failure is logged, since nobody is waiting to hear of it.
    pub(super) fn submit<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&Trees) -> StoreResult<()> + Send + 'static,
    {
        let job: WriteJob = Box::new(move |storage| {
            if let Err(err) = f(storage) {
                tracing::error!("cannot store {what}: {err}");
            }
            None
        });
        self.queue(Queued::Job(job, false));
    }

    /// Runs a write on the writer thread, in order with every queued write,
    /// and answers once it is on disk. Every write that a client is told
    /// succeeded goes through here (or [`Pool::insert_event`]): it shares the
    /// writer's group commit, so under load many writes share one flush.
    pub(super) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Trees) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |storage| match f(storage) {
            Ok(value) => Some(Box::new(move |flushed: StoreResult<()>| {
                let _ = tx.send(flushed.map(|()| value));
            })),
            Err(err) => {
                let _ = tx.send(Err(err));
                None
            }
        });
        self.queue(Queued::Job(job, true));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores an event with what it caused (see `Trees::insert_events`),
    /// in one write with the events queued alongside it, and answers once
    /// it is written, or with `durable` once it is on disk. Answers the
    /// existing record if the client chose an id the tenant already used.
    ///
    /// Durable writes are group-committed: the writer flushes once for
    /// everything it wrote since its last flush, and what arrives during a
    /// flush waits for the next one together. That is no slower for any
    /// one write (it would wait for the flush under way anyway) and makes
    /// each write transaction, and each flush, carry many events.
    pub(super) async fn insert_event(
        &self,
        write: EventWrite,
        durable: bool,
    ) -> StoreResult<Option<EventRecord>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.queue(Queued::Event(
            Box::new(write),
            Some(Waiter { reply, durable }),
        ));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues an event's history without waiting for it.
    pub(super) fn record_event(&self, write: EventWrite) {
        self.queue(Queued::Event(Box::new(write), None));
    }

    /// Queues a delivery's new state without waiting for it.
    pub(super) fn record_delivery(&self, delivery: Delivery, attempt: Option<Activation>) {
        self.queue(Queued::Delivery(Box::new((delivery, attempt))));
    }

    fn queue(&self, queued: Queued) {
        self.behind.submitted.fetch_add(1, Ordering::SeqCst);
        if self.behind.jobs.send(queued).is_err() {
            tracing::error!("cannot store a write: storage is closed");
        }
    }

    /// Waits until every write submitted so far has been applied.
    pub(super) async fn settle(&self) {
        let target = self.behind.submitted.load(Ordering::SeqCst);
        if *self.behind.done.borrow() >= target {
            return;
        }
        let mut done = self.behind.done.clone();
        let _ = done.wait_for(|done| *done >= target).await;
    }

    /// Applies queued writes, flushes, and stops the storage threads; when
    /// this returns the backend is closed. Later calls fail.
    pub(super) async fn close(&self) -> StoreResult<()> {
        self.run(|s| s.flush()).await?;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in 0..STORAGE_THREADS {
            let _ = self.jobs.send(Msg::Stop);
        }
        let _ = self.behind.jobs.send(Queued::Stop);
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage threads did not stop: {e}")))
    }
}

/// Collects what the writer applies next: `first` and whatever follows it.
/// Writes nobody waits for linger up to [`WRITE_LINGER`] to share a
/// transaction, but a caller waiting for its write, or a stop, ends the
/// linger at once: an event's answer waits for its write, and should not
/// wait for company as well.
fn gather(queue: &mpsc::Receiver<Queued>, first: Queued) -> Vec<Queued> {
    let urgent = |queued: &Queued| {
        matches!(
            queued,
            Queued::Event(_, Some(_)) | Queued::Job(_, true) | Queued::Stop
        )
    };
    let deadline = std::time::Instant::now() + WRITE_LINGER;
    let mut batch = vec![first];
    while !batch.last().is_some_and(urgent) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match queue.recv_timeout(left) {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch.extend(queue.try_iter());
    batch
}

/// Answers held back until their writes are on disk.
type Unflushed = Vec<Answer>;

/// Applies a batch of queued writes, with all the events between two jobs
/// in one call and all the delivery updates in another. Jobs keep their
/// place; events and delivery updates need not keep theirs relative to
/// each other, because a delivery is updated only once its event has been
/// written and answered, in an earlier batch. Returns the answers that
/// wait for a flush.
fn apply(storage: &Trees, batch: Vec<Queued>) -> Unflushed {
    let mut events = Vec::new();
    let mut deliveries = Vec::new();
    let mut unflushed = Vec::new();
    for queued in batch {
        match queued {
            Queued::Job(job, _) => {
                write_events(storage, &mut events, &mut unflushed);
                write_deliveries(storage, &mut deliveries);
                unflushed.extend(job(storage));
            }
            Queued::Event(write, waiter) => events.push((*write, waiter)),
            Queued::Delivery(write) => deliveries.push(*write),
            Queued::Stop => {}
        }
    }
    write_events(storage, &mut events, &mut unflushed);
    write_deliveries(storage, &mut deliveries);
    unflushed
}

/// Writes a run of events in one call and answers whoever waits, or sets
/// the answer aside in `unflushed` when it waits for the disk.
fn write_events(
    storage: &Trees,
    run: &mut Vec<(EventWrite, Option<Waiter>)>,
    unflushed: &mut Unflushed,
) {
    if run.is_empty() {
        return;
    }
    let (writes, waiters): (Vec<EventWrite>, Vec<Option<Waiter>>) = run.drain(..).unzip();
    match storage.insert_events(&writes) {
        Ok(answers) => {
            for (waiter, answer) in waiters.into_iter().zip(answers) {
                match waiter {
                    Some(Waiter {
                        reply,
                        durable: true,
                    }) => unflushed.push(Box::new(move |flushed: StoreResult<()>| {
                        let _ = reply.send(flushed.map(|()| answer));
                    })),
                    Some(Waiter { reply, .. }) => {
                        let _ = reply.send(Ok(answer));
                    }
                    None => {}
                }
            }
        }
        Err(err) => {
            tracing::error!(events = writes.len(), "cannot store events: {err}");
            for waiter in waiters.into_iter().flatten() {
                let _ = waiter.reply.send(Err(StoreError::Backend(err.to_string())));
            }
        }
    }
}

/// Flushes, if anyone waits for it, and then answers them.
fn commit(storage: &Trees, unflushed: Unflushed) {
    if unflushed.is_empty() {
        return;
    }
    let flushed = storage.flush();
    if let Err(err) = &flushed {
        tracing::error!("cannot flush storage: {err}");
    }
    for answer in unflushed {
        answer(match &flushed {
            Ok(()) => Ok(()),
            Err(err) => Err(StoreError::Backend(format!(
                "flushing to disk failed: {err}"
            ))),
        });
    }
}

/// Writes a run of delivery updates in one call.
fn write_deliveries(storage: &Trees, run: &mut Vec<DeliveryWrite>) {
    if run.is_empty() {
        return;
    }
    if let Err(err) = storage.update_deliveries(run) {
        tracing::error!(
            deliveries = run.len(),
            "cannot store delivery attempts: {err}"
        );
    }
    run.clear();
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("storage threads start")
}
