//! Events: the before-gate's ordering, short-circuit and failure rules,
//! plugin decisions and judgments, after-event intake, idempotency, the
//! loop guard, history and tenant isolation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backends::backend_test;
use crate::fixtures;
use crate::helpers::{Tenant, TestApp, dead_url, receiver, spawn_app, spawn_app_in};

fn before(object_type: &str, data: Value) -> Value {
    json!({"object_type": object_type, "action": "updated", "phase": "before", "actor": "alice", "data": data})
}

async fn plugin(app: &TestApp, tenant: &Tenant, name: &str) -> String {
    let (status, body) = app.upload(&tenant.key, name, fixtures::plugin(name)).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

backend_test! {
    async fn an_event_nothing_listens_to_is_allowed() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (status, answer) = app.emit(&tenant.key, before("app", json!({}))).await;
        assert_eq!(status, 200);
        assert_eq!(answer["allowed"], true);
        assert_eq!(answer["decisions"], json!([]));
        assert!(answer["event_id"].as_str().unwrap().starts_with("evt_"));
    }
}

backend_test! {
    async fn before_callbacks_run_in_name_order_and_the_first_deny_wins() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let ok = receiver(200).await;
        let refusing = receiver(403).await;
        let never = receiver(200).await;
        for (name, url) in [
            ("b-refuses", refusing.url()),
            ("c-never-called", never.url()),
            ("a-allows", ok.url()),
        ] {
            app.callback(
                &tenant.key,
                json!({"name": name, "object_type": "app", "phase": "before", "url": url}),
            )
            .await;
        }
        let (status, answer) = app
            .emit(&tenant.key, before("app", json!({"name": "weather"})))
            .await;
        assert_eq!(status, 200);
        assert_eq!(answer["allowed"], false);
        let decisions = answer["decisions"].as_array().unwrap();
        let order: Vec<&str> = decisions
            .iter()
            .map(|d| d["callback_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            ["a-allows", "b-refuses"],
            "name order, stopping at the deny"
        );
        assert_eq!(
            (&decisions[0]["verdict"], &decisions[0]["status"]),
            (&json!("allow"), &json!(200))
        );
        assert_eq!(
            (&decisions[1]["verdict"], &decisions[1]["status"]),
            (&json!("deny"), &json!(403))
        );
        assert!(
            decisions[1]["reason"].as_str().unwrap().contains("403"),
            "{}",
            decisions[1]
        );
        assert!(decisions[1]["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(
            never.received().is_empty(),
            "callbacks after a deny never run"
        );

        let got = &ok.received()[0];
        let body = got.json();
        assert_eq!(
            (&body["type"], &body["phase"], &body["data"]["name"]),
            (&json!("app.updated"), &json!("before"), &json!("weather"))
        );
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(
            got.header("hookgate-causation"),
            Some(answer["event_id"].as_str().unwrap())
        );
        assert!(got.header("user-agent").unwrap().starts_with("hookgate/"));
    }
}

backend_test! {
    async fn every_failure_to_get_the_expected_answer_denies_saying_why() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let slow = receiver(200).await;
        slow.delay(1000);
        let created = receiver(201).await;
        let cases = [
            (dead_url().await, None, "refused the connection"),
            (slow.url(), Some(100), "within 100 ms"),
            (created.url(), None, "answered HTTP 201, expected 200"),
            (
                "http://unknown-host.invalid/hook".to_string(),
                None,
                "cannot resolve",
            ),
        ];
        for (i, (url, timeout_ms, reason)) in cases.into_iter().enumerate() {
            let object_type = format!("thing{i}");
            let mut callback = json!({"name": format!("gate-{i}"), "object_type": object_type, "phase": "before", "url": url});
            if let Some(ms) = timeout_ms {
                callback["timeout_ms"] = json!(ms);
            }
            app.callback(&tenant.key, callback).await;
            let (_, answer) = app.emit(&tenant.key, before(&object_type, json!({}))).await;
            assert_eq!(answer["allowed"], false, "{answer}");
            let got = answer["decisions"][0]["reason"].as_str().unwrap();
            assert!(got.contains(reason), "expected {reason:?} in {got:?}");
        }
        let expects_201 = json!({"name": "gate-201", "object_type": "ok201", "phase": "before", "url": created.url(), "expected_status": 201});
        app.callback(&tenant.key, expects_201).await;
        assert_eq!(
            app.emit(&tenant.key, before("ok201", json!({}))).await.1["allowed"],
            true
        );
    }
}

