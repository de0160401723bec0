//! After-event delivery against real receivers on 127.0.0.1: signatures
//! checked with an independent Standard Webhooks verifier, retries,
//! status handling, plugins, replay, auto-disable, the egress guard and
//! backpressure.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::backends::backend_test;
use crate::fixtures;
use crate::helpers::{
    Received, Receiver, Tenant, TestApp, receiver, spawn_app, spawn_app_in, spawn_app_with_clock,
};
use hookgate::clock::ManualClock;

/// Standard Webhooks verification, written from the specification rather
/// than shared with the server: the signed content is `{id}.{timestamp}.{body}`,
/// the key the base64 part of the `whsec_` secret, and the header may carry
/// several space-separated `v1,` signatures.
fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|sig| sig == expected)
}

pub(crate) fn verify_received(secret: &str, got: &Received) -> bool {
    verify(
        secret,
        got.header("webhook-id").unwrap(),
        got.header("webhook-timestamp").unwrap(),
        &got.body,
        got.header("webhook-signature").unwrap(),
    )
}

#[test]
fn the_test_verifier_passes_the_published_test_vector() {
    assert!(verify(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        "1649367553",
        br#"{"email":"test@example.com","username":"test_user"}"#,
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    ));
    assert!(!verify(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        "1649367554",
        br#"{"email":"test@example.com","username":"test_user"}"#,
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    ));
}

fn after(object_type: &str, data: Value) -> Value {
    json!({"object_type": object_type, "action": "created", "phase": "after", "actor": "alice", "data": data})
}

/// Creates an after-callback and returns (id, secret).
async fn callback(app: &TestApp, tenant: &Tenant, body: Value) -> (String, String) {
    let (status, cb) = app.post("/v1/callbacks", &tenant.key, body).await;
    assert_eq!(status, 201, "{cb}");
    (
        cb["id"].as_str().unwrap().into(),
        cb["secret"].as_str().unwrap().into(),
    )
}

/// A receiver answering `status`, and a callback of `app` events to it
/// that tries each delivery once: (callback id, receiver).
async fn tried_once(app: &TestApp, tenant: &Tenant, status: u16) -> (String, Receiver) {
    let sink = receiver(status).await;
    let (cb, _) = callback(
        app,
        tenant,
        json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url(),
        "retry": {"max_attempts": 1}}),
    )
    .await;
    (cb, sink)
}

/// Emits an after-event and returns its first delivery id.
async fn emit(app: &TestApp, tenant: &Tenant, event: Value) -> String {
    let (status, answer) = app.emit(&tenant.key, event).await;
    assert_eq!(status, 202, "{answer}");
    answer["deliveries"][0]["id"].as_str().unwrap().into()
}

/// Polls a delivery until it reaches `status`.
async fn settled(app: &TestApp, tenant: &Tenant, id: &str, status: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, delivery) = app.get(&format!("/v1/deliveries/{id}"), &tenant.key).await;
        if delivery["status"] == status {
            return delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery not {status} within {secs} s: {delivery}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

backend_test! {
    async fn an_after_event_is_delivered_signed_with_all_its_headers() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let (cb, secret) = callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url(), "headers": {"x-team": "blue"}}),
        )
        .await;
        let id = emit(&app, &tenant, after("app", json!({"name": "weather"}))).await;
        let got = &sink.wait_for(1, 10).await[0];
        let body = got.json();
        assert_eq!(body["type"], "app.created");
        assert_eq!(
            (&body["object_type"], &body["action"], &body["phase"]),
            (&json!("app"), &json!("created"), &json!("after"))
        );
        assert_eq!(
            (&body["actor"], &body["data"]),
            (&json!("alice"), &json!({"name": "weather"}))
        );
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(got.header("webhook-id"), Some(id.as_str()));
        assert!(verify_received(&secret, got), "the signature verifies");
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert!(got.header("user-agent").unwrap().starts_with("hookgate/"));
        assert_eq!(got.header("x-team"), Some("blue"));
        assert_eq!(got.header("hookgate-causation"), body["event_id"].as_str());

        let delivery = settled(&app, &tenant, &id, "succeeded", 10).await;
        let attempt = &delivery["attempts_made"][0];
        assert_eq!(
            (&attempt["attempt"], &attempt["status"], &attempt["outcome"]),
            (&json!(1), &json!(200), &json!("succeeded"))
        );
        assert_eq!(attempt["request"]["headers"]["webhook-signature"], "***");
        assert_eq!(attempt["request"]["url"], sink.url());
        let (_, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
        assert_eq!(shown["last_status"], "succeeded");
    }
}

