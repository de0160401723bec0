//! The leased delivery queue: several deliverers sharing one store, as
//! several nodes share one database, built from the library's parts, and
//! the queue's promises on each backend.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hookgate::clock::{Clock, ManualClock, SharedClock};
use hookgate::config::Config;
use hookgate::delivery::Deliverer;
use hookgate::domain::callbacks::Callbacks;
use hookgate::domain::events::{Events, IntakeLimits};
use hookgate::domain::gate::Gate;
use hookgate::domain::plugins::Plugins;
use hookgate::domain::tenants::{NewTenant, Tenants};
use hookgate::model::{Delivery, DeliveryStatus, EventAnswer};
use hookgate::outbound::HttpClient;
use hookgate::plugin::{Limits, Runtime};
use hookgate::store::{Changes, Claim, Claimed, Handover, PgStore, Store};
use serde_json::json;
use sqlx::Connection;

use crate::backends::{self, Backend, backend_test};
use crate::helpers::{Receiver, receiver};

/// One store and the services over it, on a clock the test moves.
struct Node {
    store: Store,
    clock: ManualClock,
    callbacks: Callbacks,
    plugins: Plugins,
    events: Events,
    tenant: String,
}

async fn node(dir: &std::path::Path, sink: &Receiver) -> Node {
    let clock = ManualClock::default();
    let shared: SharedClock = Arc::new(clock.clone());
    let store = backends::open_store(dir).await;
    let runtime = Runtime::new(
        Limits {
            max_concurrent_calls: 2,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let plugins = Plugins::new(runtime, store.clone(), shared.clone(), 64 << 20);
    let callbacks = Callbacks::new(store.clone(), shared.clone());
    let (tenant, _) = Tenants::new(store.clone(), shared.clone())
        .create_tenant(NewTenant {
            name: "acme".into(),
        })
        .await
        .unwrap();
    let input = serde_json::from_value(json!({"name": "sink", "object_type": "app",
        "phase": "after", "url": sink.url()}))
    .unwrap();
    callbacks.create(&tenant.id, "test", input).await.unwrap();
    let gate = Gate::new(
        plugins.clone(),
        HttpClient::new(true),
        Duration::from_secs(3),
        shared.clone(),
    );
    let events = Events::new(
        store.clone(),
        callbacks.clone(),
        gate,
        shared,
        IntakeLimits {
            max_depth: 8,
            max_pending: 100_000,
        },
    );
    Node {
        store,
        clock,
        callbacks,
        plugins,
        events,
        tenant: tenant.id,
    }
}

impl Node {
    async fn deliverer(&self, owner: &str) -> Deliverer {
        Deliverer::start(
            self.store.clone(),
            self.callbacks.clone(),
            self.plugins.clone(),
            HttpClient::new(true),
            Config::defaults().delivery,
            Arc::new(self.clock.clone()),
            owner.to_string(),
        )
        .await
    }

    /// Emits `n` events 1 ms apart, so that their deliveries fall due
    /// one after another; returns the first callback's deliveries.
    async fn emit_apart(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.extend(self.emit(1).await);
            self.clock.advance(Duration::from_millis(1));
        }
        ids
    }

    /// Registers a second callback for the same events, at `sink`, and
    /// returns its id.
    async fn second_callback(&self, sink: &Receiver) -> String {
        let input = serde_json::from_value(json!({"name": "other", "object_type": "app",
            "phase": "after", "url": sink.url()}))
        .unwrap();
        let created = self.callbacks.create(&self.tenant, "test", input).await;
        created.unwrap().callback.id
    }

    async fn emit(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let event = serde_json::from_value(json!({"object_type": "app",
                "action": "created", "phase": "after", "data": {"n": i}}))
            .unwrap();
            let EventAnswer::Accepted { deliveries, .. } =
                self.events.emit(&self.tenant, event, None).await.unwrap()
            else {
                panic!("an after-event is accepted");
            };
            ids.push(deliveries[0].id.clone());
        }
        ids
    }
}