backend_test! {
    async fn a_plugin_decides_without_any_url() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let id = plugin(&app, &tenant, "rate-policy").await;
        let cb = app.callback(&tenant.key, json!({"name": "limits", "object_type": "policy", "phase": "before",
            "plugin": {"id": id, "config": {"max_rps": 100, "strict": true, "scope": "all"}}}))
            .await;
        // The configuration reads back as written; the plugin reads text.
        let (_, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
        assert_eq!(
            shown["plugin"]["config"],
            json!({"max_rps": 100, "strict": true, "scope": "all"})
        );
        let (_, denied) = app
            .emit(
                &tenant.key,
                before("policy", json!({"rules": [{"name": "burst", "rps": 500}]})),
            )
            .await;
        assert_eq!(denied["allowed"], false);
        assert!(
            denied["decisions"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("burst")
        );
        let (_, allowed) = app
            .emit(
                &tenant.key,
                before("policy", json!({"rules": [{"name": "calm", "rps": 5}]})),
            )
            .await;
        assert_eq!(allowed["allowed"], true, "{allowed}");
    }
}

backend_test! {
    async fn a_failing_plugin_denies() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let id = plugin(&app, &tenant, "hostile").await;
        app.callback(&tenant.key, json!({"name": "loops", "object_type": "app", "phase": "before", "plugin": {"id": id, "config": {"mode": "loop"}}}))
            .await;
        let (_, answer) = app.emit(&tenant.key, before("app", json!({}))).await;
        assert_eq!(answer["allowed"], false);
        assert!(
            answer["decisions"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("out of fuel"),
            "{answer}"
        );
    }
}

backend_test! {
    async fn judge_overrides_the_status_verdict_both_ways() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let id = plugin(&app, &tenant, "hostile").await;
        let teapot = receiver(418).await;
        let ok = receiver(200).await;
        for (object_type, url, mode) in [
            ("lenient", teapot.url(), "judge-allow"),
            ("strict", ok.url(), "judge-deny"),
        ] {
            app.callback(
                &tenant.key,
                json!({"name": object_type, "object_type": object_type, "phase": "before", "url": url,
                "plugin": {"id": id, "config": {"mode": mode}}}),
            )
            .await;
        }
        let (_, lenient) = app.emit(&tenant.key, before("lenient", json!({}))).await;
        assert_eq!(lenient["allowed"], true, "judge allowed a 418: {lenient}");
        assert_eq!(lenient["decisions"][0]["status"], 418);
        let (_, strict) = app.emit(&tenant.key, before("strict", json!({}))).await;
        assert_eq!(strict["allowed"], false, "judge denied a 200: {strict}");
        assert_eq!(
            strict["decisions"][0]["reason"],
            "plugin overruled HTTP 200"
        );
    }
}

backend_test! {
    async fn decide_runs_first_and_transform_shapes_the_request() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let hostile = plugin(&app, &tenant, "hostile").await;
        let ok = receiver(200).await;
        app.callback(
            &tenant.key,
            json!({"name": "decides", "object_type": "app", "phase": "before", "url": ok.url(),
            "plugin": {"id": hostile, "config": {"mode": "echo-config", "echo": "decided locally"}}}),
        )
        .await;
        let (_, answer) = app.emit(&tenant.key, before("app", json!({}))).await;
        assert_eq!(answer["decisions"][0]["reason"], "decided locally");
        assert!(
            ok.received().is_empty(),
            "a deny from decide ends the callback before its URL"
        );

        let redact = plugin(&app, &tenant, "redact").await;
        let down = receiver(503).await;
        app.callback(
            &tenant.key,
            json!({"name": "agrees", "object_type": "api", "phase": "before", "url": down.url(),
            "plugin": {"id": redact}}),
        )
        .await;
        let (_, answer) = app
            .emit(&tenant.key, before("api", json!({"password": "p", "x": 1})))
            .await;
        assert_eq!(
            answer["allowed"], false,
            "redact has no judge, so the 503 denies"
        );
        assert_eq!(
            down.received()[0].json()["data"],
            json!({"x": 1}),
            "transform ran before the POST"
        );
    }
}