/// Polls a delivery until `n` attempts are recorded.
async fn attempted(app: &TestApp, tenant: &Tenant, id: &str, n: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, delivery) = app.get(&format!("/v1/deliveries/{id}"), &tenant.key).await;
        if delivery["attempts"].as_u64() == Some(n)
            && delivery["attempts_made"].as_array().map(Vec::len) == Some(n as usize)
        {
            return delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} attempts not recorded: {delivery}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

backend_test! {
    async fn failures_are_retried_on_schedule_with_the_same_webhook_id() {
        let clock = ManualClock::default();
        let app = spawn_app_with_clock(clock.clone()).await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        sink.script([(503, vec![]), (500, vec![])]);
        callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url(),
            "retry": {"max_attempts": 3, "schedule_secs": [30, 120]}}),
        )
        .await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        let first = attempted(&app, &tenant, &id, 1).await;
        let due = first["next_attempt_at"].as_u64().unwrap();
        let wait = due - first["attempts_made"][0]["at"].as_u64().unwrap();
        assert!((24_000..=36_000).contains(&wait), "30 s ±20%: {wait} ms");

        // Nothing happens until the clock reaches the due time.
        clock.advance(Duration::from_millis(wait - 1_000));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.received().len(), 1, "not due yet");
        clock.advance(Duration::from_millis(1_000));
        let second = attempted(&app, &tenant, &id, 2).await;
        let wait = second["next_attempt_at"].as_u64().unwrap()
            - second["attempts_made"][1]["at"].as_u64().unwrap();
        assert!((96_000..=144_000).contains(&wait), "120 s ±20%: {wait} ms");
        clock.advance(Duration::from_millis(wait));
        let delivery = settled(&app, &tenant, &id, "succeeded", 10).await;

        let got = sink.received();
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|r| r.header("webhook-id") == Some(id.as_str())),
            "same id on every attempt"
        );
        let statuses: Vec<&Value> = delivery["attempts_made"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["status"])
            .collect();
        assert_eq!(statuses, [&json!(503), &json!(500), &json!(200)]);
    }
}

backend_test! {
    async fn retries_stop_after_max_attempts_and_one_attempt_means_no_retry() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (_, sink) = tried_once(&app, &tenant, 503).await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        let delivery = settled(&app, &tenant, &id, "failed", 10).await;
        assert_eq!(delivery["attempts"], 1);
        assert!(delivery["last_error"].as_str().unwrap().contains("503"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sink.received().len(), 1);
    }
}

backend_test! {
    async fn a_4xx_is_final_and_a_410_unsubscribes_the_callback() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let bad = receiver(400).await;
        let gone = receiver(410).await;
        callback(
            &app,
            &tenant,
            json!({"name": "bad", "object_type": "app", "phase": "after", "url": bad.url()}),
        )
        .await;
        let (gone_cb, _) = callback(
            &app,
            &tenant,
            json!({"name": "gone", "object_type": "api", "phase": "after", "url": gone.url()}),
        )
        .await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        let delivery = settled(&app, &tenant, &id, "failed", 10).await;
        assert_eq!(delivery["attempts"], 1, "no retry after a 400");
        let id = emit(&app, &tenant, after("api", json!({}))).await;
        settled(&app, &tenant, &id, "failed", 10).await;
        let (_, shown) = app
            .get(&format!("/v1/callbacks/{gone_cb}"), &tenant.key)
            .await;
        assert_eq!(shown["enabled"], false);
        assert!(
            shown["disabled_reason"].as_str().unwrap().contains("410"),
            "{shown}"
        );
        let (_, answer) = app.emit(&tenant.key, after("api", json!({}))).await;
        assert_eq!(
            answer["deliveries"],
            json!([]),
            "an unsubscribed callback gets nothing more"
        );
    }
}