/// How many requests the receiver got for each delivery.
fn per_delivery(sink: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for got in sink.received() {
        *seen
            .entry(got.header("webhook-id").unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn two_deliverers_sharing_a_store_never_both_attempt_a_delivery() {
    const EVENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let sink = receiver(200).await;
    sink.delay(5);
    let node = node(dir.path(), &sink).await;
    let first = node.deliverer("node-a").await;
    let second = node.deliverer("node-b").await;
    let ids = node.emit(EVENTS).await;
    sink.wait_for(EVENTS, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = per_delivery(&sink);
    assert_eq!(seen.len(), EVENTS, "every delivery arrived");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "attempted twice: {twice:?}");
    assert!(ids.iter().all(|id| seen.contains_key(id)));
    first.stop();
    second.stop();
}

#[tokio::test]
async fn a_delivery_whose_lease_holder_vanished_is_taken_over_once_the_lease_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sink = receiver(200).await;
    let node = node(dir.path(), &sink).await;
    let ids = node.emit(3).await;

    // A node claims the deliveries and dies before attempting them.
    let lease_ms = 15_000;
    let held = node
        .store
        .deliveries()
        .claim(Claim {
            owner: "vanished",
            now: node.clock.now_ms(),
            lease_ms,
            limit: 10,
            depth: 1,
            per_callback: 16,
            exclude_tenants: &[],
        })
        .await
        .unwrap();
    let held: Vec<Claimed> = held.into_iter().flatten().collect();
    assert_eq!(held.len(), 3);

    let survivor = node.deliverer("survivor").await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(sink.received().is_empty(), "leased deliveries wait");
    node.clock.advance(Duration::from_millis(lease_ms + 1));
    sink.wait_for(3, 10).await;
    let seen = per_delivery(&sink);
    assert!(ids.iter().all(|id| seen.get(id) == Some(&1)), "{seen:?}");

    // The vanished owner, back too late, completes nothing.
    let mut late: Delivery = held[0].delivery.clone();
    late.status = DeliveryStatus::Failed;
    let applied = node
        .store
        .deliveries()
        .complete("vanished", held[0].lease_until, (late, None), None)
        .await
        .unwrap();
    assert!(!applied.held, "only the lease's holder completes");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = node
        .store
        .deliveries()
        .delivery(&node.tenant, &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, DeliveryStatus::Succeeded);
    survivor.stop();
}

impl Node {
    /// Claims up to `limit` due deliveries as `owner`, one slot each, at
    /// most `per_callback` slots per callback.
    async fn claim(&self, owner: &str, limit: usize, per_callback: usize) -> Vec<Claimed> {
        let slots = self.slots(owner, limit, 1, per_callback).await;
        assert!(slots.iter().all(|slot| slot.len() == 1));
        slots.into_iter().flatten().collect()
    }

    /// Claims up to `limit` slots of up to `depth` due deliveries each.
    async fn slots(
        &self,
        owner: &str,
        limit: usize,
        depth: usize,
        per_callback: usize,
    ) -> Vec<Vec<Claimed>> {
        let now = self.clock.now_ms();
        claim_in(&self.store, now, owner, limit, depth, per_callback).await
    }

    /// Records a claimed delivery as delivered, asking for a handover;
    /// returns whether the lease was held, and what was handed over.
    async fn finish(&self, owner: &str, claimed: &Claimed) -> (bool, Option<Claimed>) {
        finish_in(&self.store, self.clock.now_ms(), owner, claimed).await
    }
}

/// `Node::claim` on any store, such as a second node's.
async fn claim_in(
    store: &Store,
    now: u64,
    owner: &str,
    limit: usize,
    depth: usize,
    per_callback: usize,
) -> Vec<Vec<Claimed>> {
    store
        .deliveries()
        .claim(Claim {
            owner,
            now,
            lease_ms: 15_000,
            limit,
            depth,
            per_callback,
            exclude_tenants: &[],
        })
        .await
        .unwrap()
}

/// `Node::finish` on any store, such as a second node's.
async fn finish_in(
    store: &Store,
    now: u64,
    owner: &str,
    claimed: &Claimed,
) -> (bool, Option<Claimed>) {
    let mut done = claimed.delivery.clone();
    done.status = DeliveryStatus::Succeeded;
    done.next_attempt_at = None;
    let handover = Handover {
        now,
        lease_ms: 15_000,
    };
    let completed = store
        .deliveries()
        .complete(owner, claimed.lease_until, (done, None), Some(handover))
        .await
        .unwrap();
    (completed.held, completed.next)
}

/// Completes each of `claimed` at once, asking for handovers, and answers
/// in order. On PostgreSQL all but the first are made in one statement:
/// `session` holds the first's row until the writer waits for it, and lets
/// go once the rest are queued behind.
async fn finish_together(
    store: &Store,
    session: &mut Session,
    now: u64,
    owner: &str,
    claimed: &[Claimed],
) -> Vec<(bool, Option<Claimed>)> {
    let finish = |claimed: &Claimed| {
        let (store, owner, claimed) = (store.clone(), owner.to_string(), claimed.clone());
        tokio::spawn(async move { finish_in(&store, now, &owner, &claimed).await })
    };
    session.lock(&claimed[0].delivery.id).await;
    let mut tasks = vec![finish(&claimed[0])];
    session.wait_for_waiter().await;
    tasks.extend(claimed[1..].iter().map(finish));
    // Each task queues its completion when first polled, before it waits
    // for anything, and this runtime polls them in turn at this sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    session.release().await;
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap());
    }
    done
}

