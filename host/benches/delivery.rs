//! After-event delivery end to end: a real Hookgate on loopback delivers
//! events through a transform plugin (`app-defaults`), with signing and
//! history, to a local receiver. It reports:
//!
//! - throughput: N events emitted by 256 concurrent clients, delivered
//!   events per second from the first emit to the last receipt. Every
//!   emit waits for its event to reach the disk, so a few clients measure
//!   the disk's flush latency rather than what Hookgate can carry;
//! - latency: events emitted at a fixed rate, p50/p99 from sending the
//!   emit (so including its durable write) to the receiver getting the
//!   delivery;
//! - the raw ceiling: the same HTTP client POSTing straight to the same
//!   receiver, and the ratio of the two.
//!
//! Run with `cargo bench -p hookgate --bench delivery`; `DELIVERY_BENCH_EVENTS`
//! (default 20000), `DELIVERY_BENCH_RATE` (events/s, default 2000) and
//! `DELIVERY_BENCH_CLIENTS` (default 256) adjust it.
//!
//! With `-- --database postgres://…` (a role that may create databases) it
//! compares the backends instead, each node a `hookgate serve` process:
//! sled with one node, then PostgreSQL with one, two and three nodes
//! (`DELIVERY_BENCH_NODES` stops at fewer, for a quicker comparison). For
//! each it reports delivered events/s, duplicate first attempts, gates/s,
//! and the CPU each event and gate cost, the nodes' and PostgreSQL's apart.
//! It also splits each run at the last accepted emit: the rate of emits,
//! the share delivered by then, and the drain after it, its rate and the
//! CPU each delivery cost the machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use hookgate::app::Application;
use hookgate::config::Config;
use hookgate::outbound::{HttpClient, Request};
use hookgate::plugin::Outgoing;
use serde_json::{Value, json};
use tokio::sync::Notify;

#[path = "../../tests/it/fixtures.rs"]
mod fixtures;

#[path = "delivery/cluster.rs"]
mod cluster;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

/// What the receiver saw: when each event id arrived.
#[derive(Default)]
struct Receipts {
    at: Mutex<HashMap<String, Instant>>,
    arrived: Notify,
}

async fn receive(
    State(receipts): State<Arc<Receipts>>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let now = Instant::now();
    let id = match serde_json::from_slice::<Value>(&body) {
        Ok(body) => body["event_id"].as_str().unwrap_or_default().to_string(),
        Err(_) => headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    };
    receipts.at.lock().unwrap().entry(id).or_insert(now);
    receipts.arrived.notify_waiters();
    "ok"
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--database") {
        let url = args
            .get(at + 1)
            .ok_or_else(|| anyhow::anyhow!("--database needs a postgres:// URL"))?;
        let events = env("DELIVERY_BENCH_EVENTS", 20_000);
        return cluster::compare(url, events, env("DELIVERY_BENCH_NODES", 3)).await;
    }
    let events = env("DELIVERY_BENCH_EVENTS", 20_000);
    let rate = env("DELIVERY_BENCH_RATE", 2_000);
    let clients = env("DELIVERY_BENCH_CLIENTS", 256);

    let receipts = Arc::new(Receipts::default());
    let receiver = axum::Router::new()
        .fallback(receive)
        .with_state(receipts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir()?;
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.path().to_path_buf();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.allow_private_targets = true;
    config.delivery.max_pending = 1_000_000;
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let client = reqwest::Client::builder().no_proxy().build()?;
    let tenant: Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let key = tenant["api_key"].as_str().unwrap_or_default().to_string();
    let plugin: Value = client
        .post(format!("{base}/v1/plugins?name=app-defaults"))
        .bearer_auth(&key)
        .body(fixtures::plugin("app-defaults"))
        .send()
        .await?
        .json()
        .await?;
    let created = client
        .post(format!("{base}/v1/callbacks"))
        .bearer_auth(&key)
        .json(
            &json!({"name": "bench", "object_type": "app", "phase": "after", "url": receiver_url,
            "plugin": {"id": plugin["id"]}}),
        )
        .send()
        .await?;
    anyhow::ensure!(
        created.status() == 201,
        "callback: {}",
        created.text().await?
    );

    // Throughput: emit `events` from `clients` tasks, wait for every receipt.
    let emit = move |client: reqwest::Client, n: usize| {
        let (base, key) = (base.clone(), key.clone());
        async move {
            let sent = Instant::now();
            let event = json!({"object_type": "app", "action": "created", "phase": "after",
                "data": {"name": format!("app-{n}"), "owner": "bench"}});
            let answer: Value = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(&key)
                .json(&event)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok((
                answer["event_id"].as_str().unwrap_or_default().to_string(),
                sent,
            ))
        }
    };
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, next, emit) = (client.clone(), next.clone(), emit.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= events {
                    break anyhow::Ok(());
                }
                emit(client.clone(), n).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let emitted = started.elapsed();
    wait_for(&receipts, events, Duration::from_secs(300)).await?;
    let delivered = started.elapsed();
    let throughput = events as f64 / delivered.as_secs_f64();

    // Latency at a fixed rate: emit-answer to receipt.
    let latency_events = (rate * 5).min(events);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut pending = Vec::new();
    for n in 0..latency_events {
        ticker.tick().await;
        pending.push(tokio::spawn(emit(client.clone(), events + n)));
    }
    let mut accepted = Vec::new();
    for task in pending {
        accepted.push(task.await??);
    }
    wait_for(&receipts, events + latency_events, Duration::from_secs(300)).await?;
    let mut latencies: Vec<Duration> = {
        let at = receipts.at.lock().unwrap();
        accepted
            .iter()
            .filter_map(|(id, sent)| at.get(id).map(|got| got.saturating_duration_since(*sent)))
            .collect()
    };
    latencies.sort();

    // The raw ceiling: the same client straight to the receiver.
    let raw = HttpClient::new(true);
    let raw_started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (raw, next, url) = (raw.clone(), next.clone(), receiver_url.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < events {
                let plain = Outgoing {
                    headers: vec![("content-type".to_string(), "application/json".to_string())],
                    body: json!({"event_id": "", "data": {"name": "raw"}})
                        .to_string()
                        .into_bytes(),
                };
                let request = Request::build(&url, plain, &Default::default(), "");
                raw.send(request, Duration::from_secs(10))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let raw_rate = events as f64 / raw_started.elapsed().as_secs_f64();

    println!(
        "delivery bench: {events} events from {clients} clients through a transform plugin, signed, with history"
    );
    println!(
        "  emitted in {:.2} s ({:.0} accepted/s)",
        emitted.as_secs_f64(),
        events as f64 / emitted.as_secs_f64()
    );
    println!("  delivered {events} events/s end to end: {throughput:.0}/s");
    println!(
        "  emit-to-receipt latency at {rate}/s ({} events): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    println!("  raw ceiling, same client straight to the receiver: {raw_rate:.0}/s");
    println!(
        "  ratio delivered/raw: {:.1}%",
        throughput / raw_rate * 100.0
    );
    println!(
        "  target >= 10000 delivered/s: {}",
        if throughput >= 10_000.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    Ok(())
}

/// Waits until the receiver has `n` distinct events.
async fn wait_for(receipts: &Receipts, n: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let arrived = receipts.arrived.notified();
        let got = receipts.at.lock().unwrap().len();
        if got >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {n} events arrived"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), arrived).await;
    }
}