backend_test! {
    async fn retry_after_is_honoured() {
        let clock = ManualClock::default();
        let app = spawn_app_with_clock(clock.clone()).await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        sink.script([(429, vec![("retry-after", "90".to_string())])]);
        callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url(),
            "retry": {"max_attempts": 2, "schedule_secs": [3600]}}),
        )
        .await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        let first = attempted(&app, &tenant, &id, 1).await;
        let wait = first["next_attempt_at"].as_u64().unwrap()
            - first["attempts_made"][0]["at"].as_u64().unwrap();
        assert_eq!(wait, 90_000, "Retry-After: 90 beats the hour's schedule");
        clock.advance(Duration::from_secs(90));
        settled(&app, &tenant, &id, "succeeded", 10).await;
    }
}

backend_test! {
    async fn a_callback_failing_for_the_configured_hours_is_disabled() {
        let clock = ManualClock::default();
        let app = spawn_app_with_clock(clock.clone()).await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(503).await;
        let (cb, _) = callback(
            &app,
            &tenant,
            json!({"name": "down", "object_type": "app", "phase": "after", "url": sink.url(),
            "retry": {"max_attempts": 1}}),
        )
        .await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        settled(&app, &tenant, &id, "failed", 10).await;
        // Five days later it still fails: the default limit is 120 hours.
        clock.advance(Duration::from_secs(121 * 3600));
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        settled(&app, &tenant, &id, "failed", 10).await;
        let (_, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
        assert_eq!(shown["enabled"], false, "{shown}");
        assert!(
            shown["disabled_reason"]
                .as_str()
                .unwrap()
                .contains("failing for 121 hours"),
            "{shown}"
        );
    }
}

backend_test! {
    async fn a_transform_plugin_changes_the_signed_body_and_can_skip() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let (_, redact) = app
            .upload(&tenant.key, "redact", fixtures::plugin("redact"))
            .await;
        let (_, filter) = app
            .upload(
                &tenant.key,
                "content-filter",
                fixtures::plugin("content-filter"),
            )
            .await;
        let (_, secret) = callback(
            &app,
            &tenant,
            json!({"name": "r", "object_type": "developer", "phase": "after", "url": sink.url(),
            "plugin": {"id": redact["id"]}}),
        )
        .await;
        callback(
            &app,
            &tenant,
            json!({"name": "f", "object_type": "app", "phase": "after", "url": sink.url(),
            "plugin": {"id": filter["id"], "config": {"pointer": "/env", "equals": "prod"}}}),
        )
        .await;

        emit(
            &app,
            &tenant,
            after("developer", json!({"name": "bo", "password": "hunter2"})),
        )
        .await;
        let got = &sink.wait_for(1, 10).await[0];
        assert_eq!(got.json()["data"], json!({"name": "bo"}));
        assert!(
            verify_received(&secret, got),
            "the signature covers the transformed body"
        );

        let id = emit(&app, &tenant, after("app", json!({"env": "dev"}))).await;
        let delivery = settled(&app, &tenant, &id, "skipped", 10).await;
        assert!(
            delivery["last_error"].as_str().unwrap().contains("/env"),
            "{delivery}"
        );
        assert_eq!(sink.received().len(), 1, "a skipped delivery sends nothing");
    }
}

backend_test! {
    async fn a_manual_retry_makes_one_new_attempt() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (_, sink) = tried_once(&app, &tenant, 503).await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        settled(&app, &tenant, &id, "failed", 10).await;
        let path = format!("/v1/deliveries/{id}/retry");
        let (status, still_failing) = app.send(Method::POST, &path, &tenant.key, None).await;
        assert_eq!(status, 200, "{still_failing}");
        assert_eq!(
            (&still_failing["status"], &still_failing["attempts"]),
            (&json!("failed"), &json!(2))
        );
        assert_eq!(
            still_failing["next_attempt_at"],
            Value::Null,
            "a manual retry is never rescheduled"
        );
        sink.answer(200);
        let (_, fixed) = app.send(Method::POST, &path, &tenant.key, None).await;
        assert_eq!(
            (&fixed["status"], &fixed["attempts"]),
            (&json!("succeeded"), &json!(3))
        );
        assert_eq!(sink.received().len(), 3);
    }
}