/// The test's own session on a PostgreSQL node's database, to read what
/// the node's statements wrote and to hold its writer up; sled has none.
struct Session(Option<sqlx::PgConnection>);

impl Session {
    async fn open(dir: &std::path::Path) -> Session {
        match backends::current() {
            Backend::Sled => Session(None),
            Backend::Postgres => {
                let url = backends::database_for(dir).await;
                Session(Some(sqlx::PgConnection::connect(&url).await.unwrap()))
            }
        }
    }

    /// The slot whose lease delivery `id` is in, if any; sled numbers none.
    async fn slot_of(&mut self, id: &str) -> Option<i64> {
        let conn = self.0.as_mut()?;
        sqlx::query_scalar("SELECT lease_slot FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// Asserts that one transaction last wrote every delivery of
    /// `claimed`: the rows it writes carry its id. The writer makes each
    /// statement a transaction of its own.
    async fn assert_one_transaction<'a>(&mut self, claimed: impl IntoIterator<Item = &'a Claimed>) {
        let Some(conn) = self.0.as_mut() else { return };
        let ids: Vec<String> = claimed.into_iter().map(|c| c.delivery.id.clone()).collect();
        let writers: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT xmin::text FROM deliveries WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(conn)
                .await
                .unwrap();
        assert_eq!(writers.len(), 1, "written by {writers:?}");
    }

    /// Locks delivery `id`'s row until `release`.
    async fn lock(&mut self, id: &str) {
        let Some(conn) = self.0.as_mut() else { return };
        sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        sqlx::query("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    /// Waits until another session waits for a lock this one holds.
    async fn wait_for_waiter(&mut self) {
        let Some(conn) = self.0.as_mut() else { return };
        for _ in 0..200 {
            // `pg_locks` is read afresh each time, where `pg_stat_activity`
            // would keep the sessions as this transaction first saw them.
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks
                 WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no statement waited for the locked row");
    }

    async fn release(&mut self) {
        let Some(conn) = self.0.as_mut() else { return };
        sqlx::query("COMMIT").execute(conn).await.unwrap();
    }
}

backend_test! {
    async fn a_finished_attempt_hands_its_lease_to_the_callbacks_next_due_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        // A second callback for the same events: a handover never crosses
        // to it.
        let other = node.second_callback(&sink).await;
        node.emit_apart(5).await;
        let callback_of = |c: &Claimed| c.delivery.callback_id.clone();

        // Two slots per callback, both taken.
        let first = node.claim("n1", 4, 2).await;
        assert_eq!(first.len(), 4);
        let sink_id = first
            .iter()
            .map(callback_of)
            .find(|id| *id != other)
            .unwrap();
        let mine: Vec<&Claimed> = first.iter().filter(|c| callback_of(c) == sink_id).collect();
        let (held, next) = node.finish("n1", mine[0]).await;
        assert!(held);
        let next = next.expect("the callback has three more due");
        assert_eq!(callback_of(&next), sink_id, "handed over within the callback");
        // Events came 1 ms apart, and claims take the earliest due first.
        let latest = mine.iter().filter_map(|c| c.delivery.next_attempt_at).max();
        assert_eq!(
            next.delivery.next_attempt_at,
            latest.map(|at| at + 1),
            "the earliest due comes first"
        );
        assert!(
            node.claim("n2", 10, 2).await.is_empty(),
            "the handover kept the callback at its limit of two"
        );

        // Two completions at once each get a delivery of their own.
        let (a, b) = tokio::join!(node.finish("n1", mine[1]), node.finish("n1", &next));
        let (a, b) = (a.1.expect("one of two left"), b.1.expect("one of two left"));
        assert_ne!(a.delivery.id, b.delivery.id, "one delivery handed to two");
        let seen: Vec<&str> = [mine[0], mine[1], &next, &a, &b]
            .iter()
            .map(|c| c.delivery.id.as_str())
            .collect();
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "every delivery once: {seen:?}");

        // Nothing left due: the slot goes back, and a lease another owner
        // holds passes nothing on.
        assert!(node.finish("n1", &a).await.1.is_none());
        let (held, next) = node.finish("intruder", &b).await;
        assert!(!held && next.is_none(), "only the lease's holder hands over");
        let (held, next) = node.finish("n1", &b).await;
        assert!(held && next.is_none());
        // The other callback still holds its two leases of three allowed.
        let last = node.claim("n2", 10, 3).await;
        assert_eq!(last.len(), 1);
        assert_eq!(callback_of(&last[0]), other);
    }
}

/// On PostgreSQL, a second store on a node's database, as a second node
/// has it: it holds none of the events the node stored. None on sled.
async fn second_store(dir: &std::path::Path) -> Option<Store> {
    match backends::current() {
        Backend::Sled => None,
        Backend::Postgres => {
            let url = backends::database_for(dir).await;
            let changes = Changes::default();
            let backend = PgStore::connect(&url, changes.clone(), "second".into());
            Some(Store::new(Arc::new(backend.await.unwrap()), changes))
        }
    }
}

backend_test! {
    async fn a_delivery_claimed_or_handed_over_comes_with_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        // Two callbacks, so that two deliveries of an event are claimed.
        node.second_callback(&sink).await;
        node.emit(3).await;
        // In a cluster, most deliveries are of events another node took:
        // on PostgreSQL, a second store on the database claims and
        // completes them, as a second node would.
        let second = second_store(dir.path()).await;
        let store = second.as_ref().unwrap_or(&node.store);
        let claimed = claim_in(store, node.clock.now_ms(), "n2", 4, 1, 2).await;
        let claimed: Vec<&Claimed> = claimed.iter().flatten().collect();
        assert_eq!(claimed.len(), 4);
        let mut events = HashSet::new();
        for claimed in &claimed {
            let event = claimed.event.as_ref().expect("a claim came without its event");
            assert_eq!(event.event.id, claimed.delivery.event_id);
            assert_eq!(event.tenant_id, claimed.delivery.tenant_id);
            events.insert(&event.event.id);
        }
        assert_eq!(events.len(), 2, "each callback's first two events");
        let first = claimed[0];
        let (_, next) = finish_in(store, node.clock.now_ms(), "n2", first).await;
        let next = next.expect("its callback has one more due");
        let event = next.event.expect("the delivery came without its event");
        assert_eq!(event.event.id, next.delivery.event_id);
        assert_eq!(event.tenant_id, next.delivery.tenant_id);
    }
}

backend_test! {
    async fn a_claim_reads_at_most_16_mib_of_events() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        let large = "x".repeat(1_000_000);
        for n in 0..20 {
            let event = serde_json::from_value(json!({"object_type": "app",
                "action": "created", "phase": "after", "data": {"n": n, "large": large}}))
            .unwrap();
            node.events.emit(&node.tenant, event, None).await.unwrap();
        }
        let second = second_store(dir.path()).await;
        let store = second.as_ref().unwrap_or(&node.store);
        let claimed = claim_in(store, node.clock.now_ms(), "n2", 20, 1, 20).await;
        let claimed: Vec<&Claimed> = claimed.iter().flatten().collect();
        assert_eq!(claimed.len(), 20);
        let mut read = 0;
        for claimed in &claimed {
            if let Some(event) = &claimed.event {
                assert_eq!(event.event.id, claimed.delivery.event_id);
                read += 1;
            }
        }
        // Each event's record is a little over 1,000,000 bytes: sixteen
        // fit in 16 MiB, and seventeen do not. Sled has them all at hand.
        let expected = match backends::current() {
            Backend::Postgres => 16,
            Backend::Sled => 20,
        };
        assert_eq!(read, expected);
    }
}

