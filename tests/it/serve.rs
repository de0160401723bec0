//! `hookgate serve` as an operator runs it: the real binary, a generated
//! admin token on first start, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::backends::{self, Backend, backend_test};
use crate::fixtures;

/// A running `hookgate serve` and what it printed.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) stdout: mpsc::Receiver<String>,
}

/// Starts the binary on port 0 with `data_dir` and waits until it listens.
/// In a PostgreSQL run of `backend_test!`, it keeps its data in that
/// directory's database.
pub(crate) async fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Server {
    let database = match backends::current() {
        Backend::Postgres => Some(backends::database_for(data_dir).await),
        Backend::Sled => None,
    };
    let mut envs = envs.to_vec();
    if let Some(url) = &database {
        envs.push(("HOOKGATE_DATABASE", url));
    }
    launch(Command::new(fixtures::hookgate_bin()), data_dir, &envs)
}

/// Starts `hookgate serve` through `command`: the binary itself, or a
/// tracer that runs it.
fn launch(mut command: Command, data_dir: &Path, envs: &[(&str, &str)]) -> Server {
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("HOOKGATE_ADMIN_TOKEN")
        .env_remove("HOOKGATE_TEST_DATABASE_URL")
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

/// A server a failing test leaves behind is killed, not left running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` (a name such as TERM or KILL) to process `pid`.
fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}: {sent}");
}

/// Waits for `child` to exit after a signal. One still running after
/// `patience` has lost the signal: it is killed and the test fails, rather
/// than hanging.
fn exited(child: &mut Child, patience: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {patience:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    /// Sends SIGTERM and returns the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        send_signal(self.child.id(), "TERM");
        exited(&mut self.child, Duration::from_secs(60))
    }

    /// Kills the process outright (SIGKILL): no shutdown, no flush.
    pub(crate) fn kill_9(self) {
        self.kill("KILL");
    }

    /// Sends a signal that ends the process without a clean stop, such as
    /// KILL or ABRT, and waits for it to die.
    pub(crate) fn kill(mut self, signal: &str) {
        send_signal(self.child.id(), signal);
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }

    /// All stdout lines printed so far.
    pub(crate) fn printed(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }
}

backend_test! {
    async fn first_start_prints_an_admin_token_once_and_sigterm_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &[]).await;
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
        if backends::current() == Backend::Sled {
            let stored = std::fs::read_to_string(dir.path().join("admin-token.sha256")).unwrap();
            assert!(!stored.contains(&token), "only the hash is kept");
        }
        let status = server.terminate();
        assert!(status.success(), "SIGTERM is a clean stop: {status}");

        let server = start(dir.path(), &[]).await;
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

/// A service manager stopping a node that still waits for its database:
/// the node stops at once and cleanly, rather than being killed by the
/// signal or ignoring it until it has started.
#[test]
fn sigterm_while_waiting_for_postgresql_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the node keeps waiting for PostgreSQL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(fixtures::hookgate_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env(
            "HOOKGATE_DATABASE",
            format!("postgres://hookgate:hookgate@127.0.0.1:{port}/hookgate"),
        )
        .env("RUST_LOG", "hookgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookgate starts");
    let (tx, lines) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the node says it waits for PostgreSQL");
        if line.contains("waiting for PostgreSQL") {
            break;
        }
    }
    send_signal(child.id(), "TERM");
    let status = exited(&mut child, Duration::from_secs(10));
    assert!(status.success(), "a clean stop, not killed: {status}");
    let said: Vec<String> = lines.iter().collect();
    assert!(
        said.iter()
            .any(|line| line.contains("asked to stop while starting")),
        "{said:?}"
    );
}

backend_test! {
    async fn every_accepted_event_is_delivered_after_a_kill_9() {
        const EVENTS: usize = 40;
        let dir = tempfile::tempdir().unwrap();
        let envs = [
            ("HOOKGATE_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN),
            ("HOOKGATE_ALLOW_PRIVATE_TARGETS", "true"),
        ];
        let server = start(dir.path(), &envs).await;
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
        let server = start(dir.path(), &envs).await;
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
}

/// One request to a server run as a process: the status and JSON body.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const ENVS: [(&str, &str); 2] = [
    ("HOOKGATE_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN),
    ("HOOKGATE_ALLOW_PRIVATE_TARGETS", "true"),
];

/// Creates a tenant and returns its manage key.
async fn tenant(base: &str) -> String {
    let (status, tenant) = call(
        base,
        "POST",
        "/v1/tenants",
        crate::helpers::ADMIN_TOKEN,
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    tenant["api_key"].as_str().unwrap().to_string()
}

backend_test! {
    async fn management_writes_answered_with_success_survive_a_kill_9_or_an_abort() {
        for signal in ["KILL", "ABRT"] {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path(), &ENVS).await;
            let key = tenant(&server.base).await;
            let (status, made) = call(
                &server.base,
                "POST",
                "/v1/keys",
                &key,
                Some(json!({"name": "reader", "role": "read"})),
            )
            .await;
            assert_eq!(status, 201);
            let reader = made["api_key"].as_str().unwrap().to_string();
            let callback = json!({"name": "cb", "object_type": "app", "phase": "after",
                "url": "http://127.0.0.1:9/hook"});
            let (status, cb) = call(&server.base, "POST", "/v1/callbacks", &key, Some(callback)).await;
            assert_eq!(status, 201);
            server.kill(signal);

            let server = start(dir.path(), &ENVS).await;
            let (status, listed) = call(&server.base, "GET", "/v1/callbacks", &key, None).await;
            assert_eq!(
                status, 200,
                "the tenant's key survived SIG{signal}: {listed}"
            );
            assert_eq!(listed["items"][0]["id"], cb["id"], "SIG{signal}");
            let (status, _) = call(&server.base, "GET", "/v1/deliveries", &reader, None).await;
            assert_eq!(status, 200, "the new key survived SIG{signal}");
            assert!(server.terminate().success());
        }
    }
}

/// Whether a test may run without `tool`: it says loudly that it skipped,
/// except in CI, where a missing tool fails the run.
fn require(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{tool} is required in CI and is not installed"
        );
        // Straight to stderr, past the harness's capture.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {tool} is not installed; install it to run this test"
        );
    }
    found
}