backend_test! {
    async fn a_window_replay_redelivers_only_that_windows_failures() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (cb, sink) = tried_once(&app, &tenant, 500).await;
        let early = emit(&app, &tenant, after("app", json!({"n": 0}))).await;
        let early_delivery = settled(&app, &tenant, &early, "failed", 10).await;
        let since = early_delivery["created_at"].as_u64().unwrap() + 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut window = Vec::new();
        for n in 1..=2 {
            let id = emit(&app, &tenant, after("app", json!({"n": n}))).await;
            settled(&app, &tenant, &id, "failed", 10).await;
            window.push(id);
        }
        sink.answer(200);
        let until = {
            use hookgate::clock::Clock;
            hookgate::clock::SystemClock.now_ms()
        };
        let (status, replay) = app
            .send(
                Method::POST,
                &format!("/v1/callbacks/{cb}/replay?since={since}&until={until}"),
                &tenant.key,
                None,
            )
            .await;
        assert_eq!(status, 200, "{replay}");
        assert_eq!(replay["replayed"], 2);
        for id in &window {
            settled(&app, &tenant, id, "succeeded", 10).await;
        }
        let (_, early_now) = app
            .get(&format!("/v1/deliveries/{early}"), &tenant.key)
            .await;
        assert_eq!(early_now["status"], "failed", "outside the window");
        let (status, body) = app
            .send(
                Method::POST,
                &format!("/v1/callbacks/{cb}/replay?since=yesterday"),
                &tenant.key,
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("since"))
        );
    }
}

backend_test! {
    async fn a_replay_leaves_out_a_delivery_attempted_by_hand_right_now() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (cb, sink) = tried_once(&app, &tenant, 500).await;
        let id = emit(&app, &tenant, after("app", json!({}))).await;
        settled(&app, &tenant, &id, "failed", 10).await;
        sink.delay(2_000);
        let retry = format!("/v1/deliveries/{id}/retry");
        let replay = format!("/v1/callbacks/{cb}/replay");
        let ((_, retried), (status, replayed)) = tokio::join!(
            app.send(Method::POST, &retry, &tenant.key, None),
            async {
                // The manual attempt has reached the receiver.
                sink.wait_for(2, 10).await;
                app.send(Method::POST, &replay, &tenant.key, None).await
            }
        );
        assert_eq!(status, 200, "{replayed}");
        assert_eq!(replayed["replayed"], 0, "{replayed}");
        assert_eq!(
            (&retried["status"], &retried["attempts"]),
            (&json!("failed"), &json!(2)),
            "{retried}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            sink.received().len(),
            2,
            "a replay started a second attempt beside the manual one"
        );

        sink.delay(0);
        sink.answer(200);
        let (_, again) = app.send(Method::POST, &replay, &tenant.key, None).await;
        assert_eq!(again["deliveries"], json!([id]), "{again}");
        settled(&app, &tenant, &id, "succeeded", 10).await;
    }
}

backend_test! {
    async fn deliveries_list_filters_by_callback_and_status() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let ok = receiver(200).await;
        let bad = receiver(400).await;
        let (good_cb, _) = callback(
            &app,
            &tenant,
            json!({"name": "good", "object_type": "app", "phase": "after", "url": ok.url()}),
        )
        .await;
        callback(
            &app,
            &tenant,
            json!({"name": "bad", "object_type": "app", "phase": "after", "url": bad.url()}),
        )
        .await;
        let (_, answer) = app.emit(&tenant.key, after("app", json!({}))).await;
        for d in answer["deliveries"].as_array().unwrap() {
            let want = if d["callback_id"] == good_cb.as_str() {
                "succeeded"
            } else {
                "failed"
            };
            settled(&app, &tenant, d["id"].as_str().unwrap(), want, 10).await;
        }
        let (_, failed) = app.get("/v1/deliveries?status=failed", &tenant.key).await;
        assert_eq!(failed["items"].as_array().unwrap().len(), 1);
        let (_, mine) = app
            .get(
                &format!("/v1/deliveries?callback_id={good_cb}"),
                &tenant.key,
            )
            .await;
        assert_eq!(mine["items"][0]["status"], "succeeded");
        let other = app.tenant("other").await;
        let id = answer["deliveries"][0]["id"].as_str().unwrap();
        assert_eq!(
            app.get(&format!("/v1/deliveries/{id}"), &other.key).await.0,
            404
        );
        assert_eq!(
            app.send(
                Method::POST,
                &format!("/v1/deliveries/{id}/retry"),
                &other.key,
                None
            )
            .await
            .0,
            404
        );
    }
}

