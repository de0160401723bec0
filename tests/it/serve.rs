//! `hookgate serve` as an operator runs it: the real binary, a generated
//! admin token on first start, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures;

/// A running `hookgate serve` and what it printed.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) stdout: mpsc::Receiver<String>,
}

/// Starts the binary on port 0 with `data_dir` and waits until it listens.
pub(crate) fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Server {
    let mut command = Command::new(fixtures::hookgate_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("HOOKGATE_ADMIN_TOKEN")
        .env("RUST_LOG", "hookgate=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("hookgate starts");
    let (out_tx, stdout) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let (addr_tx, addr_rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let _ = addr_tx.send(line[at + "listening on ".len()..].trim().to_string());
            }
        }
    });
    let base = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hookgate says where it listens");
    Server {
        child,
        base,
        stdout,
    }
}

impl Server {
    /// Sends SIGTERM and returns the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }

    /// Kills the process outright (SIGKILL): no shutdown, no flush.
    pub(crate) fn kill_9(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }

    /// All stdout lines printed so far.
    pub(crate) fn printed(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }
}

#[tokio::test]
async fn first_start_prints_an_admin_token_once_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let printed = server.printed();
    let token = printed
        .iter()
        .map(|line| line.trim())
        .find(|line| line.starts_with("hgadm_"))
        .unwrap_or_else(|| panic!("no token in {printed:?}"))
        .to_string();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/v1/tenants", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["api_key"]
        .as_str()
        .expect("tenant created")
        .to_string();
    let stored = std::fs::read_to_string(dir.path().join("admin-token.sha256")).unwrap();
    assert!(!stored.contains(&token), "only the hash is kept");
    let status = server.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");

    let server = start(dir.path(), &[]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.printed().iter().any(|l| l.contains("hgadm_")),
        "the token is printed only once"
    );
    let listed = client
        .get(format!("{}/v1/tenants", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "the generated token still works");
    let keys = client
        .get(format!("{}/v1/keys", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200, "data survived the stop");
    assert!(server.terminate().success());
}

#[test]
fn a_bad_configuration_is_refused_naming_the_key() {
    let out = Command::new(fixtures::hookgate_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HOOKGATE_PLUGIN__FUEL", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("plugin.fuel"), "{stderr}");
}

#[tokio::test]
async fn every_accepted_event_is_delivered_after_a_kill_9() {
    const EVENTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("HOOKGATE_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN),
        ("HOOKGATE_ALLOW_PRIVATE_TARGETS", "true"),
    ];
    let server = start(dir.path(), &envs);
    let sink = crate::helpers::receiver(200).await;
    sink.delay(300);
    let client = reqwest::Client::new();
    let post = |base: &str, path: &str, key: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let tenant: Value = post(
        &server.base,
        "/v1/tenants",
        crate::helpers::ADMIN_TOKEN,
        json!({"name": "acme"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = tenant["api_key"].as_str().unwrap().to_string();
    let callback =
        json!({"name": "sink", "object_type": "app", "phase": "after", "url": sink.url()});
    assert_eq!(
        post(&server.base, "/v1/callbacks", &key, callback)
            .await
            .unwrap()
            .status(),
        201
    );
    let mut accepted = Vec::new();
    for n in 0..EVENTS {
        let event =
            json!({"object_type": "app", "action": "created", "phase": "after", "data": {"n": n}});
        let response = post(&server.base, "/v1/events", &key, event).await.unwrap();
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.unwrap();
        accepted.push(answer["event_id"].as_str().unwrap().to_string());
    }
    // Some deliveries are through, more are in flight at the slow receiver.
    sink.wait_for(5, 30).await;
    server.kill_9();
    let before_restart = sink.received().len();
    assert!(before_restart < EVENTS, "the kill must land mid-delivery");

    sink.delay(0);
    let server = start(dir.path(), &envs);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let seen: std::collections::HashSet<String> = sink
            .received()
            .iter()
            .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
            .collect();
        let missing: Vec<&String> = accepted.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        missing, 0,
        "every accepted event reaches the receiver after the restart"
    );
    assert!(server.terminate().success());
}
