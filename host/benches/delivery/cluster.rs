//! The backends compared: real `hookgate serve` processes, one receiver,
//! load spread round-robin over the nodes. Deliveries run while the events
//! are emitted, so the rate at which emits were accepted, and how much was
//! delivered by the last one, tell the intake's part from the drain's.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};
use sqlx::Connection;

use super::{ADMIN_TOKEN, fixtures};

/// Clients emitting at once, over all nodes.
const CLIENTS: usize = 256;
/// Clients asking for gates at once, and for how long.
const GATE_CLIENTS: usize = 32;
const GATE_SECONDS: u64 = 5;

/// What the receiver saw: how many times each event arrived.
#[derive(Default)]
struct Seen(Mutex<HashMap<String, usize>>);

async fn receive(State(seen): State<Arc<Seen>>, body: Bytes) -> &'static str {
    if let Ok(body) = serde_json::from_slice::<Value>(&body) {
        let id = body["event_id"].as_str().unwrap_or_default().to_string();
        *seen.0.lock().unwrap().entry(id).or_insert(0) += 1;
    }
    "ok"
}

/// A node: the process and its address.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, database: Option<&str>) -> anyhow::Result<Node> {
    let mut command = Command::new(fixtures::hookgate_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("HOOKGATE_ALLOW_PRIVATE_TARGETS", "true")
        .env("HOOKGATE_DELIVERY__MAX_PENDING", "1000000")
        .env("RUST_LOG", "hookgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = database {
        command.env("HOOKGATE_DATABASE", url);
    }
    let mut child = command.spawn()?;
    let err = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60))?;
    Ok(Node { child, base })
}

/// CPU seconds a process has used, user and system.
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which may hold spaces, in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// CPU seconds every `postgres` process on this machine has used.
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with("postgres"))
        })
        .map(cpu_of)
        .sum()
}

/// One configuration's results.
struct Row {
    name: String,
    delivered_per_s: f64,
    /// Emits accepted per second, while the deliveries run alongside.
    emitted_per_s: f64,
    /// Of the events, the share delivered by the time the last emit was
    /// accepted.
    delivered_at_intake_end: f64,
    /// Deliveries per second after that, with intake idle.
    drained_per_s: f64,
    /// CPU per delivery after that, of the nodes, PostgreSQL and this
    /// process (the receiver) together: what a delivery costs the machine.
    drain_cpu_ms: f64,
    duplicates: usize,
    node_cpu_ms_per_event: f64,
    pg_cpu_ms_per_event: f64,
    gates_per_s: f64,
    node_cpu_ms_per_gate: f64,
    pg_cpu_ms_per_gate: f64,
}

/// Runs sled with one node, then PostgreSQL with one node and up to
/// `max_nodes` (at most three), and prints the table.
pub(super) async fn compare(server: &str, events: usize, max_nodes: usize) -> anyhow::Result<()> {
    let seen = Arc::new(Seen::default());
    let receiver = axum::Router::new()
        .fallback(receive)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut rows = Vec::new();
    for (name, nodes, postgres) in [
        ("sled, 1 node", 1, false),
        ("PostgreSQL, 1 node", 1, true),
        ("PostgreSQL, 2 nodes", 2, true),
        ("PostgreSQL, 3 nodes", 3, true),
    ]
    .into_iter()
    .filter(|&(_, nodes, _)| nodes <= max_nodes)
    {
        seen.0.lock().unwrap().clear();
        let database = if postgres {
            Some(fresh_database(server).await?)
        } else {
            None
        };
        let dirs: Vec<tempfile::TempDir> = (0..nodes)
            .map(|_| tempfile::tempdir())
            .collect::<Result<_, _>>()?;
        let started: Vec<Node> = dirs
            .iter()
            .map(|d| start(d.path(), database.as_ref().map(|(_, url)| url.as_str())))
            .collect::<Result<_, _>>()?;
        let row = measure(name, &started, &receiver_url, &seen, events).await;
        // The nodes go first: a database with sessions cannot be dropped.
        drop(started);
        if let Some((name, _)) = &database {
            drop_database(server, name).await?;
        }
        let row = row?;
        eprintln!(
            "{name}: {:.0} delivered/s, {:.0} gates/s",
            row.delivered_per_s, row.gates_per_s
        );
        rows.push(row);
    }

    println!(
        "\nbackends compared: {events} after-events from {CLIENTS} clients through a transform plugin, then {GATE_CLIENTS} clients of plugin gates for {GATE_SECONDS} s"
    );
    println!(
        "{:<22} {:>12} {:>10} {:>8} {:>9} {:>10} {:>10} {:>14} {:>12} {:>10} {:>14} {:>12}",
        "configuration",
        "delivered/s",
        "emitted/s",
        "by then",
        "then /s",
        "then ms/d",
        "dup first",
        "node ms/event",
        "pg ms/event",
        "gates/s",
        "node ms/gate",
        "pg ms/gate"
    );
    for row in &rows {
        println!(
            "{:<22} {:>12.0} {:>10.0} {:>7.0}% {:>9.0} {:>10.3} {:>10} {:>14.3} {:>12.3} {:>10.0} {:>14.3} {:>12.3}",
            row.name,
            row.delivered_per_s,
            row.emitted_per_s,
            row.delivered_at_intake_end * 100.0,
            row.drained_per_s,
            row.drain_cpu_ms,
            row.duplicates,
            row.node_cpu_ms_per_event,
            row.pg_cpu_ms_per_event,
            row.gates_per_s,
            row.node_cpu_ms_per_gate,
            row.pg_cpu_ms_per_gate
        );
    }
    let met = |met: bool| if met { "MET" } else { "NOT MET" };
    let one = rows.get(1).map(|r| r.delivered_per_s);
    let three = rows.get(3).map(|r| r.delivered_per_s);
    println!(
        "targets: PostgreSQL 1 node >= 5000 delivered/s: {}; 3 nodes >= 1 node: {}; no duplicate first attempts: {}",
        one.map_or("not run", |one| met(one >= 5000.0)),
        three
            .zip(one)
            .map_or("not run", |(three, one)| met(three >= one)),
        met(rows.iter().all(|r| r.duplicates == 0))
    );
    Ok(())
}