backend_test! {
    async fn a_callback_that_keeps_failing_is_disabled_with_the_reason() {
        let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), |c| {
            c.delivery.disable_after_failures = 3;
        })
        .await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(400).await;
        let (cb, _) = callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url()}),
        )
        .await;
        for _ in 0..3 {
            let id = emit(&app, &tenant, after("app", json!({}))).await;
            settled(&app, &tenant, &id, "failed", 10).await;
        }
        let (_, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
        assert_eq!(shown["enabled"], false, "{shown}");
        assert!(
            shown["disabled_reason"]
                .as_str()
                .unwrap()
                .contains("3 failed deliveries in a row")
        );

        // Enabling it again is a fresh start, recorded under the key that
        // did it: one more failure does not disable it at once.
        let (status, enabled) = app
            .send(
                Method::PATCH,
                &format!("/v1/callbacks/{cb}"),
                &tenant.key,
                Some(json!({"enabled": true})),
            )
            .await;
        assert_eq!(status, 200, "{enabled}");
        assert_eq!(enabled["enabled"], true);
        assert_eq!(enabled["disabled_reason"], Value::Null);
        assert_eq!(enabled["updated_by"], "default");
        for round in 1..=3 {
            let id = emit(&app, &tenant, after("app", json!({}))).await;
            settled(&app, &tenant, &id, "failed", 10).await;
            let (_, shown) = app.get(&format!("/v1/callbacks/{cb}"), &tenant.key).await;
            assert_eq!(shown["enabled"], round < 3, "after failure {round}: {shown}");
        }
    }
}

backend_test! {
    async fn secret_rotation_signs_with_both_secrets_during_the_overlap() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let (cb, old) = callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url()}),
        )
        .await;
        let (status, rotated) = app
            .send(
                Method::POST,
                &format!("/v1/callbacks/{cb}/rotate-secret"),
                &tenant.key,
                None,
            )
            .await;
        assert_eq!(status, 200, "{rotated}");
        let new = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new, old);
        emit(&app, &tenant, after("app", json!({}))).await;
        let got = &sink.wait_for(1, 10).await[0];
        assert_eq!(
            got.header("webhook-signature").unwrap().split(' ').count(),
            2
        );
        assert!(verify_received(&new, got) && verify_received(&old, got));
    }
}

backend_test! {
    async fn the_egress_guard_blocks_private_targets_unless_allowed() {
        let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), |c| {
            c.allow_private_targets = false;
        })
        .await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let by_name = sink.url().replace("127.0.0.1", "localhost");
        for (object_type, url) in [("literal", sink.url()), ("named", by_name)] {
            callback(
                &app,
                &tenant,
                json!({"name": object_type, "object_type": object_type, "phase": "after", "url": url}),
            )
            .await;
            let id = emit(&app, &tenant, after(object_type, json!({}))).await;
            let delivery = settled(&app, &tenant, &id, "blocked", 10).await;
            let error = delivery["last_error"].as_str().unwrap();
            assert!(
                error.contains("not a public address") && error.contains("allow_private_targets"),
                "{error}"
            );
            assert_eq!(delivery["attempts"], 1, "a blocked delivery is not retried");
        }
        assert!(
            sink.received().is_empty(),
            "nothing reached the loopback receiver"
        );
        let gate =
            json!({"name": "gate", "object_type": "gated", "phase": "before", "url": sink.url()});
        callback(&app, &tenant, gate).await;
        let (_, answer) = app
            .emit(
                &tenant.key,
                json!({"object_type": "gated", "action": "created", "phase": "before", "data": {}}),
            )
            .await;
        assert_eq!(answer["allowed"], false, "the gate is guarded too");
        assert!(
            answer["decisions"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("not a public address")
        );
    }
}

