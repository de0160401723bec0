//! Restarting on the same data directory loses nothing, and plugins come
//! back from their precompiled artifacts without being compiled again.

use serde_json::json;

use crate::backends::backend_test;
use crate::fixtures;
use crate::helpers::{spawn_app, spawn_app_in};

backend_test! {
    async fn tenants_keys_callbacks_events_and_plugins_survive_a_restart() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        // Bytes of its own: the compile counter is the process's, and other
        // tests (this one on the other backend too) compile the fixture.
        let tag = format!("restart-{:?}", crate::backends::current());
        let wasm = fixtures::distinct(fixtures::plugin("rate-policy"), &tag);
        let (_, plugin) = app.upload(&tenant.key, "rate-policy", wasm).await;
        let plugin_id = plugin["id"].as_str().unwrap().to_string();
        let compiled = format!(
            "hookgate_plugin_compilations_total{{plugin=\"{}\"}}",
            &plugin["sha256"].as_str().unwrap()[..12]
        );
        let cb = app
            .callback(&tenant.key, json!({"name": "limits", "object_type": "policy", "phase": "before", "plugin": {"id": plugin_id}}))
            .await;
        let deny = json!({"id": "evt-before-restart", "object_type": "policy", "action": "updated", "phase": "before",
            "data": {"rules": [{"name": "burst", "rps": 500}]}});
        let (_, first) = app.emit(&tenant.key, deny).await;
        assert_eq!(first["allowed"], false);
        let dir = app.stop().await;

        let app = spawn_app_in(dir, |_| {}).await;
        let (status, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
        assert_eq!(status, 200, "the key and the callback survived");
        assert_eq!(shown["last_status"], "deny");
        let (status, event) = app.get("/v1/events/evt-before-restart", &tenant.key).await;
        assert_eq!((status, &event["answer"]["allowed"]), (200, &json!(false)));
        let (_, again) = app
            .emit(
                &tenant.key,
                json!({"object_type": "policy", "action": "updated", "phase": "before",
                "data": {"rules": [{"name": "burst", "rps": 500}]}}),
            )
            .await;
        assert_eq!(
            again["allowed"], false,
            "the plugin decides after the restart: {again}"
        );
        let metrics = app.metrics_text().await;
        assert!(
            metrics.lines().any(|line| line == format!("{compiled} 1")),
            "compiled once, before the restart; loading from the artifact compiles nothing:\n{metrics}"
        );
    }
}