backend_test! {
    async fn after_events_are_stored_with_one_pending_delivery_per_callback() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let mut ids = Vec::new();
        for name in ["one", "two"] {
            ids.push(
                app.callback(
                    &tenant.key,
                    json!({"name": name, "object_type": "app", "phase": "after", "url": sink.url()}),
                )
                .await,
            );
        }
        app.callback(&tenant.key, json!({"name": "off", "object_type": "app", "phase": "after", "url": sink.url(), "enabled": false})).await;
        app.callback(&tenant.key, json!({"name": "deletes-only", "object_type": "app", "phase": "after", "url": sink.url(), "actions": ["deleted"]})).await;
        let (status, answer) = app
            .emit(&tenant.key, json!({"object_type": "app", "action": "created", "phase": "after", "data": {"name": "x"}}))
            .await;
        assert_eq!(status, 202, "{answer}");
        let deliveries = answer["deliveries"].as_array().unwrap();
        let mut targets: Vec<&str> = deliveries
            .iter()
            .map(|d| d["callback_id"].as_str().unwrap())
            .collect();
        targets.sort();
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(targets, expected, "enabled callbacks for this action only");

        let event_id = answer["event_id"].as_str().unwrap();
        let (status, stored) = app
            .get(&format!("/v1/events/{event_id}"), &tenant.key)
            .await;
        assert_eq!(status, 200);
        assert_eq!(stored["event"]["data"], json!({"name": "x"}));
        assert_eq!(stored["delivery_states"].as_array().unwrap().len(), 2);
        assert!(
            stored["delivery_states"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["status"].is_string())
        );
    }
}

backend_test! {
    async fn a_repeated_event_id_gets_the_original_answer_and_runs_nothing() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let cb = app
            .callback(
                &tenant.key,
                json!({"name": "g", "object_type": "app", "phase": "before", "url": sink.url()}),
            )
            .await;
        let mut event = before("app", json!({}));
        event["id"] = json!("client-key-1");
        let first = app.emit(&tenant.key, event.clone()).await;
        let second = app.emit(&tenant.key, event.clone()).await;
        assert_eq!(first, second);
        assert_eq!(first.1["event_id"], "client-key-1");
        assert_eq!(sink.received().len(), 1, "the gate ran once");
        let (_, history) = app
            .get(&format!("/v1/callbacks/{cb}/activations"), &tenant.key)
            .await;
        assert_eq!(history["items"].as_array().unwrap().len(), 1);

        let after = json!({"id": "client-key-2", "object_type": "app", "action": "created", "phase": "after", "data": {}});
        app.callback(
            &tenant.key,
            json!({"name": "a", "object_type": "app", "phase": "after", "url": sink.url()}),
        )
        .await;
        let (s1, a1) = app.emit(&tenant.key, after.clone()).await;
        let (s2, a2) = app.emit(&tenant.key, after).await;
        assert_eq!((s1, &a1), (s2, &a2));
        assert_eq!(a1["deliveries"].as_array().unwrap().len(), 1);
    }
}