backend_test! {
    async fn too_many_pending_deliveries_get_a_503_with_retry_after() {
        let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), |c| {
            c.delivery.max_pending = 2;
        })
        .await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        sink.delay(2000);
        callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url()}),
        )
        .await;
        emit(&app, &tenant, after("app", json!({}))).await;
        emit(&app, &tenant, after("app", json!({}))).await;
        let response = app
            .client
            .post(app.url("/v1/events"))
            .bearer_auth(&tenant.key)
            .json(&after("app", json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
    }
}

backend_test! {
    async fn a_tenant_with_hanging_receivers_does_not_hold_up_another_tenants_deliveries() {
        let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), |config| {
            config.delivery.concurrency = 8;
            config.delivery.per_callback_concurrency = 2;
        })
        .await;
        let slow_tenant = app.tenant("slow").await;
        let hanging = receiver(200).await;
        hanging.delay(5_000);
        for n in 0..5 {
            callback(
                &app,
                &slow_tenant,
                json!({"name": format!("hang-{n}"), "object_type": "app", "phase": "after", "url": hanging.url()}),
            )
            .await;
        }
        for n in 0..4 {
            emit(&app, &slow_tenant, after("app", json!({"n": n}))).await;
        }
        // Every slot the slow tenant may take is held by a hanging receiver.
        hanging.wait_for(7, 10).await;

        let other = app.tenant("other").await;
        let fast = receiver(200).await;
        callback(
            &app,
            &other,
            json!({"name": "fast", "object_type": "app", "phase": "after", "url": fast.url()}),
        )
        .await;
        let sent = std::time::Instant::now();
        emit(&app, &other, after("app", json!({}))).await;
        fast.wait_for(1, 10).await;
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "the other tenant waited {:?} behind hanging receivers",
            sent.elapsed()
        );
        hanging.delay(0);
    }
}

backend_test! {
    async fn a_tenant_that_took_the_slots_alone_gives_them_back_as_another_comes() {
        // Eight slots: a tenant alone may take seven, and the eighth is the
        // reserve for a tenant that comes.
        let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), |config| {
            config.delivery.concurrency = 8;
            config.delivery.per_callback_concurrency = 8;
        })
        .await;
        let first = app.tenant("first").await;
        let busy = receiver(200).await;
        busy.delay(500);
        callback(
            &app,
            &first,
            json!({"name": "busy", "object_type": "app", "phase": "after", "url": busy.url()}),
        )
        .await;
        for n in 0..100 {
            emit(&app, &first, after("app", json!({"n": n}))).await;
        }
        busy.wait_for(7, 10).await;

        let second = app.tenant("second").await;
        let slow = receiver(200).await;
        slow.delay(500);
        callback(
            &app,
            &second,
            json!({"name": "slow", "object_type": "app", "phase": "after", "url": slow.url()}),
        )
        .await;
        for n in 0..20 {
            emit(&app, &second, after("app", json!({"n": n}))).await;
        }
        // The second tenant takes the reserve. Then the first holds more
        // than its share of four: each attempt of its that ends gives its
        // slot back rather than passing it to its next delivery, and the
        // second tenant takes it, up to the reserve's share of three.
        // Passing them on instead would keep the first tenant's seven
        // slots for sixteen attempts each, eight seconds here.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while slow.most_in_flight() < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            slow.most_in_flight() >= 3,
            "the second tenant had at most {} deliveries in flight, beside {} of the first's",
            slow.most_in_flight(),
            busy.most_in_flight()
        );
        busy.delay(0);
        slow.delay(0);
    }
}