backend_test! {
    async fn completions_made_together_each_hand_over_within_their_own_callback_and_slot() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        // A second callback for the same events, so that one batch of
        // completions spans two callbacks.
        node.second_callback(&sink).await;
        node.emit_apart(10).await;
        // Three slots of up to two for each callback (sled's hold one).
        let slots = node.slots("n1", 6, 2, 3).await;
        assert_eq!(slots.len(), 6);
        let claimed: Vec<&Claimed> = slots.iter().flatten().collect();

        // The slots, as PostgreSQL numbers them, before they hand over.
        let mut session = Session::open(dir.path()).await;
        let mut numbers = Vec::new();
        for slot in &slots {
            numbers.push(session.slot_of(&slot[0].delivery.id).await);
        }
        if matches!(backends::current(), Backend::Postgres) {
            let distinct: HashSet<Option<i64>> = numbers.iter().copied().collect();
            assert!(!distinct.contains(&None), "a slot without a number");
            assert_eq!(distinct.len(), slots.len(), "slots share a number");
        }

        // The first of every slot completes; all but the first are made in
        // one statement on PostgreSQL.
        let firsts: Vec<Claimed> = slots.iter().map(|slot| slot[0].clone()).collect();
        let now = node.clock.now_ms();
        let done = finish_together(&node.store, &mut session, now, "n1", &firsts).await;
        let mut handed: HashMap<String, Vec<u64>> = HashMap::new();
        let mut nexts = Vec::new();
        for ((first, (held, next)), number) in firsts.iter().zip(done).zip(&numbers) {
            assert!(held);
            let next = next.expect("each callback has four more due");
            let callback = &first.delivery.callback_id;
            assert_eq!(&next.delivery.callback_id, callback, "handed across callbacks");
            assert!(
                claimed.iter().all(|c| c.delivery.id != next.delivery.id),
                "a delivery already held was handed over"
            );
            assert_eq!(
                &session.slot_of(&next.delivery.id).await,
                number,
                "handed into another slot"
            );
            let due = next.delivery.next_attempt_at.unwrap();
            handed.entry(callback.clone()).or_default().push(due);
            nexts.push(next);
        }
        let callbacks: HashSet<&str> = firsts[1..]
            .iter()
            .map(|c| c.delivery.callback_id.as_str())
            .collect();
        assert_eq!(callbacks.len(), 2, "the batch spans both callbacks");
        session
            .assert_one_transaction(firsts[1..].iter().chain(&nexts[1..]))
            .await;
        // Each callback's next three due, one to each completion: events
        // came 1 ms apart.
        assert_eq!(handed.len(), 2);
        for (callback, mut due) in handed {
            due.sort();
            let latest = claimed
                .iter()
                .filter(|c| c.delivery.callback_id == callback)
                .filter_map(|c| c.delivery.next_attempt_at)
                .max()
                .unwrap();
            assert_eq!(due, [latest + 1, latest + 2, latest + 3], "{callback}");
        }
        // Each handover took its completion's slot: each callback still
        // holds three, so at a limit of four another node gets one slot of
        // each.
        let more = node.slots("n2", 10, 1, 4).await;
        assert_eq!(more.len(), 2, "{more:?}");
    }
}

