//! Gate throughput end to end: a real Hookgate server on loopback, driven
//! over HTTP by 32 concurrent clients sharing one keep-alive client. For
//! each scenario it reports requests per second and p50/p99 latency:
//!
//! - `healthz`: `GET /healthz` on the same server, the raw HTTP ceiling;
//! - `plugin gate`: before-events decided by the `rate-policy` WebAssembly
//!   plugin (a `decide` callback with no URL), clients going flat out;
//! - `plugin @10k/s`: the same at the target rate, 10,000/s from the 32
//!   clients together on a fixed schedule, latency counted from when each
//!   request was due;
//! - `url gate`: before-events decided by a URL callback to a local axum
//!   receiver that answers 200.
//!
//! Each scenario is warmed up, then measured in three rounds, interleaved so
//! that drift (another build, the page cache) spreads over all of them. The
//! table gives the median of the rounds and each gate's ratio to the
//! ceiling, then checks the target: at least 10,000 plugin-decided gates/s,
//! with p99 ≤ 2 ms at that rate. Clients, server and receiver share one process and the
//! machine's cores, so the load generator's own cost is in the numbers.
//!
//! Run with `cargo bench -p hookgate --bench gate`. `GATE_BENCH_SECS` sets
//! the length of a round in seconds (default 5; fractions allowed), so
//! `GATE_BENCH_SECS=1 cargo bench -p hookgate --bench gate` is a quick check.
//! The run exits with status 1 if any request failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::http::StatusCode;
use axum::routing::post;
use hookgate::app::Application;
use hookgate::config::Config;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

#[path = "../../tests/it/fixtures.rs"]
mod fixtures;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// Concurrent clients, each with one request in flight.
const CLIENTS: usize = 32;
/// Measured rounds per scenario.
const ROUNDS: usize = 3;
/// Round length when `GATE_BENCH_SECS` is unset.
const DEFAULT_ROUND: Duration = Duration::from_secs(5);
/// Longest warm-up per scenario; shorter rounds get a warm-up as long.
const MAX_WARM_UP: Duration = Duration::from_secs(2);
/// Every status is checked; every this many responses per client, the
/// body is parsed too, to confirm the gate allowed after one decision.
const SAMPLE_EVERY: u64 = 64;
/// The target for plugin-decided gates.
const TARGET_PER_SEC: f64 = 10_000.0;
const TARGET_P99: Duration = Duration::from_millis(2);
/// Failure messages kept per round, to print.
const KEPT_MESSAGES: usize = 3;

/// One kind of request, sent over and over.
struct Scenario {
    name: &'static str,
    url: String,
    /// A JSON body to POST with the tenant's key; `GET` when absent.
    event: Option<(String, String)>,
    /// Requests per second from all clients together; as fast as they
    /// can when absent.
    rate: Option<f64>,
}

/// What one round measured.
#[derive(Default)]
struct Round {
    elapsed: Duration,
    /// Latencies of successful requests, sorted.
    latencies: Vec<Duration>,
    errors: usize,
    messages: Vec<String>,
}

impl Round {
    fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, `p` in 0..=1.
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = (p * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1]
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let round_length = round_length()?;
    let warm_up = round_length.min(MAX_WARM_UP);

    let dir = tempfile::tempdir()?;
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.path().to_path_buf();
    config.admin_token = Some(ADMIN_TOKEN.into());
    // The URL gate posts to a receiver on loopback.
    config.allow_private_targets = true;
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let (receiver, receiver_hits) = start_receiver().await?;

    // Loopback only: never route through a proxy from the environment.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let scenarios = setup(&client, &base, receiver).await?;

    println!(
        "gate bench: {CLIENTS} clients, {ROUNDS} rounds of {:.1} s after a {:.1} s warm-up per scenario",
        round_length.as_secs_f64(),
        warm_up.as_secs_f64()
    );
    for scenario in &scenarios {
        run_round(&client, scenario, warm_up).await;
    }
    let hits_before = receiver_hits.load(Ordering::Relaxed);
    let mut url_gate_requests = 0;
    let mut rounds: Vec<Vec<Round>> = scenarios.iter().map(|_| Vec::new()).collect();
    for index in 1..=ROUNDS {
        for (scenario, results) in scenarios.iter().zip(&mut rounds) {
            let round = run_round(&client, scenario, round_length).await;
            println!(
                "  round {index} {:<14} {:>9.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  errors {}",
                scenario.name,
                round.per_sec(),
                ms(round.percentile(0.50)),
                ms(round.percentile(0.99)),
                round.errors
            );
            if scenario.name == "url gate" {
                url_gate_requests += round.latencies.len() + round.errors;
            }
            results.push(round);
        }
    }
    let receiver_got = receiver_hits.load(Ordering::Relaxed) - hits_before;