#[tokio::test]
async fn every_accepted_event_is_synced_to_disk_with_fdatasync_before_its_202() {
    const EVENTS: usize = 20;
    if !require("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("syscalls.txt");
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(fixtures::hookgate_bin());
    let data = dir.path().join("data");
    let server = launch(strace, &data, &ENVS);
    let key = tenant(&server.base).await;
    let sink = crate::helpers::receiver(200).await;
    let callback = json!({"name": "cb", "object_type": "app", "phase": "after", "url": sink.url()});
    assert_eq!(
        call(&server.base, "POST", "/v1/callbacks", &key, Some(callback))
            .await
            .0,
        201
    );
    let syncs = || {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("/db/db>"))
            .count()
    };
    let before = syncs();
    for n in 0..EVENTS {
        let event =
            json!({"object_type": "app", "action": "created", "phase": "after", "data": {"n": n}});
        assert_eq!(
            call(&server.base, "POST", "/v1/events", &key, Some(event))
                .await
                .0,
            202
        );
    }
    // One at a time, each event's 202 waited for its own group commit.
    let synced = syncs() - before;
    assert!(
        synced >= EVENTS,
        "{synced} syncs of the log for {EVENTS} events accepted one after another"
    );
    sink.wait_for(EVENTS, 30).await;
    // SIGTERM to strace would detach it and leave the server running.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.child.id())).unwrap();
    let pid = children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("hookgate runs under strace");
    send_signal(pid, "TERM");
    let mut server = server;
    assert!(exited(&mut server.child, Duration::from_secs(60)).success());
}

backend_test! {
    async fn sigterm_lets_an_attempt_in_flight_finish_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &ENVS).await;
        let key = tenant(&server.base).await;
        let sink = crate::helpers::receiver(200).await;
        sink.delay(1_500);
        let callback = json!({"name": "cb", "object_type": "app", "phase": "after", "url": sink.url()});
        assert_eq!(
            call(&server.base, "POST", "/v1/callbacks", &key, Some(callback))
                .await
                .0,
            201
        );
        let event = json!({"object_type": "app", "action": "created", "phase": "after", "data": {}});
        let (status, accepted) = call(&server.base, "POST", "/v1/events", &key, Some(event)).await;
        assert_eq!(status, 202);
        let delivery = accepted["deliveries"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        sink.wait_for(1, 10).await;
        // The receiver is still answering when the server is told to stop.
        let stopping = tokio::task::spawn_blocking(move || server.terminate());
        assert!(stopping.await.unwrap().success());
        assert_eq!(sink.received().len(), 1);

        sink.delay(0);
        let server = start(dir.path(), &ENVS).await;
        let (_, shown) = call(
            &server.base,
            "GET",
            &format!("/v1/deliveries/{delivery}"),
            &key,
            None,
        )
        .await;
        assert_eq!(shown["status"], "succeeded", "{shown}");
        assert_eq!(shown["attempts"], 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sink.received().len(), 1, "nothing is sent twice");
        assert!(server.terminate().success());
    }
}

backend_test! {
    async fn the_pending_deliveries_gauge_is_set_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &ENVS).await;
        let key = tenant(&server.base).await;
        let callback = json!({"name": "cb", "object_type": "app", "phase": "after",
            "url": crate::helpers::dead_url().await, "retry": {"max_attempts": 5, "schedule_secs": [3600]}});
        assert_eq!(
            call(&server.base, "POST", "/v1/callbacks", &key, Some(callback))
                .await
                .0,
            201
        );
        for _ in 0..3 {
            let event =
                json!({"object_type": "app", "action": "created", "phase": "after", "data": {}});
            assert_eq!(
                call(&server.base, "POST", "/v1/events", &key, Some(event))
                    .await
                    .0,
                202
            );
        }
        assert!(server.terminate().success());

        let server = start(dir.path(), &ENVS).await;
        let metrics = reqwest::get(format!("{}/metrics", server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let pending = metrics
            .lines()
            .find_map(|line| line.strip_prefix("hookgate_delivery_pending "))
            .unwrap_or_else(|| panic!("no pending gauge after the restart:\n{metrics}"));
        assert_eq!(pending.trim(), "3");
        assert!(server.terminate().success());
    }
}