backend_test! {
    async fn history_never_shows_credentials_in_urls_or_the_callbacks_own_headers() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let with_secrets = format!(
            "http://alice:hunter2@{}/hook?token=t0ps3cret&page=2",
            sink.addr
        );
        let (cb, _) = callback(
            &app,
            &tenant,
            json!({"name": "creds", "object_type": "app", "phase": "after", "url": with_secrets,
                "headers": {"x-partner-key": "k3y-value", "x-team": "blue"}}),
        )
        .await;
        let delivery = emit(&app, &tenant, after("app", json!({}))).await;
        let done = settled(&app, &tenant, &delivery, "succeeded", 10).await;
        let got = &sink.received()[0];
        assert_eq!(
            got.target, "/hook?token=t0ps3cret&page=2",
            "the receiver gets them"
        );
        assert_eq!(got.header("x-partner-key"), Some("k3y-value"));
        let attempt = &done["attempts_made"][0]["request"];
        assert_eq!(
            attempt["url"],
            format!("http://alice:***@{}/hook?token=***&page=2", sink.addr)
        );
        assert_eq!(attempt["headers"]["x-partner-key"], "***");
        assert_eq!(attempt["headers"]["x-team"], "***");

        // Error texts quote the URL too.
        let dead = crate::helpers::dead_url()
            .await
            .replace("http://", "http://alice:hunter2@");
        let (status, _) = app
            .send(
                Method::PATCH,
                &format!("/v1/callbacks/{cb}"),
                &tenant.key,
                Some(json!({"url": format!("{dead}?sig=t0ps3cret"), "retry": {"max_attempts": 1}})),
            )
            .await;
        assert_eq!(status, 200);
        let failed = emit(&app, &tenant, after("app", json!({}))).await;
        let failed = settled(&app, &tenant, &failed, "failed", 10).await;
        let (_, listed) = app.get("/v1/deliveries", &tenant.key).await;
        let (_, activations) = app
            .get(&format!("/v1/callbacks/{cb}/activations"), &tenant.key)
            .await;
        for shown in [&done, &failed, &listed, &activations] {
            let text = shown.to_string();
            for secret in ["hunter2", "t0ps3cret", "k3y-value", "blue"] {
                assert!(!text.contains(secret), "history shows {secret}: {text}");
            }
        }
        assert!(
            failed["last_error"]
                .as_str()
                .unwrap()
                .contains("alice:***@"),
            "{failed}"
        );
    }
}

backend_test! {
    async fn a_callbacks_stats_count_its_attempts_by_hour() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (ok, failing) = (receiver(200).await, receiver(500).await);
        let (healthy, _) = callback(
            &app,
            &tenant,
            json!({"name": "healthy", "object_type": "app", "phase": "after", "url": ok.url()}),
        )
        .await;
        let (broken, _) = callback(
            &app,
            &tenant,
            json!({"name": "broken", "object_type": "order", "phase": "after", "url": failing.url(),
                "retry": {"max_attempts": 2, "schedule_secs": [1]}}),
        )
        .await;
        for _ in 0..3 {
            let id = emit(&app, &tenant, after("app", json!({}))).await;
            settled(&app, &tenant, &id, "succeeded", 10).await;
        }
        let id = emit(&app, &tenant, after("order", json!({}))).await;
        settled(&app, &tenant, &id, "failed", 10).await;

        let (status, stats) = app
            .get(&format!("/v1/callbacks/{healthy}/stats"), &tenant.key)
            .await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(
            (&stats["window_hours"], &stats["succeeded"], &stats["failed"], &stats["success_rate"]),
            (&json!(24), &json!(3), &json!(0), &json!(1.0))
        );
        let hours = stats["hours"].as_array().unwrap();
        assert_eq!(hours.len(), 24, "every hour of the window");
        let listed: u64 = hours.iter().map(|h| h["succeeded"].as_u64().unwrap()).sum();
        assert_eq!(listed, 3);

        // Each attempt counts, the retry too.
        let (_, stats) = app
            .get(&format!("/v1/callbacks/{broken}/stats?window=7d"), &tenant.key)
            .await;
        assert_eq!(
            (&stats["window_hours"], &stats["succeeded"], &stats["failed"], &stats["success_rate"]),
            (&json!(168), &json!(0), &json!(2), &json!(0.0))
        );

        let (status, error) = app
            .get(&format!("/v1/callbacks/{healthy}/stats?window=%C2%80"), &tenant.key)
            .await;
        assert_eq!(status, 422, "a character of two bytes is refused, not a panic: {error}");
        let (status, error) = app
            .get(&format!("/v1/callbacks/{healthy}/stats?window=2x"), &tenant.key)
            .await;
        assert_eq!(status, 422, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("`2x` is not a window") && message.contains("24h or 7d"), "{error}");
        let other = app.tenant("other").await;
        let (status, _) = app
            .get(&format!("/v1/callbacks/{healthy}/stats"), &other.key)
            .await;
        assert_eq!(status, 404, "another tenant's callback is not found");

        // The tenant's figures add up every callback's; a read key may ask.
        let (_, reader) = app
            .post("/v1/keys", &tenant.key, json!({"name": "dash", "role": "read"}))
            .await;
        let (status, all) = app
            .get("/v1/stats?window=2h", reader["api_key"].as_str().unwrap())
            .await;
        assert_eq!(status, 200, "{all}");
        assert_eq!(
            (&all["window_hours"], &all["succeeded"], &all["failed"], &all["success_rate"]),
            (&json!(2), &json!(3), &json!(2), &json!(0.6))
        );
        let (_, theirs) = app.get("/v1/stats", &other.key).await;
        assert_eq!((&theirs["succeeded"], &theirs["failed"]), (&json!(0), &json!(0)));
    }
}