/// A new database for one configuration: its name and URL.
async fn fresh_database(server: &str) -> anyhow::Result<(String, String)> {
    let name = format!("hg_bench_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut admin = sqlx::PgConnection::connect(server).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let mut url = url::Url::parse(server)?;
    url.set_path(&format!("/{name}"));
    Ok((name, url.to_string()))
}

/// Drops a configuration's database, so that runs leave nothing behind.
/// An autovacuum worker busy on the database after the load is not ours to
/// terminate, so the drop is tried again until it has finished.
async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(server).await?;
    let drop = format!("DROP DATABASE {name} WITH (FORCE)");
    let mut tries = 0;
    loop {
        match sqlx::query(&drop).execute(&mut admin).await {
            Ok(_) => return Ok(()),
            Err(err) if tries < 30 => {
                tries += 1;
                eprintln!("dropping {name} again in 1 s: {err}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

async fn measure(
    name: &str,
    nodes: &[Node],
    receiver_url: &str,
    seen: &Seen,
    events: usize,
) -> anyhow::Result<Row> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = &nodes[0].base;
    let tenant: Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let key = tenant["api_key"].as_str().unwrap_or_default().to_string();
    for (plugin, callback) in [
        (
            "app-defaults",
            json!({"name": "bench", "object_type": "app", "phase": "after", "url": receiver_url}),
        ),
        (
            "rate-policy",
            json!({"name": "limits", "object_type": "policy", "phase": "before"}),
        ),
    ] {
        let uploaded: Value = client
            .post(format!("{base}/v1/plugins?name={plugin}"))
            .bearer_auth(&key)
            .body(fixtures::plugin(plugin))
            .send()
            .await?
            .json()
            .await?;
        let mut callback = callback;
        callback["plugin"] = json!({"id": uploaded["id"]});
        let created = client
            .post(format!("{base}/v1/callbacks"))
            .bearer_auth(&key)
            .json(&callback)
            .send()
            .await?;
        anyhow::ensure!(created.status() == 201, "{name}: {}", created.text().await?);
    }
    // Every node knows the callbacks before the load starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.base.clone()).collect());
    let cpu = |nodes: &[Node]| -> f64 { nodes.iter().map(|n| cpu_of(n.child.id())).sum() };
    let machine = || cpu(nodes) + postgres_cpu() + cpu_of(std::process::id());
    let (node_cpu, pg_cpu) = (cpu(nodes), postgres_cpu());
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, bases, key, next) = (client.clone(), bases.clone(), key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= events {
                    break anyhow::Ok(());
                }
                let event = json!({"object_type": "app", "action": "created", "phase": "after",
                    "data": {"name": format!("app-{n}"), "owner": "bench"}});
                client
                    .post(format!("{}/v1/events", bases[n % bases.len()]))
                    .bearer_auth(&key)
                    .json(&event)
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let emitted = started.elapsed().as_secs_f64();
    let delivered_by_then = seen.0.lock().unwrap().len();
    let machine_by_then = machine();
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.0.lock().unwrap().len() < events {
        anyhow::ensure!(Instant::now() < deadline, "{name}: not every event arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let (node_used, pg_used) = (cpu(nodes) - node_cpu, postgres_cpu() - pg_cpu);
    let drained = (events - delivered_by_then) as f64;
    let drain_cpu_ms = (machine() - machine_by_then) * 1000.0 / drained.max(1.0);
    // A late second first attempt would show now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let duplicates = seen.0.lock().unwrap().values().filter(|n| **n > 1).count();

    let (node_cpu, pg_cpu) = (cpu(nodes), postgres_cpu());
    let gated = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(GATE_SECONDS);
    let mut tasks = Vec::new();
    for c in 0..GATE_CLIENTS {
        let (client, bases, key, gated) =
            (client.clone(), bases.clone(), key.clone(), gated.clone());
        tasks.push(tokio::spawn(async move {
            let base = &bases[c % bases.len()];
            let policy = json!({"object_type": "policy", "action": "updated", "phase": "before",
                "data": {"rules": [{"name": "steady", "rps": 50}]}});
            while Instant::now() < until {
                client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .json(&policy)
                    .send()
                    .await?
                    .error_for_status()?;
                gated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let gates = gated.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let (gate_node, gate_pg) = (cpu(nodes) - node_cpu, postgres_cpu() - pg_cpu);

    Ok(Row {
        name: name.to_string(),
        delivered_per_s: events as f64 / took,
        emitted_per_s: events as f64 / emitted,
        delivered_at_intake_end: delivered_by_then as f64 / events as f64,
        drained_per_s: drained / (took - emitted).max(1e-3),
        drain_cpu_ms,
        duplicates,
        node_cpu_ms_per_event: node_used * 1000.0 / events as f64,
        pg_cpu_ms_per_event: pg_used * 1000.0 / events as f64,
        gates_per_s: gates / GATE_SECONDS as f64,
        node_cpu_ms_per_gate: gate_node * 1000.0 / gates,
        pg_cpu_ms_per_gate: gate_pg * 1000.0 / gates,
    })
}
