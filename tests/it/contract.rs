//! The plugin contract on a real server: a plugin exports only the hooks it
//! implements, a callback refuses a plugin that lacks the hook it needs, the
//! server runs only the hooks a plugin has, and plugins built against
//! contract 0.1.0 keep working.

use std::path::Path;
use std::sync::Arc;

use hookgate::model::Callback;
use hookgate::store::{Changes, PgStore, SledStore, Store};
use reqwest::Method;
use serde_json::{Value, json};

use crate::backends::{self, Backend, backend_test};
use crate::fixtures;
use crate::helpers::{TestApp, receiver, spawn_app, spawn_app_in};

/// Uploads a fixture plugin, waits until it is ready and returns its
/// record.
async fn ready(app: &TestApp, key: &str, name: &str) -> Value {
    let (status, uploaded) = app.upload(key, name, fixtures::plugin(name)).await;
    assert_eq!(status, 201, "{uploaded}");
    let settled = app
        .settled_plugin(key, uploaded["id"].as_str().unwrap())
        .await;
    assert_eq!(settled["state"], "ready", "{settled}");
    settled
}

fn id(record: &Value) -> String {
    record["id"].as_str().unwrap().to_string()
}

/// Edits a stored callback behind the API's back, as a node from before
/// the API checked it might have stored it, with the server stopped.
async fn rewrite_callback(
    data_dir: &Path,
    tenant: &str,
    callback: &str,
    edit: impl FnOnce(&mut Callback),
) {
    let changes = Changes::default();
    let store = match backends::current() {
        Backend::Sled => Store::new(
            Arc::new(SledStore::open(&data_dir.join("db"), changes.clone()).unwrap()),
            changes,
        ),
        Backend::Postgres => {
            let url = backends::database_for(data_dir).await;
            let backend = PgStore::connect(&url, changes.clone(), "node_test".into());
            Store::new(Arc::new(backend.await.unwrap()), changes)
        }
    };
    let mut stored = store
        .callbacks()
        .callback(tenant, callback)
        .await
        .unwrap()
        .expect("the callback is stored");
    edit(&mut stored);
    store.callbacks().put_callback(&stored).await.unwrap();
    store.close().await.unwrap();
}

fn gate(plugin: &str, url: Option<String>) -> Value {
    let name = format!("gate-{}", if url.is_some() { "url" } else { "local" });
    json!({"name": name, "object_type": "app", "actions": ["created", "deleted"],
           "phase": "before", "url": url, "plugin": {"id": plugin}})
}

backend_test! {
    async fn a_callback_refuses_a_plugin_without_the_hook_it_needs_saying_which() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let redact = id(&ready(&app, &tenant.key, "redact").await);
        let rate_policy = id(&ready(&app, &tenant.key, "rate-policy").await);

        // A before-callback with no URL only decides; redact only transforms.
        let (status, body) = app.post("/v1/callbacks", &tenant.key, gate(&redact, None)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], "plugin.id", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("does not export `decide`")
                && message.contains("redact v1")
                && message.contains("exports only transform"),
            "{message}"
        );

        // An after-callback only transforms; rate-policy only decides.
        let sink = receiver(200).await;
        let after = json!({"name": "hook", "object_type": "app", "actions": ["created"],
            "phase": "after", "url": sink.url(), "plugin": {"id": rate_policy}});
        let (status, body) = app.post("/v1/callbacks", &tenant.key, after).await;
        assert_eq!(status, 422, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("does not export `transform`") && message.contains("only decide"),
            "{message}"
        );

        // With a URL, a before-callback can use any hook.
        let id = app.callback(&tenant.key, gate(&redact, Some(sink.url()))).await;
        app.callback(&tenant.key, gate(&rate_policy, None)).await;

        // Changes are checked as creations are: without its URL, or as an
        // after-callback, a callback needs another hook.
        let path = format!("/v1/callbacks/{id}");
        let (status, body) = app
            .send(Method::PATCH, &path, &tenant.key, Some(json!({"url": null})))
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("`decide`"), "{body}");
        let to_after = json!({"phase": "after", "expected_status": null,
            "plugin": {"id": rate_policy}});
        let (status, body) = app.send(Method::PATCH, &path, &tenant.key, Some(to_after)).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("`transform`"), "{body}");
    }
}