backend_test! {
    async fn an_event_id_reused_by_another_event_is_refused_and_the_first_event_stands() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        app.callback(
            &tenant.key,
            json!({"name": "a", "object_type": "app", "phase": "after", "url": sink.url()}),
        )
        .await;
        // A float that a parser without exact round trips reads back as
        // another number once stored.
        let first = json!({"id": "k-1", "object_type": "app", "action": "created",
            "phase": "after", "data": {"name": "x", "v": 1e-24}});
        let (status, accepted) = app.emit(&tenant.key, first.clone()).await;
        assert_eq!(status, 202);

        for (field, value) in [
            ("phase", json!("before")),
            ("object_type", json!("api")),
            ("action", json!("deleted")),
            ("actor", json!("someone")),
            ("data", json!({"name": "y"})),
        ] {
            let mut other = first.clone();
            other[field] = value;
            let (status, body) = app.emit(&tenant.key, other).await;
            assert_eq!(status, 409, "{field}: {body}");
            assert_eq!(body["error"]["code"], "event_id_reused", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("`{field}` differs")), "{message}");
        }

        // The first event is untouched, and sending it again is still a retry.
        let (status, again) = app.emit(&tenant.key, first).await;
        assert_eq!((status, &again), (202, &accepted));
        let (_, stored) = app.get("/v1/events/k-1", &tenant.key).await;
        assert_eq!(stored["event"]["data"], json!({"name": "x", "v": 1e-24}));
        assert_eq!(stored["event"]["phase"], "after");
        sink.wait_for(1, 10).await;

        // Two different events under one new id at once: whichever is
        // stored second, whether it saw the first before or as it wrote, is
        // refused.
        let one = json!({"id": "k-2", "object_type": "app", "action": "created",
            "phase": "after", "data": {"n": 1}});
        let mut two = one.clone();
        two["data"] = json!({"n": 2});
        let ((s1, b1), (s2, b2)) =
            tokio::join!(app.emit(&tenant.key, one), app.emit(&tenant.key, two));
        let mut statuses = [s1, s2];
        statuses.sort();
        assert_eq!(statuses, [202, 409], "{b1} {b2}");
        sink.wait_for(2, 10).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(sink.received().len(), 2, "two events, each delivered once");
    }
}

