//! The Python and JavaScript example plugins, built from source with their
//! languages' own component toolchains and uploaded to a real server at the
//! default limits, as a plugin author who has never seen our code would.

use serde_json::{Value, json};

use crate::fixtures::{self, Foreign};
use crate::helpers::{TestApp, receiver, spawn_app};

fn before(data: Value) -> Value {
    json!({"object_type": "policy", "action": "created", "phase": "before", "data": data})
}

/// Uploads the example and attaches it to a before-callback for policies;
/// `None` when its toolchain is missing (said loudly by the fixture).
async fn gate(lang: Foreign, config: Value) -> Option<(TestApp, String, String)> {
    let wasm = fixtures::foreign_plugin(lang)?;
    let app = spawn_app().await;
    let tenant = app.tenant("acme").await;
    let (status, uploaded) = app.upload(&tenant.key, "policy", wasm).await;
    assert_eq!(
        status, 201,
        "{lang:?} uploads at the default limits: {uploaded}"
    );
    let id = uploaded["id"].as_str().unwrap();
    let settled = app.settled_plugin(&tenant.key, id).await;
    assert_eq!(settled["state"], "ready", "{settled}");
    app.callback(
        &tenant.key,
        json!({"name": "limits", "object_type": "policy",
        "phase": "before", "plugin": {"id": uploaded["id"], "config": config}}),
    )
    .await;
    let sha = uploaded["sha256"].as_str().unwrap().to_string();
    Some((app, tenant.key, sha))
}

/// The reason the first callback gave, or `None` if the event was allowed.
async fn deny_reason(app: &TestApp, key: &str, data: Value) -> Option<String> {
    let (status, answer) = app.emit(key, before(data)).await;
    assert_eq!(status, 200, "{answer}");
    if answer["allowed"] == true {
        return None;
    }
    Some(
        answer["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn decides_like_the_rust_rate_policy(lang: Foreign) {
    let Some((app, key, sha)) = gate(lang, json!({"max_rps": "100"})).await else {
        return;
    };
    let burst = json!({"rules": [{"name": "steady", "rps": 50}, {"name": "burst", "rps": 500}]});
    assert_eq!(
        deny_reason(&app, &key, burst).await.as_deref(),
        Some(r#"rule "burst" allows 500 requests/s, above the limit of 100"#)
    );
    let calm = json!({"rules": [{"name": "steady", "rps": 100}]});
    assert_eq!(deny_reason(&app, &key, calm).await, None);
    let odd = json!({"rules": [{"name": "odd", "rps": "many"}]});
    let reason = deny_reason(&app, &key, odd).await.unwrap();
    assert!(
        reason.contains(r#"rule "odd" has no numeric "rps""#),
        "{reason}"
    );
    assert!(reason.contains("bad-data"), "{reason}");

    // Time and fuel are kept per plugin, failures included. The metrics are
    // the process's, and other tests call the same bytes: at least these 3.
    let metrics = app.metrics_text().await;
    for name in ["hookgate_plugin_call_seconds", "hookgate_plugin_fuel_used"] {
        let calls: f64 = metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_count{{")))
            .filter(|l| l.contains(&format!("plugin=\"{}\"", &sha[..12])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(calls >= 3.0, "{name} of plugin {sha}:\n{metrics}");
    }
}

async fn a_bug_is_reported_with_its_message_and_trace(lang: Foreign, trace: &[&str]) {
    let Some((app, key, _)) = gate(lang, json!({})).await else {
        return;
    };
    // A null rule makes both examples fail on `"name" in rule`.
    let reason = deny_reason(&app, &key, json!({"rules": [null]}))
        .await
        .expect("a failing plugin denies");
    for part in trace {
        assert!(reason.contains(part), "{part:?} missing from {reason}");
    }
}

async fn transforms_like_the_rust_redact(lang: Foreign) {
    let Some(wasm) = fixtures::foreign_plugin(lang) else {
        return;
    };
    let app = spawn_app().await;
    let tenant = app.tenant("acme").await;
    let (status, uploaded) = app.upload(&tenant.key, "redact", wasm).await;
    assert_eq!(status, 201, "{uploaded}");
    let id = uploaded["id"].as_str().unwrap();
    assert_eq!(app.settled_plugin(&tenant.key, id).await["state"], "ready");
    let sink = receiver(200).await;
    app.callback(
        &tenant.key,
        json!({"name": "audit", "object_type": "user",
        "phase": "after", "url": sink.url(),
        "plugin": {"id": uploaded["id"], "config": {"fields": "password, token"}}}),
    )
    .await;
    let data = json!({"name": "ann", "password": "hunter2",
        "keys": [{"token": "t0", "label": "ci"}], "profile": {"token": "t1", "age": 7}});
    let (status, answer) = app
        .emit(
            &tenant.key,
            json!({"object_type": "user", "action": "created", "phase": "after", "data": data}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let got = sink.wait_for(1, 30).await;
    let body = got[0].json();
    assert_eq!(
        body["data"],
        json!({"name": "ann", "keys": [{"label": "ci"}], "profile": {"age": 7}})
    );
    assert_eq!(body["event_id"], answer["event_id"]);
    assert!(got[0].header("webhook-signature").is_some());
}

#[tokio::test]
async fn a_python_plugin_decides_like_the_rust_rate_policy() {
    decides_like_the_rust_rate_policy(Foreign::Python).await;
}

#[tokio::test]
async fn a_javascript_plugin_decides_like_the_rust_rate_policy() {
    decides_like_the_rust_rate_policy(Foreign::JavaScript).await;
}

#[tokio::test]
async fn an_uncaught_python_exception_is_reported_with_its_traceback() {
    a_bug_is_reported_with_its_message_and_trace(
        Foreign::Python,
        &["Traceback", "app.py", "line", "TypeError"],
    )
    .await;
}

#[tokio::test]
async fn an_uncaught_javascript_error_is_reported_with_its_stack() {
    a_bug_is_reported_with_its_message_and_trace(Foreign::JavaScript, &["TypeError", "policy.js:"])
        .await;
}

#[tokio::test]
async fn a_python_plugin_transforms_like_the_rust_redact() {
    transforms_like_the_rust_redact(Foreign::Python).await;
}

#[tokio::test]
async fn a_javascript_plugin_transforms_like_the_rust_redact() {
    transforms_like_the_rust_redact(Foreign::JavaScript).await;
}
