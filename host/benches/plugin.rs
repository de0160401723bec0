//! Plugin call costs: a fresh sandbox per call against a warm instance,
//! loading a plugin from this node's compile cache, and a 1 KB transform in WebAssembly
//! against the same transform as native Rust (the baseline ratio). The
//! Python and JavaScript examples get the same fresh `decide` and 1 KB
//! `transform`, and their compile time is printed (median of 3).
//!
//! Run with `cargo bench -p hookgate --bench plugin`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hookgate::model::{Event, Phase};
use hookgate::plugin::{Limits, Outgoing, PluginConfig, Runtime};
use serde_json::{Value, json};

#[path = "../../tests/it/fixtures.rs"]
mod fixtures;

fn event(object_type: &str, data: Value) -> Event {
    Event {
        id: "evt_bench".into(),
        object_type: object_type.into(),
        action: "created".into(),
        phase: Phase::Before,
        actor: Some("bench".into()),
        timestamp_ms: 1_700_000_000_000,
        data,
    }
}

/// A developer record of about 1 KB with fields for `redact` to remove.
fn kilobyte_payload() -> Value {
    let accounts: Vec<Value> = (0..8)
        .map(|i| json!({"id": i, "email": format!("dev{i}@example.com"), "password": "hunter2", "scopes": ["read", "write"]}))
        .collect();
    json!({"name": "bench", "password": "secret", "@metadata": {"rev": 3}, "accounts": accounts})
}

/// The `redact` plugin's transform, natively: the baseline.
fn native_redact(body: &[u8], fields: &[&str]) -> Vec<u8> {
    fn strip(value: &mut Value, fields: &[&str]) {
        match value {
            Value::Object(map) => {
                map.retain(|k, _| !fields.contains(&k.as_str()));
                map.values_mut().for_each(|v| strip(v, fields));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| strip(v, fields)),
            _ => {}
        }
    }
    let mut value: Value = serde_json::from_slice(body).unwrap();
    strip(&mut value, fields);
    serde_json::to_vec(&value).unwrap()
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let rt = Runtime::new(Limits::default(), Some(cache.path().to_path_buf())).unwrap();
    let config: Arc<PluginConfig> = Arc::default();

    let rate = tokio
        .block_on(rt.compile(fixtures::plugin("rate-policy")))
        .unwrap();
    let redact = tokio
        .block_on(rt.compile(fixtures::plugin("redact")))
        .unwrap()
        .plugin;
    let policy = event("policy", json!({"rules": [{"name": "steady", "rps": 50}]}));
    let developer = event("developer", kilobyte_payload());
    let body = developer.envelope();
    eprintln!("transform body: {} bytes", body.len());
    let request = Outgoing {
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.clone(),
    };

    let mut group = c.benchmark_group("plugin");
    group.bench_function("fresh_decide", |b| {
        b.to_async(&tokio).iter(|| async {
            rt.decide(&rate.plugin, config.clone(), &policy)
                .await
                .unwrap()
        })
    });
    group.bench_function("fresh_transform_1kb", |b| {
        b.to_async(&tokio).iter(|| async {
            rt.transform(&redact, config.clone(), &developer, request.clone())
                .await
                .unwrap()
        })
    });
    group.bench_function("warm_decide", |b| {
        b.to_async(&tokio).iter_custom(|iters| {
            let (rt, plugin, config, policy) = (
                rt.clone(),
                rate.plugin.clone(),
                config.clone(),
                policy.clone(),
            );
            async move {
                let started = std::time::Instant::now();
                rt.decide_warm(&plugin, config, &policy, iters)
                    .await
                    .unwrap();
                started.elapsed()
            }
        })
    });
    let rate_wasm = fixtures::plugin("rate-policy");
    group.bench_function("load_from_compile_cache", |b| {
        b.to_async(&tokio).iter(|| async {
            let loaded = rt.compile(rate_wasm.clone()).await.unwrap();
            assert!(!loaded.compiled, "identical bytes come from the cache");
        })
    });
    group.bench_function("native_transform_1kb", |b| {
        b.iter(|| native_redact(&body, &["password", "@metadata"]))
    });
    group.finish();

    let mut group = c.benchmark_group("languages");
    for lang in [fixtures::Foreign::Python, fixtures::Foreign::JavaScript] {
        let Some(wasm) = fixtures::foreign_plugin(lang) else {
            continue;
        };
        let mut compiles: Vec<Duration> = (0..3)
            .map(|_| {
                let fresh = Runtime::new(Limits::default(), None).unwrap();
                let started = Instant::now();
                tokio.block_on(fresh.compile(wasm.clone())).unwrap();
                started.elapsed()
            })
            .collect();
        compiles.sort();
        eprintln!(
            "{lang:?}: {} bytes, compiled in {:?} (median of 3; {:?} to {:?})",
            wasm.len(),
            compiles[1],
            compiles[0],
            compiles[2]
        );
        let plugin = tokio.block_on(rt.compile(wasm)).unwrap().plugin;
        group.bench_function(format!("{lang:?}/fresh_decide"), |b| {
            b.to_async(&tokio)
                .iter(|| async { rt.decide(&plugin, config.clone(), &policy).await.unwrap() })
        });
        group.bench_function(format!("{lang:?}/fresh_transform_1kb"), |b| {
            b.to_async(&tokio).iter(|| async {
                rt.transform(&plugin, config.clone(), &developer, request.clone())
                    .await
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