    let _ = stop.send(());
    server.await?.context("the server stopped with an error")?;

    let ok = report(&scenarios, &rounds);
    println!(
        "receiver answered {receiver_got} requests during {url_gate_requests} measured url-gate requests"
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// The round length from `GATE_BENCH_SECS`.
fn round_length() -> anyhow::Result<Duration> {
    let Some(text) = std::env::var_os("GATE_BENCH_SECS") else {
        return Ok(DEFAULT_ROUND);
    };
    let secs: f64 = text
        .to_str()
        .and_then(|text| text.trim().parse().ok())
        .with_context(|| format!("GATE_BENCH_SECS={text:?} is not a number of seconds"))?;
    ensure!(
        secs.is_finite() && secs > 0.0,
        "GATE_BENCH_SECS must be positive, not {secs}"
    );
    Ok(Duration::from_secs_f64(secs))
}

/// A before-callback receiver on 127.0.0.1:0 that answers 200 and counts.
async fn start_receiver() -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/hook",
        post(move || async move {
            counter.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((addr, hits))
}

/// Creates a tenant, uploads the plugin, registers both gates, checks that
/// each decides once and allows, and returns the scenarios to measure.
async fn setup(
    client: &reqwest::Client,
    base: &str,
    receiver: SocketAddr,
) -> anyhow::Result<Vec<Arc<Scenario>>> {
    let tenant = expect(
        client
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "bench"})),
        StatusCode::CREATED,
    )
    .await
    .context("create the tenant")?;
    let key = tenant["api_key"]
        .as_str()
        .context("the tenant has an api_key")?
        .to_string();

    let plugin = expect(
        client
            .post(format!("{base}/v1/plugins?name=rate-policy"))
            .bearer_auth(&key)
            .header(CONTENT_TYPE, "application/wasm")
            .body(fixtures::plugin("rate-policy")),
        StatusCode::CREATED,
    )
    .await
    .context("upload the plugin")?;
    let plugin_id = plugin["id"].as_str().context("the plugin has an id")?;

    let callbacks = [
        json!({"name": "policy-gate", "object_type": "policy", "phase": "before",
               "plugin": {"id": plugin_id, "config": {"max_rps": "100"}}}),
        json!({"name": "url-gate", "object_type": "app", "phase": "before",
               "url": format!("http://{receiver}/hook"), "expected_status": 200}),
    ];
    for callback in callbacks {
        expect(
            client
                .post(format!("{base}/v1/callbacks"))
                .bearer_auth(&key)
                .json(&callback),
            StatusCode::CREATED,
        )
        .await
        .with_context(|| format!("create the callback {}", callback["name"]))?;
    }

    let event = |body: Value| Some((key.clone(), body.to_string()));
    let plugin_event = json!({"object_type": "policy", "action": "updated", "phase": "before",
                              "data": {"rules": [{"name": "steady", "rps": 50}]}});
    let scenarios = vec![
        Scenario {
            name: "healthz",
            url: format!("{base}/healthz"),
            event: None,
            rate: None,
        },
        Scenario {
            name: "plugin gate",
            url: format!("{base}/v1/events"),
            event: event(plugin_event.clone()),
            rate: None,
        },
        Scenario {
            name: "plugin @10k/s",
            url: format!("{base}/v1/events"),
            event: event(plugin_event),
            rate: Some(TARGET_PER_SEC),
        },
        Scenario {
            name: "url gate",
            url: format!("{base}/v1/events"),
            event: event(
                json!({"object_type": "app", "action": "updated", "phase": "before",
                                "data": {"name": "x"}}),
            ),
            rate: None,
        },
    ];
    for scenario in &scenarios {
        send(client, scenario, true)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("first {} request", scenario.name))?;
    }
    Ok(scenarios.into_iter().map(Arc::new).collect())
}

/// Sends `request` and returns its JSON body if the status is `status`.
async fn expect(request: reqwest::RequestBuilder, status: StatusCode) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let got = response.status();
    let body = response.text().await?;
    ensure!(got == status, "expected {status}, got {got}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// One request of `scenario`; with `check_body`, also confirms that a gate
/// allowed after exactly one decision (so the callback did run).
async fn send(
    client: &reqwest::Client,
    scenario: &Scenario,
    check_body: bool,
) -> Result<(), String> {
    let request = match &scenario.event {
        Some((key, body)) => client
            .post(&scenario.url)
            .bearer_auth(key)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone()),
        None => client.get(&scenario.url),
    };
    let response = request
        .send()
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    if check_body && scenario.event.is_some() {
        let value: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let decisions = value["decisions"].as_array().map_or(0, Vec::len);
        if value["allowed"] != json!(true) || decisions != 1 {
            return Err(format!("expected one decision to allow, got {value}"));
        }
    }
    Ok(())
}

