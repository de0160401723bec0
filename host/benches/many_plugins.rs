//! A node holding many plugins: 1,000 versions of the rate-policy example
//! (identical bytes, as when a tenant keeps re-uploading), then a restart of
//! the real `hookgate serve` process. Prints the time from start to
//! `/healthz`, the first gate that runs the last plugin (loaded on first
//! use), and the node's resident memory once idle.
//!
//! Run with `cargo bench -p hookgate --bench many_plugins`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[path = "../../tests/it/fixtures.rs"]
mod fixtures;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const PLUGINS: usize = 1000;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let bin = fixtures::hookgate_bin();
    let wasm = fixtures::plugin("rate-policy");
    let dir = tempfile::tempdir()?;
    let client = reqwest::Client::new();

    let (mut node, base) = start(&bin, dir.path(), &client).await?;
    let tenant: Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "many"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = tenant["api_key"].as_str().context("api_key")?.to_string();
    let uploading = Instant::now();
    let mut last = String::new();
    for i in 0..PLUGINS {
        let uploaded: Value = client
            .post(format!("{base}/v1/plugins?name=p{i}"))
            .bearer_auth(&key)
            .body(wasm.clone())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        last = uploaded["id"].as_str().context("id")?.to_string();
    }
    let uploads = uploading.elapsed();
    client
        .post(format!("{base}/v1/callbacks"))
        .bearer_auth(&key)
        .json(
            &json!({"name": "gate", "object_type": "policy", "phase": "before",
            "plugin": {"id": last}}),
        )
        .send()
        .await?
        .error_for_status()?;
    let (before_restart, _) = gate(&client, &base, &key).await?;
    let rss_before = rss_mib(&node)?;
    stop(&mut node)?;

    let started = Instant::now();
    let (mut node, base) = start(&bin, dir.path(), &client).await?;
    let up = started.elapsed();
    let (first_gate, allowed) = gate(&client, &base, &key).await?;
    if allowed {
        bail!("the plugin should have denied the policy");
    }
    let (warm_gate, _) = gate(&client, &base, &key).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_mib(&node)?;
    stop(&mut node)?;

    println!(
        "{PLUGINS} plugins uploaded in {:.1} s",
        uploads.as_secs_f64()
    );
    println!("before the restart: {rss_before:.0} MiB resident, gate {before_restart:?}");
    println!("restart to /healthz: {:.0} ms", up.as_secs_f64() * 1000.0);
    println!(
        "first gate after the restart (loads the plugin): {first_gate:?}; next: {warm_gate:?}"
    );
    println!("idle 2 s after the restart: {rss:.0} MiB resident");
    Ok(())
}

/// Starts `hookgate serve` on a free port and waits for `/healthz`.
async fn start(
    bin: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .env("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("HOOKGATE_DATABASE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let healthy = client.get(format!("{base}/healthz")).send().await;
        if healthy.is_ok_and(|r| r.status().is_success()) {
            return Ok((child, base));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("hookgate did not answer /healthz within 60 s")
}

/// A before-event for a policy the rate-policy plugin denies: its time and
/// whether it was allowed.
async fn gate(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    let answer: Value = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(
            &json!({"object_type": "policy", "action": "updated", "phase": "before",
            "data": {"rules": [{"name": "burst", "rps": 500}]}}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok((started.elapsed(), answer["allowed"] == true))
}

fn stop(node: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()?;
    node.wait()?;
    Ok(())
}

/// The process's resident set, from /proc.
fn rss_mib(node: &Child) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.id()))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}