backend_test! {
    async fn a_completion_is_never_handed_a_delivery_completed_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        let due = node.emit_apart(4).await;
        // Two slots whose leases end 10 s before a third's.
        let early = node.claim("n1", 2, 3).await;
        node.clock.advance(Duration::from_secs(10));
        let late = node.claim("n1", 1, 3).await;
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].delivery.id, due[2]);
        // The early leases end, and no one takes them over: their
        // deliveries are due and free, as the statement that completes
        // them reads them.
        node.clock.advance(Duration::from_millis(5_001));
        let mut session = Session::open(dir.path()).await;
        let batch = [early[0].clone(), early[1].clone(), late[0].clone()];
        let now = node.clock.now_ms();
        let done = finish_together(&node.store, &mut session, now, "n1", &batch).await;
        assert!(done.iter().all(|(held, _)| *held), "no one else took them");
        assert!(done[1].1.is_none(), "an ended lease was handed over");
        let next = done[2].1.as_ref().expect("one more is due");
        assert_eq!(next.delivery.id, due[3], "not the one completed beside it");
        session
            .assert_one_transaction([&batch[1], &batch[2], next])
            .await;
    }
}

backend_test! {
    async fn an_ended_lease_hands_nothing_over() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        node.emit(2).await;
        let first = node.claim("slow", 1, 1).await;
        assert_eq!(first.len(), 1);
        // The attempt outlived its lease; no one took the delivery since,
        // but a claim may have counted its slot free.
        node.clock.advance(Duration::from_millis(15_001));
        let (held, next) = node.finish("slow", &first[0]).await;
        assert!(held, "no one took it over");
        assert!(next.is_none(), "an ended lease was handed over");
        assert_eq!(node.claim("n2", 10, 1).await.len(), 1, "the other is free");
    }
}