backend_test! {
    async fn the_loop_guard_refuses_chains_past_the_max_depth() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let emit_with = |chain: String| {
            let app = &app;
            let key = tenant.key.clone();
            async move {
                let response = app
                    .client
                    .post(app.url("/v1/events"))
                    .bearer_auth(key)
                    .header("hookgate-causation", chain)
                    .json(&before("app", json!({})))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            }
        };
        let chain = |n: usize| {
            (0..n)
                .map(|i| format!("evt_{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (status, _) = emit_with(chain(7)).await;
        assert_eq!(status, 200, "8 deep is within the default limit");
        let (status, body) = emit_with(chain(8)).await;
        assert_eq!(status, 409);
        assert_eq!(body["error"]["code"], "event_loop");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("9 deep") && message.contains("limit of 8") && message.contains("evt_0"),
            "{message}"
        );
    }
}

backend_test! {
    async fn activations_keep_requests_and_responses_with_secrets_redacted() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let cb = app
            .callback(
                &tenant.key,
                json!({"name": "g", "object_type": "app", "phase": "before", "url": sink.url(),
                "headers": {"authorization": "Bearer very-secret", "x-team": "blue"}}),
            )
            .await;
        for _ in 0..3 {
            app.emit(&tenant.key, before("app", json!({"n": 1}))).await;
        }
        assert_eq!(
            sink.received()[0].header("authorization"),
            Some("Bearer very-secret")
        );
        let (status, page) = app
            .get(
                &format!("/v1/callbacks/{cb}/activations?limit=2"),
                &tenant.key,
            )
            .await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        let act = &items[0];
        assert_eq!(
            (&act["outcome"], &act["status"]),
            (&json!("allow"), &json!(200))
        );
        assert_eq!(act["request"]["url"], sink.url());
        assert_eq!(act["request"]["headers"]["authorization"], "***");
        assert_eq!(
            act["request"]["headers"]["x-team"], "***",
            "the callback's own headers are secrets in history"
        );
        assert!(act["request"]["body"].as_str().unwrap().contains("\"n\":1"));
        assert_eq!(act["response"]["status"], 200);
        assert!(!page.to_string().contains("very-secret"));
        let cursor = page["next_cursor"].as_str().unwrap();
        let (_, rest) = app
            .get(
                &format!("/v1/callbacks/{cb}/activations?cursor={cursor}"),
                &tenant.key,
            )
            .await;
        assert_eq!(rest["items"].as_array().unwrap().len(), 1);
        assert!(
            rest["items"][0]["id"].as_str() < items[1]["id"].as_str(),
            "newest first"
        );

        let (_, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
        assert_eq!(shown["last_status"], "allow");
        assert!(shown["last_triggered_at"].as_u64().is_some());

        let event_id = act["event_id"].as_str().unwrap();
        let (_, event) = app
            .get(&format!("/v1/events/{event_id}"), &tenant.key)
            .await;
        assert_eq!(event["decisions"][0]["callback_id"], cb.as_str());
        assert_eq!(event["activations"][0]["id"], act["id"]);
    }
}

backend_test! {
    async fn another_tenants_ids_are_404_everywhere() {
        let app = spawn_app().await;
        let owner = app.tenant("owner").await;
        let other = app.tenant("other").await;
        let sink = receiver(200).await;
        let plugin_id = plugin(&app, &owner, "redact").await;
        let cb = app
            .callback(
                &owner.key,
                json!({"name": "g", "object_type": "app", "phase": "before", "url": sink.url()}),
            )
            .await;
        let (_, event) = app.emit(&owner.key, before("app", json!({}))).await;
        let event_id = event["event_id"].as_str().unwrap();
        let (_, key) = app
            .post("/v1/keys", &owner.key, json!({"name": "k", "role": "read"}))
            .await;
        let key_id = key["id"].as_str().unwrap();
        let put =
            json!({"name": "x", "object_type": "app", "phase": "after", "url": "https://example.com"});
        let requests = [
            (Method::GET, format!("/v1/callbacks/{cb}"), None),
            (Method::PUT, format!("/v1/callbacks/{cb}"), Some(put)),
            (
                Method::PATCH,
                format!("/v1/callbacks/{cb}"),
                Some(json!({"enabled": false})),
            ),
            (Method::DELETE, format!("/v1/callbacks/{cb}"), None),
            (Method::GET, format!("/v1/callbacks/{cb}/activations"), None),
            (Method::GET, format!("/v1/plugins/{plugin_id}"), None),
            (Method::DELETE, format!("/v1/plugins/{plugin_id}"), None),
            (Method::GET, format!("/v1/events/{event_id}"), None),
            (Method::DELETE, format!("/v1/keys/{key_id}"), None),
        ];
        for (method, path, body) in requests {
            let (status, answer) = app.send(method.clone(), &path, &other.key, body).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            assert!(
                !answer.to_string().contains(&owner.id),
                "no data leaks: {answer}"
            );
        }
        let (_, list) = app.get("/v1/callbacks", &other.key).await;
        assert_eq!(list["items"], json!([]));
        let (_, plugins) = app.get("/v1/plugins", &other.key).await;
        assert_eq!(plugins["items"], json!([]));
        let (_, answer) = app.emit(&other.key, before("app", json!({}))).await;
        assert_eq!(
            answer["decisions"],
            json!([]),
            "another tenant's events trigger nothing of the owner's"
        );
        assert_eq!(sink.received().len(), 1);
        let (_, still) = app.get(&format!("/v1/callbacks/{cb}"), &owner.key).await;
        assert_eq!(still["enabled"], true, "the owner's callback is untouched");
    }
}

backend_test! {
    async fn before_callbacks_are_signed_exactly_as_deliveries_are() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let (status, cb) = app
            .post(
                "/v1/callbacks",
                &tenant.key,
                json!({"name": "signed", "object_type": "app", "phase": "before", "url": sink.url()}),
            )
            .await;
        assert_eq!(status, 201);
        let (_, answer) = app.emit(&tenant.key, before("app", json!({"n": 1}))).await;
        assert_eq!(answer["allowed"], true, "{answer}");
        let got = &sink.received()[0];
        assert_eq!(
            got.header("webhook-id"),
            answer["decisions"][0]["activation_id"].as_str(),
            "the activation is the message"
        );
        assert!(
            crate::delivery::verify_received(cb["secret"].as_str().unwrap(), got),
            "a Standard Webhooks verifier accepts it"
        );
    }
}