backend_test! {
    async fn a_before_callback_runs_only_the_hooks_its_plugin_exports() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        // Bytes of its own, so that the process-wide metrics of this plugin
        // are this test's.
        let wasm = fixtures::distinct(fixtures::plugin("redact"), "only-its-hooks");
        let (_, uploaded) = app.upload(&tenant.key, "redact", wasm).await;
        let redact = id(&uploaded);
        let sha = uploaded["sha256"].as_str().unwrap()[..12].to_string();
        let sink = receiver(200).await;
        app.callback(&tenant.key, gate(&redact, Some(sink.url()))).await;

        let (status, answer) = app
            .emit(&tenant.key, json!({"object_type": "app", "action": "created",
                "phase": "before", "data": {"name": "x", "password": "hunter2"}}))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["allowed"], true, "{answer}");
        let got = sink.wait_for(1, 5).await;
        assert_eq!(got[0].json()["data"], json!({"name": "x"}), "transformed");

        // Nothing ran that redact lacks: its only calls are transforms.
        let metrics = app.metrics_text().await;
        let calls: Vec<_> = metrics
            .lines()
            .filter(|l| l.starts_with("hookgate_plugin_call_seconds_count"))
            .filter(|l| l.contains(&format!(r#"plugin="{sha}""#)))
            .collect();
        assert!(!calls.is_empty(), "{metrics}");
        assert!(calls.iter().all(|l| l.contains(r#"hook="transform""#)), "{calls:?}");
    }
}

backend_test! {
    async fn a_plugin_built_against_contract_0_1_0_still_runs_every_hook() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let uploaded = ready(&app, &tenant.key, "legacy-0-1").await;
        assert_eq!(uploaded["exports"], json!(["transform", "decide", "judge"]));
        let legacy = id(&uploaded);

        app.callback(&tenant.key, gate(&legacy, None)).await;
        let emit = |action: &str| json!({"object_type": "app", "action": action,
            "phase": "before", "data": {}});
        let (_, allowed) = app.emit(&tenant.key, emit("created")).await;
        assert_eq!(allowed["allowed"], true, "{allowed}");
        let (_, denied) = app.emit(&tenant.key, emit("deleted")).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert_eq!(
            denied["decisions"][0]["reason"],
            "a 0.1.0 plugin refuses to delete objects of type app"
        );

        // All three in one callback: it decides, transforms the request,
        // and its judge overrules the 503 that would deny.
        let gatekeeper = receiver(200).await;
        gatekeeper.script([(503, vec![("x-allow", "yes".to_string())]), (503, vec![])]);
        app.callback(&tenant.key, gate(&legacy, Some(gatekeeper.url()))).await;
        let (_, judged) = app.emit(&tenant.key, emit("created")).await;
        assert_eq!(judged["allowed"], true, "the judge allows: {judged}");
        assert_eq!(gatekeeper.received()[0].header("x-contract"), Some("0.1.0"));
        let (_, agreed) = app.emit(&tenant.key, emit("created")).await;
        assert_eq!(agreed["allowed"], false, "the judge agrees with the 503: {agreed}");

        // Its transform, and the 0.1.0 `config` import it calls.
        let sink = receiver(200).await;
        app.callback(&tenant.key, json!({"name": "hook", "object_type": "app",
            "actions": ["created"], "phase": "after", "url": sink.url(),
            "plugin": {"id": legacy, "config": {"tag": "blue"}}}))
            .await;
        let (status, _) = app
            .emit(&tenant.key, json!({"object_type": "app", "action": "created",
                "phase": "after", "data": {}}))
            .await;
        assert_eq!(status, 202);
        let got = sink.wait_for(1, 10).await;
        assert_eq!(got[0].header("x-contract"), Some("0.1.0"));
        assert_eq!(got[0].header("x-tag"), Some("blue"));
    }
}

backend_test! {
    async fn a_stored_callback_whose_plugin_lacks_its_hook_fails_closed() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let redact = id(&ready(&app, &tenant.key, "redact").await);
        let rate_policy = id(&ready(&app, &tenant.key, "rate-policy").await);
        let sink = receiver(200).await;
        // Both valid as created: a before-callback with a URL may use any
        // hook, and redact transforms.
        let gated = app.callback(&tenant.key, gate(&redact, Some(sink.url()))).await;
        let hooked = app
            .callback(&tenant.key, json!({"name": "hook", "object_type": "app",
                "actions": ["created"], "phase": "after", "url": sink.url(),
                "plugin": {"id": redact}}))
            .await;
        let data_dir = app.stop().await;
        rewrite_callback(data_dir.path(), &tenant.id, &gated, |callback| {
            callback.url = None;
        })
        .await;
        rewrite_callback(data_dir.path(), &tenant.id, &hooked, |callback| {
            callback.plugin.as_mut().unwrap().id = rate_policy.clone();
        })
        .await;
        let app = spawn_app_in(data_dir, |_| {}).await;

        let (_, answer) = app
            .emit(&tenant.key, json!({"object_type": "app", "action": "created",
                "phase": "before", "data": {}}))
            .await;
        assert_eq!(answer["allowed"], false, "a gate with nothing to decide denies: {answer}");
        let reason = answer["decisions"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("does not export `decide`"), "{reason}");

        let (status, _) = app
            .emit(&tenant.key, json!({"object_type": "app", "action": "created",
                "phase": "after", "data": {"secret": "s3cr3t"}}))
            .await;
        assert_eq!(status, 202);
        let delivery = app
            .first_delivery(&tenant.key, |delivery| delivery["status"] == "failed")
            .await;
        let error = delivery["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("does not export `transform`"), "{delivery}");
        assert!(sink.received().is_empty(), "nothing is sent untransformed");
    }
}
