//! Several `hookgate serve` processes sharing one PostgreSQL database, as
//! operators run a cluster: load spread across the nodes, a node killed
//! with -9, changes made on one node seen by the others, and the database
//! restarted under load.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backends::{self, fresh_database, postgres_url};
use crate::fixtures;
use crate::helpers::{ADMIN_TOKEN, Receiver, metric_sum, receiver};
use crate::serve::{Server, start};

/// Nodes on one fresh database, each with its own data directory.
struct Cluster {
    database: String,
    nodes: Vec<Option<Server>>,
    _dirs: Vec<tempfile::TempDir>,
    client: reqwest::Client,
}

impl Cluster {
    async fn start(n: usize) -> Option<Cluster> {
        Cluster::start_with(n, &[]).await
    }

    /// Nodes started with these settings too.
    async fn start_with(n: usize, settings: &[(&str, &str)]) -> Option<Cluster> {
        let server = postgres_url()?;
        let database = fresh_database(&server).await;
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            nodes.push(Some(node(dir.path(), &database, settings).await));
            dirs.push(dir);
        }
        Some(Cluster {
            database,
            nodes,
            _dirs: dirs,
            client: reqwest::Client::new(),
        })
    }

    fn base(&self, n: usize) -> &str {
        &self.nodes[n].as_ref().expect("node is up").base
    }

    async fn call(
        &self,
        n: usize,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base(n)))
            .bearer_auth(key)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(err) => (0, Value::String(err.to_string())),
        }
    }

    /// Node `n`'s Prometheus metrics.
    async fn metrics(&self, n: usize) -> String {
        let metrics = self.client.get(format!("{}/metrics", self.base(n)));
        metrics.send().await.unwrap().text().await.unwrap()
    }

    /// Starts one more node, with these settings.
    async fn join(&mut self, settings: &[(&str, &str)]) {
        let dir = tempfile::tempdir().unwrap();
        let joined = node(dir.path(), &self.database, settings).await;
        self.nodes.push(Some(joined));
        self._dirs.push(dir);
    }

    /// A tenant made through node 0, with its manage key.
    async fn tenant(&self) -> String {
        let (status, tenant) = self
            .call(
                0,
                "POST",
                "/v1/tenants",
                ADMIN_TOKEN,
                Some(json!({"name": "acme"})),
            )
            .await;
        assert_eq!(status, 201, "{tenant}");
        tenant["api_key"].as_str().unwrap().to_string()
    }

    /// An after-callback to `sink`, made through node 0.
    async fn callback(&self, key: &str, sink: &Receiver) -> String {
        let body =
            json!({"name": "sink", "object_type": "app", "phase": "after", "url": sink.url()});
        let (status, cb) = self.call(0, "POST", "/v1/callbacks", key, Some(body)).await;
        assert_eq!(status, 201, "{cb}");
        cb["id"].as_str().unwrap().to_string()
    }

    /// Emits `n` after-events round-robin over the nodes that are up, and
    /// returns the ids of those accepted.
    async fn emit(&self, key: &str, n: usize, from: usize) -> Vec<String> {
        let mut accepted = Vec::new();
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect();
        for i in 0..n {
            let node = up[i % up.len()];
            let event = json!({"object_type": "app", "action": "created", "phase": "after",
                "data": {"n": from + i}});
            let (status, answer) = self
                .call(node, "POST", "/v1/events", key, Some(event))
                .await;
            if status == 202 {
                accepted.push(answer["event_id"].as_str().unwrap().to_string());
            } else {
                eprintln!("node {node} refused an event with {status}: {answer}");
            }
        }
        accepted
    }

    fn stop(mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            assert!(node.terminate().success());
        }
    }
}