backend_test! {
    async fn history_filters_by_outcome_and_time_and_pages_both_ways() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let (cb, _) = callback(
            &app,
            &tenant,
            json!({"name": "n", "object_type": "app", "phase": "after", "url": sink.url(),
                "retry": {"max_attempts": 1}}),
        )
        .await;
        // Oldest first: three that succeed, three that fail, two that succeed.
        for (count, status, outcome) in [(3, 200, "succeeded"), (3, 500, "failed"), (2, 200, "succeeded")] {
            sink.answer(status);
            for _ in 0..count {
                let id = emit(&app, &tenant, after("app", json!({}))).await;
                settled(&app, &tenant, &id, outcome, 10).await;
            }
        }
        let list = |query: String| {
            let app = &app;
            let path = format!("/v1/callbacks/{cb}/activations?{query}");
            let key = tenant.key.clone();
            async move {
                let (status, page) = app.get(&path, &key).await;
                assert_eq!(status, 200, "{path}: {page}");
                page
            }
        };
        let ids = |page: &Value| -> Vec<String> {
            page["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
        };
        let all = list(String::new()).await;
        let outcomes: Vec<&str> = all["items"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["succeeded", "succeeded", "failed", "failed", "failed", "succeeded", "succeeded", "succeeded"]);

        let failed = list("outcome=failed".into()).await;
        assert_eq!(ids(&failed), ids(&all)[2..5]);
        let first_failure = all["items"][4]["at"].as_u64().unwrap();
        let last_failure = all["items"][2]["at"].as_u64().unwrap();
        let window = list(format!("since={first_failure}&until={}", last_failure + 1)).await;
        assert_eq!(ids(&window), ids(&all)[2..5], "the window holds the failures");

        // Three at a time, back and forth.
        let newest = list("limit=3".into()).await;
        assert_eq!(ids(&newest), ids(&all)[..3]);
        assert!(newest.get("prev_cursor").is_none(), "nothing is newer than the newest");
        let older = list(format!("limit=3&cursor={}", newest["next_cursor"].as_str().unwrap())).await;
        assert_eq!(ids(&older), ids(&all)[3..6]);
        let back = list(format!("limit=3&after={}", older["prev_cursor"].as_str().unwrap())).await;
        assert_eq!(ids(&back), ids(&newest), "going back gives the newer page again");
        assert!(back.get("prev_cursor").is_none(), "{back}");
        assert_eq!(back["next_cursor"], newest["next_cursor"]);
        let oldest = list(format!("limit=3&cursor={}", older["next_cursor"].as_str().unwrap())).await;
        assert_eq!(ids(&oldest), ids(&all)[6..]);
        assert_eq!(oldest["next_cursor"], Value::Null);
        let middle = list(format!("limit=3&after={}", oldest["prev_cursor"].as_str().unwrap())).await;
        assert_eq!(ids(&middle), ids(&older));
        assert!(middle["prev_cursor"].is_string(), "newer pages remain");

        let (status, error) = app
            .get(&format!("/v1/callbacks/{cb}/activations?cursor=a&after=b"), &tenant.key)
            .await;
        assert_eq!(status, 422, "{error}");
        let (status, error) = app
            .get(&format!("/v1/callbacks/{cb}/activations?since=yesterday"), &tenant.key)
            .await;
        assert_eq!((status, &error["error"]["field"]), (422, &json!("since")), "{error}");
    }
}
