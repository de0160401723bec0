//! Persistence behind one trait, so that sled (embedded, the default) and a
//! future PostgreSQL backend are interchangeable.
//!
//! The trait is synchronous: implementations may block, and callers reach it
//! through [`Db`], which runs every call on the blocking pool so storage work
//! never stalls the async workers.

mod sled_store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::watch;

pub use self::sled_store::SledStore;
use crate::model::{
    Activation, ApiKey, Callback, Delivery, DeliveryStatus, EventRecord, Health, PluginRecord,
    Template, Tenant,
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

    /// Inserts or replaces a callback template. Names are unique within a
    /// tenant.
    fn put_template(&self, template: &Template) -> StoreResult<()>;
    /// A tenant's template.
    fn template(&self, tenant: &str, id: &str) -> StoreResult<Option<Template>>;
    /// A tenant's template, by name.
    fn template_by_name(&self, tenant: &str, name: &str) -> StoreResult<Option<Template>>;
    /// A tenant's templates, oldest first.
    fn templates(&self, tenant: &str) -> StoreResult<Vec<Template>>;
    /// Deletes a template; false if the tenant has no such template.
    fn delete_template(&self, tenant: &str, id: &str) -> StoreResult<bool>;

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
    /// One activation of a callback.
    fn activation(
        &self,
        tenant: &str,
        callback_id: &str,
        id: &str,
    ) -> StoreResult<Option<Activation>>;

    /// A tenant's delivery.
    fn delivery(&self, tenant: &str, id: &str) -> StoreResult<Option<Delivery>>;
    /// Every pending delivery, to resume after a restart.
    fn pending_deliveries(&self) -> StoreResult<Vec<Delivery>>;
    /// Saves a delivery's new state with the activation recording its
    /// latest attempt, if any, in one atomic write.
    fn update_delivery(&self, delivery: &Delivery, attempt: Option<&Activation>)
    -> StoreResult<()>;
    /// Removes up to `limit` events, finished deliveries and activations
    /// from before `cutoff` (ms since the epoch) and returns how many went.
    /// Pending deliveries are kept whatever their age.
    fn prune(&self, cutoff: u64, limit: usize) -> StoreResult<usize>;
    /// How a callback has been faring.
    fn health(&self, callback_id: &str) -> StoreResult<Health>;
    /// Records how a callback has been faring.
    fn set_health(&self, callback_id: &str, health: &Health) -> StoreResult<()>;
    /// A tenant's deliveries, newest first, older than `before` if given.
    fn deliveries(
        &self,
        tenant: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>>;
}

/// Threads that run storage work. Two keep sled busy on both cores while
/// one of them waits on the disk; more only add contention.
const STORAGE_THREADS: usize = 2;

type Job = Box<dyn FnOnce(&dyn Storage) + Send>;

/// What a storage thread is told: run a job, or stop.
enum Msg {
    Job(Job),
    Stop,
}

/// The async face of a [`Storage`]: each call runs on a small, dedicated
/// pool of storage threads, and writes nobody waits for can be queued
/// behind a single writer thread.
///
/// A fixed pool, rather than the runtime's blocking pool, matters under
/// load: the blocking pool grows a thread per concurrent call, and dozens
/// of threads taking turns on a couple of cores spend more time switching
/// than storing. Only these threads hold the backend, so [`Db::close`],
/// which stops and joins them, closes it.
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Msg>,
    behind: Arc<WriteBehind>,
    flusher: Arc<GroupFlush>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

/// Group commit: callers of [`Db::durable`] ask for a flush, one thread
/// flushes, and every flush covers all the writes made before it began,
/// so concurrent requests share one disk sync instead of queueing for
/// their own.
struct GroupFlush {
    /// Requests made so far, and whether the flusher should stop.
    asked: Mutex<(u64, bool)>,
    wake: std::sync::Condvar,
    /// The highest request a completed flush covers.
    done: watch::Receiver<(u64, bool)>,
}

/// Writes queued with [`Db::submit`], applied in order by one thread.
struct WriteBehind {
    jobs: Mutex<mpsc::Sender<Msg>>,
    submitted: AtomicU64,
    done: watch::Receiver<u64>,
}

impl Db {
    /// Wraps a storage backend and starts its threads.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
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
        let (behind_jobs, behind_queue) = mpsc::channel::<Msg>();
        let (done_tx, done) = watch::channel(0u64);
        let writer_storage = storage.clone();
        threads.push(spawn("hookgate-writer", move || {
            for msg in behind_queue {
                let Msg::Job(job) = msg else { break };
                job(writer_storage.as_ref());
                done_tx.send_modify(|done| *done += 1);
            }
        }));
        let (flushed_tx, flushed) = watch::channel((0u64, true));
        let flusher = Arc::new(GroupFlush {
            asked: Mutex::new((0, false)),
            wake: std::sync::Condvar::new(),
            done: flushed,
        });
        let (group, flush_storage) = (flusher.clone(), storage);
        threads.push(spawn("hookgate-flusher", move || {
            loop {
                let target = {
                    let mut asked = group.asked.lock().unwrap_or_else(|p| p.into_inner());
                    while asked.0 == flushed_tx.borrow().0 && !asked.1 {
                        asked = group.wake.wait(asked).unwrap_or_else(|p| p.into_inner());
                    }
                    if asked.1 {
                        break;
                    }
                    asked.0
                };
                let ok = flush_storage.flush().is_ok();
                flushed_tx.send_replace((target, ok));
            }
        }));
        Db {
            jobs,
            flusher,
            behind: Arc::new(WriteBehind {
                jobs: Mutex::new(behind_jobs),
                submitted: AtomicU64::new(0),
                done,
            }),
            threads: Arc::new(Mutex::new(threads)),
        }
    }

    /// Runs `f` against the storage on a storage thread, after every write
    /// queued with [`Db::submit`] before this call, so reads see them.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Storage) -> StoreResult<T> + Send + 'static,
    {
        self.settle().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |storage| {
            let _ = tx.send(f(storage));
        });
        self.jobs
            .send(Msg::Job(job))
            .map_err(|_| StoreError::Backend("storage is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("storage is closed".into()))?
    }

    /// Queues a write without waiting for it. Writes apply in submission
    /// order; a failure is logged, since nobody is waiting to hear of it.
    pub fn submit<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&dyn Storage) -> StoreResult<()> + Send + 'static,
    {
        let job: Job = Box::new(move |storage| {
            if let Err(err) = f(storage) {
                tracing::error!("cannot store {what}: {err}");
            }
        });
        let jobs = self.behind.jobs.lock().unwrap_or_else(|p| p.into_inner());
        self.behind.submitted.fetch_add(1, Ordering::SeqCst);
        if jobs.send(Msg::Job(job)).is_err() {
            tracing::error!("cannot store {what}: storage is closed");
        }
    }

    /// Waits until every write submitted so far has been applied.
    pub async fn settle(&self) {
        let target = self.behind.submitted.load(Ordering::SeqCst);
        if *self.behind.done.borrow() >= target {
            return;
        }
        let mut done = self.behind.done.clone();
        let _ = done.wait_for(|done| *done >= target).await;
    }

    /// Waits until every write completed before this call is on disk,
    /// sharing the flush with concurrent callers.
    pub async fn durable(&self) -> StoreResult<()> {
        let ticket = {
            let mut asked = self.flusher.asked.lock().unwrap_or_else(|p| p.into_inner());
            asked.0 += 1;
            asked.0
        };
        self.flusher.wake.notify_one();
        let mut done = self.flusher.done.clone();
        let (_, ok) = *done
            .wait_for(|(flushed, _)| *flushed >= ticket)
            .await
            .map_err(|_| StoreError::Backend("storage is closed".into()))?;
        if ok {
            Ok(())
        } else {
            Err(StoreError::Backend("flushing to disk failed".into()))
        }
    }

    /// Applies queued writes, flushes, and stops the storage threads; when
    /// this returns the backend is closed. Later calls fail.
    pub async fn close(&self) -> StoreResult<()> {
        self.run(|s| s.flush()).await?;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in 0..STORAGE_THREADS {
            let _ = self.jobs.send(Msg::Stop);
        }
        let _ = self
            .behind
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Msg::Stop);
        self.flusher
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1 = true;
        self.flusher.wake.notify_one();
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage threads did not stop: {e}")))
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("storage threads start")
}