async fn node(dir: &std::path::Path, database: &str, settings: &[(&str, &str)]) -> Server {
    let mut envs = vec![
        ("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("HOOKGATE_ALLOW_PRIVATE_TARGETS", "true"),
        ("HOOKGATE_DATABASE", database),
    ];
    envs.extend_from_slice(settings);
    start(dir, &envs).await
}

/// How many times each event reached the receiver.
fn arrivals(sink: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for got in sink.received() {
        *seen
            .entry(got.json()["event_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

/// Waits until every accepted event has arrived, failing after `secs`.
async fn all_arrive(sink: &Receiver, accepted: &[String], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = arrivals(sink);
        let missing = accepted.iter().filter(|id| !seen.contains_key(*id)).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} accepted events never arrived",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every accepted event has arrived, then a little longer,
/// and fails if any arrived twice or any other arrived.
async fn each_arrives_once(sink: &Receiver, accepted: &[String]) {
    all_arrive(sink, accepted, 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = arrivals(sink);
    assert_eq!(seen.len(), accepted.len(), "{seen:?}");
    let twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

#[tokio::test]
async fn three_nodes_deliver_every_event_exactly_once() {
    let _shared = backends::share_server().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(200).await;
    cluster.callback(&key, &sink).await;
    let accepted = cluster.emit(&key, 300, 0).await;
    assert_eq!(accepted.len(), 300, "every node accepts");
    each_arrives_once(&sink, &accepted).await;
    cluster.stop();
}

#[tokio::test]
async fn an_event_id_sent_to_every_node_at_once_is_stored_and_delivered_once() {
    let _shared = backends::share_server().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(200).await;
    cluster.callback(&key, &sink).await;
    // Each id goes twice to each of the three nodes at once, so the nodes'
    // inserts race, and a node's batch may hold it twice.
    let mut sent = tokio::task::JoinSet::new();
    for k in 0..40 {
        for n in 0..6 {
            let request = cluster
                .client
                .post(format!("{}/v1/events", cluster.base(n % 3)))
                .bearer_auth(&key)
                .json(&json!({"id": format!("order-{k}"), "object_type": "app",
                    "action": "created", "phase": "after", "data": {"k": k}}));
            sent.spawn(async move {
                let answer = request.send().await.unwrap();
                (
                    k,
                    answer.status().as_u16(),
                    answer.json::<Value>().await.unwrap(),
                )
            });
        }
    }
    let mut answers: HashMap<usize, Vec<Value>> = HashMap::new();
    while let Some(done) = sent.join_next().await {
        let (k, status, answer) = done.unwrap();
        assert_eq!(status, 202, "order-{k}: {answer}");
        answers.entry(k).or_default().push(answer);
    }
    for (k, answers) in &answers {
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "order-{k} got different answers: {answers:?}"
        );
    }
    let ids: Vec<String> = (0..40).map(|k| format!("order-{k}")).collect();
    each_arrives_once(&sink, &ids).await;
    cluster.stop();
}

#[tokio::test]
async fn the_per_callback_limit_holds_over_the_whole_cluster_and_each_node_compiles_once() {
    let _shared = backends::share_server().await;
    let limit = [("HOOKGATE_DELIVERY__PER_CALLBACK_CONCURRENCY", "4")];
    let Some(mut cluster) = Cluster::start_with(3, &limit).await else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(200).await;
    sink.delay(300);
    let mut ids = HashMap::new();
    for name in ["app-defaults", "rate-policy"] {
        let uploaded = cluster
            .client
            .post(format!("{}/v1/plugins?name={name}", cluster.base(0)))
            .bearer_auth(&key)
            .body(fixtures::plugin(name))
            .send()
            .await
            .unwrap();
        assert_eq!(uploaded.status(), 201);
        ids.insert(name, uploaded.json::<Value>().await.unwrap()["id"].clone());
    }
    // How often a node compiled, and how often in its compile worker (which
    // only `serve` uses, and only that path measures).
    let compiled = |metrics: &str| {
        (
            metric_sum(metrics, "hookgate_plugin_compilations_total"),
            metric_sum(metrics, "hookgate_plugin_compile_peak_bytes_count"),
        )
    };
    // Every node compiles the uploads when it hears they are ready, before
    // any call needs them.
    for n in 0..3 {
        let heard = within(Duration::from_secs(30), || async {
            compiled(&cluster.metrics(n).await) == (2.0, 2.0)
        })
        .await;
        assert!(
            heard,
            "node {n} has not compiled both uploads in its worker: {:?}",
            compiled(&cluster.metrics(n).await)
        );
    }

    // A node that starts later never heard of them. Its first gate calls
    // come at once, and compile the plugin once.
    cluster.join(&limit).await;
    let gate = json!({"name": "limits", "object_type": "policy", "phase": "before",
        "plugin": {"id": ids["rate-policy"], "config": {"max_rps": 10}}});
    let (status, answer) = cluster
        .call(0, "POST", "/v1/callbacks", &key, Some(gate))
        .await;
    assert_eq!(status, 201, "{answer}");
    let policy = json!({"object_type": "policy", "action": "updated", "phase": "before",
        "data": {"rules": [{"name": "burst", "rps": 500}]}});
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = cluster
            .client
            .post(format!("{}/v1/events", cluster.base(3)))
            .bearer_auth(&key)
            .json(&policy);
        calls.spawn(async move {
            let answer = request.send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        });
    }
    while let Some(done) = calls.join_next().await {
        let (status, answer) = done.unwrap();
        assert_eq!(
            (status, &answer["allowed"]),
            (200, &json!(false)),
            "{answer}"
        );
        let reason = answer["decisions"][0]["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.contains("above the limit of 10"), "{answer}");
    }
    assert_eq!(compiled(&cluster.metrics(3).await), (1.0, 1.0));

    let body = json!({"name": "slow", "object_type": "app", "phase": "after", "url": sink.url(),
        "plugin": {"id": ids["app-defaults"]}});
    assert_eq!(
        cluster
            .call(0, "POST", "/v1/callbacks", &key, Some(body))
            .await
            .0,
        201
    );
    let accepted = cluster.emit(&key, 48, 0).await;
    assert_eq!(accepted.len(), 48);
    all_arrive(&sink, &accepted, 60).await;
    let most = sink.most_in_flight();
    assert!(
        most <= 4,
        "{most} attempts at once on one callback, over a limit of 4"
    );
    assert!(
        most >= 3,
        "only {most} at once: the load never reached the limit"
    );

    // Under load no node compiled again; the late one compiled the
    // transform once if it won a slot, however many attempts met it at once.
    // An attempt is counted once it ends, after it reached the receiver.
    let counted = within(Duration::from_secs(10), || async {
        let mut attempts = 0.0;
        for n in 0..4 {
            let metrics = cluster.metrics(n).await;
            attempts += metric_sum(&metrics, "hookgate_delivery_attempts_total");
        }
        attempts >= 48.0
    })
    .await;
    assert!(counted, "the nodes never counted 48 attempts");
    let mut attempted = Vec::new();
    for n in 0..4 {
        let metrics = cluster.metrics(n).await;
        let attempts = metric_sum(&metrics, "hookgate_delivery_attempts_total");
        let times = match n {
            3 if attempts > 0.0 => 2.0,
            3 => 1.0,
            _ => 2.0,
        };
        assert_eq!(
            compiled(&metrics),
            (times, times),
            "node {n} made {attempts} attempts"
        );
        attempted.push(attempts);
    }
    assert!(
        attempted[1..].iter().sum::<f64>() > 0.0,
        "only the uploading node delivered: {attempted:?}"
    );
    cluster.stop();
}

#[tokio::test]
async fn failures_seen_by_every_node_count_towards_one_run_and_disable_the_callback() {
    let _shared = backends::share_server().await;
    let Some(cluster) =
        Cluster::start_with(3, &[("HOOKGATE_DELIVERY__DISABLE_AFTER_FAILURES", "6")]).await
    else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(500).await;
    let body = json!({"name": "broken", "object_type": "app", "phase": "after",
        "url": sink.url(), "retry": {"max_attempts": 1}});
    let (status, cb) = cluster
        .call(0, "POST", "/v1/callbacks", &key, Some(body))
        .await;
    assert_eq!(status, 201, "{cb}");
    let path = format!("/v1/callbacks/{}", cb["id"].as_str().unwrap());

    // Four failures on each node: counted per node, none would reach six.
    let accepted = cluster.emit(&key, 12, 0).await;
    assert_eq!(accepted.len(), 12);
    let disabled = within(Duration::from_secs(20), || async {
        let (_, cb) = cluster.call(1, "GET", &path, &key, None).await;
        cb["enabled"] == false
    })
    .await;
    let (_, cb) = cluster.call(2, "GET", &path, &key, None).await;
    assert!(
        disabled,
        "the callback is still enabled after 12 failures over 3 nodes: {cb}"
    );
    let reason = cb["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("failed deliveries in a row"), "{reason}");
    cluster.stop();
}

#[tokio::test]
async fn killing_a_node_mid_load_loses_nothing() {
    let _shared = backends::share_server().await;
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(200).await;
    sink.delay(400);
    cluster.callback(&key, &sink).await;
    let accepted = cluster.emit(&key, 90, 0).await;
    assert_eq!(accepted.len(), 90);
    // Attempts are in flight on every node when node 1 dies.
    sink.wait_for(10, 30).await;
    cluster.nodes[1].take().unwrap().kill_9();
    let more = cluster.emit(&key, 30, 90).await;
    assert_eq!(more.len(), 30, "the other nodes keep accepting");
    sink.delay(0);
    let all: Vec<String> = accepted.into_iter().chain(more).collect();
    // The dead node's leases end after 15 s; the others then finish its work.
    all_arrive(&sink, &all, 90).await;
    cluster.stop();
}

#[tokio::test]
async fn a_change_on_one_node_takes_effect_on_every_node_within_a_second() {
    let _shared = backends::share_server().await;
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(200).await;

    // A key used on node 1 (so cached there), revoked on node 0.
    let (_, made) = cluster
        .call(
            0,
            "POST",
            "/v1/keys",
            &key,
            Some(json!({"name": "ci", "role": "read"})),
        )
        .await;
    let reader = made["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        cluster
            .call(1, "GET", "/v1/deliveries", &reader, None)
            .await
            .0,
        200
    );
    let revoked = format!("/v1/keys/{}", made["id"].as_str().unwrap());
    assert_eq!(cluster.call(0, "DELETE", &revoked, &key, None).await.0, 204);
    let took = within_a_second(|| async {
        cluster
            .call(1, "GET", "/v1/deliveries", &reader, None)
            .await
            .0
            == 401
    })
    .await;
    assert!(took.is_some(), "node 1 still takes a key revoked on node 0");

    // A callback used on node 1, disabled on node 0.
    let cb = cluster.callback(&key, &sink).await;
    let event = json!({"object_type": "app", "action": "created", "phase": "after", "data": {}});
    let (_, answer) = cluster
        .call(1, "POST", "/v1/events", &key, Some(event.clone()))
        .await;
    assert_eq!(answer["deliveries"].as_array().unwrap().len(), 1);
    let path = format!("/v1/callbacks/{cb}");
    assert_eq!(
        cluster
            .call(0, "PATCH", &path, &key, Some(json!({"enabled": false})))
            .await
            .0,
        200
    );
    let took = within_a_second(|| async {
        let (_, answer) = cluster
            .call(1, "POST", "/v1/events", &key, Some(event.clone()))
            .await;
        answer["deliveries"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(
        took.is_some(),
        "node 1 still delivers to a callback disabled on node 0"
    );

    // A plugin uploaded on node 0 decides a before-event on node 1.
    let uploaded = cluster
        .client
        .post(format!("{}/v1/plugins?name=rate-policy", cluster.base(0)))
        .bearer_auth(&key)
        .body(fixtures::plugin("rate-policy"))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let plugin: Value = uploaded.json().await.unwrap();
    let gate = json!({"name": "limits", "object_type": "policy", "phase": "before",
        "plugin": {"id": plugin["id"], "config": {"max_rps": 10}}});
    assert_eq!(
        cluster
            .call(0, "POST", "/v1/callbacks", &key, Some(gate))
            .await
            .0,
        201
    );
    let policy = json!({"object_type": "policy", "action": "updated", "phase": "before",
        "data": {"rules": [{"name": "burst", "rps": 500}]}});
    let took = within_a_second(|| async {
        let (_, answer) = cluster
            .call(1, "POST", "/v1/events", &key, Some(policy.clone()))
            .await;
        answer["allowed"] == false
    })
    .await;
    assert!(
        took.is_some(),
        "node 1 does not run a plugin uploaded on node 0"
    );
    cluster.stop();
}

/// Polls `check` until it holds, for up to a second; how long it took.
async fn within_a_second<F, Fut>(check: F) -> Option<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The `pg_ctlcluster` version and name of the cluster on `url`'s port.
fn local_cluster(url: &str) -> Option<(String, String)> {
    let port = url::Url::parse(url)
        .ok()?
        .port()
        .unwrap_or(5432)
        .to_string();
    let listed = std::process::Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .ok()?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&port.as_str()))
                .then(|| (fields[0].to_string(), fields[1].to_string()))
        })
}

#[tokio::test]
async fn restarting_postgres_mid_load_loses_nothing_and_the_nodes_recover() {
    // Restarting the server would break every other test using it.
    let _alone = backends::own_server().await;
    let Some(url) = postgres_url() else {
        return;
    };
    let Some((version, name)) = local_cluster(&url) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs PostgreSQL with pg_ctlcluster, and this test restarts it"
        );
        // Straight to stderr, past the harness's capture.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the test PostgreSQL is not a local pg_ctlcluster cluster"
        );
        return;
    };
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let key = cluster.tenant().await;
    let sink = receiver(200).await;
    cluster.callback(&key, &sink).await;
    let mut accepted = cluster.emit(&key, 40, 0).await;
    assert_eq!(accepted.len(), 40);

    let restart = std::process::Command::new("pg_ctlcluster")
        .args([&version, &name, "restart", "--mode", "fast"])
        .spawn()
        .unwrap();
    // Keep emitting through the restart: some are refused with 503, and
    // every one accepted must arrive.
    let started = Instant::now();
    let mut refused = 0;
    let mut n = 40;
    while started.elapsed() < Duration::from_secs(8) {
        let event =
            json!({"object_type": "app", "action": "created", "phase": "after", "data": {"n": n}});
        let (status, answer) = cluster
            .call(n % 2, "POST", "/v1/events", &key, Some(event))
            .await;
        match status {
            202 => accepted.push(answer["event_id"].as_str().unwrap().to_string()),
            503 => refused += 1,
            other => panic!("a lost database is a 503, not {other}: {answer}"),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = restart.wait_with_output();
    eprintln!("{refused} events refused during the restart");

    // Both nodes recover by themselves: healthy, accepting, delivering.
    for node in 0..2 {
        let healthy = within(Duration::from_secs(30), || async {
            cluster.call(node, "GET", "/healthz", "", None).await.0 == 200
        })
        .await;
        assert!(healthy, "node {node} did not recover");
    }
    let after = cluster.emit(&key, 10, 10_000).await;
    assert_eq!(after.len(), 10, "accepting again");
    accepted.extend(after);
    all_arrive(&sink, &accepted, 60).await;
    cluster.stop();
}

/// Polls `check` until it holds, for up to `limit`.
async fn within<F, Fut>(limit: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