/// Runs `scenario` from `CLIENTS` concurrent tasks for `length`.
async fn run_round(client: &reqwest::Client, scenario: &Arc<Scenario>, length: Duration) -> Round {
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (client, scenario) = (client.clone(), scenario.clone());
            // A paced client sends on a fixed schedule, staggered against
            // the others. When a late answer delays the next request, that
            // request's latency counts from when it was due, so the wait is
            // measured rather than hidden.
            let every = scenario
                .rate
                .map(|rate| Duration::from_secs_f64(CLIENTS as f64 / rate));
            let first = every.map(|every| started + every.mul_f64(i as f64 / CLIENTS as f64));
            tokio::spawn(async move {
                let mut part = Round::default();
                let mut sent = 0u64;
                while Instant::now() < deadline {
                    let clock = match (first, every) {
                        // Overdue because the last answer came late: the
                        // wait counts. Early: sleep, and count from waking,
                        // since the timer's own lateness is not the server's.
                        (Some(first), Some(every)) => {
                            let due = first + every * sent as u32;
                            if Instant::now() < due {
                                tokio::time::sleep_until(due.into()).await;
                                Instant::now()
                            } else {
                                due
                            }
                        }
                        _ => Instant::now(),
                    };
                    let result = send(&client, &scenario, sent.is_multiple_of(SAMPLE_EVERY)).await;
                    let latency = clock.elapsed();
                    sent += 1;
                    match result {
                        Ok(()) => part.latencies.push(latency),
                        Err(message) => {
                            part.errors += 1;
                            if part.messages.len() < KEPT_MESSAGES {
                                part.messages.push(message);
                            }
                        }
                    }
                }
                part
            })
        })
        .collect();
    let mut round = Round::default();
    for task in tasks {
        let part = task.await.expect("a client task panicked");
        round.latencies.extend(part.latencies);
        round.errors += part.errors;
        round.messages.extend(part.messages);
    }
    // Until the last in-flight request finished, not just the deadline.
    round.elapsed = started.elapsed();
    round.latencies.sort_unstable();
    round.messages.truncate(KEPT_MESSAGES);
    round
}

/// Prints the summary table; false if any request failed.
fn report(scenarios: &[Arc<Scenario>], rounds: &[Vec<Round>]) -> bool {
    let summaries: Vec<(f64, Duration, Duration, usize)> = rounds
        .iter()
        .map(|rounds| {
            (
                median(rounds.iter().map(Round::per_sec).collect()),
                median(rounds.iter().map(|r| r.percentile(0.50)).collect()),
                median(rounds.iter().map(|r| r.percentile(0.99)).collect()),
                rounds.iter().map(|r| r.errors).sum(),
            )
        })
        .collect();
    let ceiling = summaries[0].0;

    println!();
    println!("median of {ROUNDS} rounds, {CLIENTS} concurrent clients:");
    println!(
        "{:<14} {:>8} {:>9} {:>9} {:>10} {:>7}",
        "scenario", "req/s", "p50 ms", "p99 ms", "vs healthz", "errors"
    );
    for (scenario, (per_sec, p50, p99, errors)) in scenarios.iter().zip(&summaries) {
        println!(
            "{:<14} {per_sec:>8.0} {:>9.3} {:>9.3} {:>9.1}% {errors:>7}",
            scenario.name,
            ms(*p50),
            ms(*p99),
            100.0 * per_sec / ceiling
        );
    }

    // Throughput from the clients going flat out; latency at the target
    // rate, where a closed loop of 32 clients cannot show it (at 10,000/s
    // each request would take 3.2 ms on average by Little's law).
    let (plugin_per_sec, _, _, _) = summaries[1];
    let (paced_per_sec, _, paced_p99, _) = summaries[2];
    let met = plugin_per_sec >= TARGET_PER_SEC
        && paced_per_sec >= 0.97 * TARGET_PER_SEC
        && paced_p99 <= TARGET_P99;
    println!(
        "target: plugin gate >= {TARGET_PER_SEC:.0}/s, and p99 <= {:.1} ms at that rate: {} ({plugin_per_sec:.0}/s flat out; p99 {:.3} ms at {paced_per_sec:.0}/s)",
        ms(TARGET_P99),
        if met { "MET" } else { "NOT MET" },
        ms(paced_p99)
    );

    let errors: usize = summaries.iter().map(|s| s.3).sum();
    if errors > 0 {
        println!();
        println!("!!! {errors} REQUESTS FAILED: THESE NUMBERS ARE NOT VALID !!!");
        for (scenario, rounds) in scenarios.iter().zip(rounds) {
            for message in rounds.iter().flat_map(|r| &r.messages).take(KEPT_MESSAGES) {
                println!("  {}: {message}", scenario.name);
            }
        }
    }
    errors == 0
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