backend_test! {
    async fn a_slot_holds_several_deliveries_and_the_callbacks_limit_counts_slots() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        // The deliveries, oldest due first.
        let due = node.emit_apart(10).await;
        let ids_of = |slot: &[Claimed]| -> Vec<String> {
            slot.iter().map(|c| c.delivery.id.clone()).collect()
        };

        // Two slots for the callback. PostgreSQL deals the oldest eight
        // over them in turn; sled, whose records never keep an attempt
        // waiting, gives each slot one.
        let slots = node.slots("n1", 10, 4, 2).await;
        assert_eq!(slots.len(), 2);
        let expected: [Vec<String>; 2] = match backends::current() {
            Backend::Postgres => [
                vec![due[0].clone(), due[2].clone(), due[4].clone(), due[6].clone()],
                vec![due[1].clone(), due[3].clone(), due[5].clone(), due[7].clone()],
            ],
            Backend::Sled => [vec![due[0].clone()], vec![due[1].clone()]],
        };
        let mut got = [ids_of(&slots[0]), ids_of(&slots[1])];
        got.sort();
        assert_eq!(got, expected, "each slot oldest first");
        assert!(
            node.claim("n2", 10, 2).await.is_empty(),
            "two slots are the callback's limit, however many deliveries they hold"
        );
        assert_eq!(
            node.claim("n2", 10, 3).await.len(),
            1,
            "a third slot takes one"
        );

        // A handover stays in its slot: the count does not move.
        let (held, next) = node.finish("n1", &slots[0][0]).await;
        assert!(held);
        assert!(next.is_some(), "more are due");
        assert!(node.claim("n2", 10, 3).await.is_empty(), "still three slots");

        // A delivery whose lease ended while it waited in its slot, taken
        // again by the same node into a new slot, is that slot's alone: the
        // old slot can neither extend, nor give back, nor complete the new
        // lease.
        let waiting = slots[1].last().unwrap().clone();
        node.clock.advance(Duration::from_millis(15_001));
        let now = node.clock.now_ms();
        let again = node.slots("n1", 20, 8, 16).await;
        let taken = again
            .iter()
            .flatten()
            .find(|c| c.delivery.id == waiting.delivery.id)
            .expect("claimed again")
            .clone();
        let deliveries = node.store.deliveries();
        // Asked to be live only at 0, so only the lease's end can refuse.
        let stale = deliveries.extend_lease("n1", &waiting, 0, now + 20_000).await;
        assert!(!stale.unwrap(), "the old slot would attempt it too");
        deliveries.release("n1", std::slice::from_ref(&waiting)).await.unwrap();
        let (late, _) = finish_in(&node.store, now, "n1", &waiting).await;
        assert!(!late, "the old slot completed the new one's lease");
        let extended = deliveries.extend_lease("n1", &taken, now, now + 20_000).await;
        assert!(extended.unwrap(), "the old slot ended the new one's lease");
    }
}

backend_test! {
    async fn a_few_due_deliveries_fill_as_many_slots() {
        let dir = tempfile::tempdir().unwrap();
        let sink = receiver(200).await;
        let node = node(dir.path(), &sink).await;
        node.emit(3).await;
        let slots = node.slots("n1", 10, 8, 16).await;
        let sizes: Vec<usize> = slots.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, 1], "three receivers' requests at once, not in a row");

        // With one slot free on the node, a slot still holds no more than
        // its depth.
        node.emit(3).await;
        let slots = node.slots("n2", 1, 2, 16).await;
        let sizes: Vec<usize> = slots.iter().map(Vec::len).collect();
        let expected = match backends::current() {
            Backend::Postgres => [2],
            Backend::Sled => [1],
        };
        assert_eq!(sizes, expected);
        assert_eq!(node.slots("n2", 10, 8, 16).await.len(), 3 - expected[0]);
    }
}
