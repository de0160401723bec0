//! A real server on port 0 with a temp data dir (and, for the PostgreSQL
//! runs of `backend_test!`, a fresh database), and real HTTP receivers on
//! 127.0.0.1 that record what they get.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hookgate::app::Application;
use hookgate::clock::{ManualClock, SharedClock, SystemClock};
use hookgate::config::Config;
use hookgate::plugin::Compiler;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backends::{self, Backend};
use crate::fixtures;

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running Hookgate.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) data_dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// A tenant and its manage key.
pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) key: String,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), |_| {}).await
}

/// Starts a server whose time moves only when the test moves `clock`.
pub(crate) async fn spawn_app_with_clock(clock: ManualClock) -> TestApp {
    start(
        Arc::new(tempfile::tempdir().unwrap()),
        |_| {},
        Arc::new(clock),
    )
    .await
}

/// Starts a server on `data_dir`, letting the test adjust the config.
pub(crate) async fn spawn_app_in(
    data_dir: Arc<TempDir>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    start(data_dir, adjust, Arc::new(SystemClock)).await
}

async fn start(
    data_dir: Arc<TempDir>,
    adjust: impl FnOnce(&mut Config),
    clock: SharedClock,
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("hookgate=debug"))
            .with_test_writer()
            .try_init();
    }
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.path().to_path_buf();
    if backends::current() == Backend::Postgres {
        config.database = Some(backends::database_for(data_dir.path()).await);
    }
    config.admin_token = Some(ADMIN_TOKEN.into());
    // Receivers live on 127.0.0.1; the egress-guard tests turn this off.
    config.allow_private_targets = true;
    // As `serve` does: plugins compile in worker processes.
    config.compiler = Compiler::Worker(fixtures::hookgate_bin());
    adjust(&mut config);
    let app = Application::build_with_clock(config, clock)
        .await
        .expect("the server starts");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        data_dir,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and waits for it, keeping the data dir.
    pub(crate) async fn stop(mut self) -> Arc<TempDir> {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
        self.data_dir.clone()
    }

    pub(crate) async fn tenant(&self, name: &str) -> Tenant {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/tenants",
                ADMIN_TOKEN,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        Tenant {
            id: body["id"].as_str().unwrap().into(),
            key: body["api_key"].as_str().unwrap().into(),
        }
    }

    /// Sends a JSON request and returns the status and JSON body (Null if empty).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, key, None).await
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    pub(crate) async fn upload(&self, key: &str, name: &str, wasm: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/plugins?name={name}")))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Creates a callback and returns its id, failing the test otherwise.
    pub(crate) async fn callback(&self, key: &str, body: Value) -> String {
        let (status, created) = self.post("/v1/callbacks", key, body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().into()
    }

    /// Polls the tenant's deliveries, for up to 10 s, until the newest one
    /// is `done`, and returns it.
    pub(crate) async fn first_delivery(&self, key: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, list) = self.get("/v1/deliveries", key).await;
            if done(&list["items"][0]) {
                return list["items"][0].clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such delivery in 10 s: {list}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls an uploaded plugin until it is no longer `compiling`, as an
    /// author would before using it, and returns its record.
    pub(crate) async fn settled_plugin(&self, key: &str, id: &str) -> Value {
        for _ in 0..1200 {
            let (status, plugin) = self.get(&format!("/v1/plugins/{id}"), key).await;
            assert_eq!(status, 200, "{plugin}");
            if plugin["state"] != "compiling" {
                return plugin;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("plugin {id} is still compiling after 120 s");
    }

    /// Emits an event and returns the status and answer.
    pub(crate) async fn emit(&self, key: &str, event: Value) -> (u16, Value) {
        self.post("/v1/events", key, event).await
    }

    /// The value of a counter in /metrics, summed over its label sets.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metrics_text().await, name)
    }

    /// The whole /metrics text.
    pub(crate) async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A counter's value in a /metrics text, summed over its label sets.
pub(crate) fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// A request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Path and query.
    pub(crate) target: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer a receiver gives: status and headers.
type Reply = (u16, Vec<(&'static str, String)>);

#[derive(Clone, Default)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

/// An HTTP receiver on 127.0.0.1 that answers every POST with a set status.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    state: ReceiverState,
}

pub(crate) async fn receiver(status: u16) -> Receiver {
    let state = ReceiverState::default();
    state.status.store(status, Ordering::SeqCst);
    let app = axum::Router::new()
        .fallback(record)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { addr, state }
}

/// The receiver's handler: record, wait if told to, answer as scripted.
async fn record(
    State(state): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    state.got.lock().unwrap().push(Received {
        target: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        headers,
        body: body.to_vec(),
    });
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let scripted = state.script.lock().unwrap().pop_front();
    let (status, headers) =
        scripted.unwrap_or_else(|| (state.status.load(Ordering::SeqCst), Vec::new()));
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Receiver {
    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// The most requests it was answering at once.
    pub(crate) fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn delay(&self, ms: u64) {
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answers the next requests with these replies, then the default.
    pub(crate) fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Changes the default status.
    pub(crate) fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Waits until at least `n` requests arrived, failing after `secs`.
    pub(crate) async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} requests within {secs} s, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A loopback URL where nothing listens: the port was bound, then released.
pub(crate) async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}