backend_test! {
    async fn a_plugin_cannot_set_hookgates_own_headers_on_any_request() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let hostile = plugin(&app, &tenant, "hostile").await;
        let sink = receiver(200).await;
        for (name, phase) in [("gate", "before"), ("delivery", "after")] {
            app.callback(
                &tenant.key,
                json!({"name": name, "object_type": "app", "phase": phase, "url": sink.url(),
                "plugin": {"id": hostile, "config": {"mode": "forge-headers"}}}),
            )
            .await;
        }
        let (status, gate) = app.emit(&tenant.key, before("app", json!({}))).await;
        assert_eq!((status, &gate["allowed"]), (200, &json!(true)), "{gate}");
        let (status, accepted) = app
            .emit(
                &tenant.key,
                json!({"object_type": "app", "action": "created", "phase": "after", "data": {}}),
            )
            .await;
        assert_eq!(status, 202);
        let got = sink.wait_for(2, 10).await;
        for (request, event) in got.iter().zip([&gate, &accepted]) {
            assert_eq!(
                request.header("hookgate-causation"),
                event["event_id"].as_str(),
                "the loop guard's header is the host's"
            );
            assert_ne!(request.header("webhook-id"), Some("msg_forged"));
            assert!(
                !request
                    .header("webhook-signature")
                    .unwrap()
                    .contains("forged")
            );
            assert_ne!(request.header("host"), Some("forged.example"));
            assert_eq!(request.header("x-plugin"), Some("kept"));
            assert!(request.json().is_object(), "the body arrived whole");
        }
    }
}

/// Past the memory budget, plugins used least recently are dropped, and
/// come back from the node's compile cache when next used: every gate
/// still decides, and nothing is compiled twice.
#[tokio::test]
async fn past_the_memory_budget_plugins_are_dropped_and_come_back_without_compiling() {
    let app = spawn_app_in(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| {
        c.plugin.resident_mib = 1;
    })
    .await;
    let tenant = app.tenant("acme").await;
    // Eight plugins of their own bytes: more compiled code than 1 MiB.
    let mut shas = Vec::new();
    for i in 0..8 {
        let wasm = fixtures::distinct(fixtures::plugin("rate-policy"), &format!("budget-{i}"));
        let (status, uploaded) = app.upload(&tenant.key, &format!("limits-{i}"), wasm).await;
        assert_eq!(status, 201, "{uploaded}");
        let id = uploaded["id"].as_str().unwrap();
        assert_eq!(app.settled_plugin(&tenant.key, id).await["state"], "ready");
        shas.push(uploaded["sha256"].as_str().unwrap()[..12].to_string());
        app.callback(
            &tenant.key,
            json!({"name": format!("limits-{i}"), "object_type": "policy",
            "phase": "before", "plugin": {"id": id, "config": {"max_rps": 100}}}),
        )
        .await;
    }
    // Each event runs all eight, in name order, more than the budget holds.
    for round in 0..3 {
        let (_, allowed) = app
            .emit(
                &tenant.key,
                before("policy", json!({"rules": [{"name": "calm", "rps": 5}]})),
            )
            .await;
        assert_eq!(allowed["allowed"], true, "round {round}: {allowed}");
        let verdicts: Vec<&Value> = allowed["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["verdict"])
            .collect();
        assert_eq!(verdicts, [&json!("allow"); 8], "round {round}: {allowed}");
    }
    let (_, denied) = app
        .emit(
            &tenant.key,
            before("policy", json!({"rules": [{"name": "burst", "rps": 500}]})),
        )
        .await;
    assert_eq!(denied["allowed"], false, "{denied}");
    let metrics = app.metrics_text().await;
    let evicted: f64 = crate::helpers::metric_sum(&metrics, "hookgate_plugin_evictions_total");
    assert!(evicted > 0.0, "the budget dropped plugins:\n{metrics}");
    for sha in &shas {
        let line = format!("hookgate_plugin_compilations_total{{plugin=\"{sha}\"}} 1");
        assert!(
            metrics.lines().any(|l| l == line),
            "{sha} compiled once, however often dropped:\n{metrics}"
        );
    }
}
