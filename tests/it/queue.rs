//! The leased delivery queue: several deliverers sharing one store, as
//! several nodes share one database, built from the library's parts.

use std::collections::HashMap;
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
use hookgate::store::{Changes, Claim, SledStore, Store};
use serde_json::json;

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
    let changes = Changes::default();
    let store = Store::new(
        Arc::new(SledStore::open(dir, changes.clone()).unwrap()),
        changes,
    );
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
    fn deliverer(&self, owner: &str) -> Deliverer {
        Deliverer::start(
            self.store.clone(),
            self.callbacks.clone(),
            self.plugins.clone(),
            HttpClient::new(true),
            Config::defaults().delivery,
            Arc::new(self.clock.clone()),
            owner.to_string(),
        )
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
    let first = node.deliverer("node-a");
    let second = node.deliverer("node-b");
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
            per_callback: 16,
            exclude_tenants: &[],
        })
        .await
        .unwrap();
    assert_eq!(held.len(), 3);

    let survivor = node.deliverer("survivor");
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
        .complete("vanished", (late, None))
        .await
        .unwrap();
    assert!(!applied, "only the lease's holder completes");
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
