//! The management API: auth, tenants, keys, plugins and callbacks, each
//! endpoint's happy path and errors.

use hookgate::plugin::Compiler;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backends::backend_test;
use crate::fixtures;
use crate::helpers::{ADMIN_TOKEN, receiver, spawn_app, spawn_app_in};

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

backend_test! {
    async fn admin_creates_and_lists_tenants_with_a_working_key() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        assert!(tenant.key.starts_with("hg_"));
        let (status, list) = app.get("/v1/tenants", ADMIN_TOKEN).await;
        assert_eq!(status, 200);
        assert_eq!(list["items"][0]["name"], "acme");
        assert!(
            list["items"][0].get("api_key").is_none(),
            "keys are shown once only"
        );
        let (status, _) = app.get("/v1/keys", &tenant.key).await;
        assert_eq!(status, 200, "the tenant's first key manages");
    }
}

backend_test! {
    async fn missing_or_wrong_credentials_are_401_in_json() {
        let app = spawn_app().await;
        let response = app.client.get(app.url("/v1/tenants")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "unauthorized");
        let (status, _) = app.get("/v1/tenants", "not-the-admin-token").await;
        assert_eq!(status, 401);
        let tenant = app.tenant("acme").await;
        let (status, _) = app.get("/v1/tenants", &tenant.key).await;
        assert_eq!(status, 401, "a tenant key is not the admin token");
        let (status, body) = app.get("/v1/callbacks", "hg_forged").await;
        assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    }
}

backend_test! {
    async fn malformed_json_is_400_and_a_bad_field_is_422_naming_it() {
        let app = spawn_app().await;
        let response = app
            .client
            .post(app.url("/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "malformed_request");
        let (status, body) = app
            .post("/v1/tenants", ADMIN_TOKEN, json!({"name": ""}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("name"))
        );
        let (status, body) = app
            .post("/v1/tenants", ADMIN_TOKEN, json!({"name": 7}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("name")),
            "{body}"
        );
        let (status, body) = app.get("/v1/nowhere", ADMIN_TOKEN).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"));
    }
}

backend_test! {
    async fn keys_have_roles_and_revocation_is_immediate() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (status, emit) = app
            .post(
                "/v1/keys",
                &tenant.key,
                json!({"name": "integration", "role": "emit"}),
            )
            .await;
        assert_eq!(status, 201, "{emit}");
        let emit_key = emit["api_key"].as_str().unwrap().to_string();
        let (_, read) = app
            .post(
                "/v1/keys",
                &tenant.key,
                json!({"name": "auditor", "role": "read"}),
            )
            .await;
        let read_key = read["api_key"].as_str().unwrap().to_string();
        let (status, body) = app
            .post(
                "/v1/keys",
                &tenant.key,
                json!({"name": "x", "role": "owner"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("role"))
        );

        let (status, listed) = app.get("/v1/keys", &tenant.key).await;
        assert_eq!(status, 200);
        let text = listed.to_string();
        assert_eq!(listed["items"].as_array().unwrap().len(), 3);
        assert!(
            !text.contains(&emit_key) && !text.contains("hash"),
            "secrets never listed: {text}"
        );

        let event = json!({"object_type": "app", "action": "created", "phase": "after", "data": {}});
        assert_eq!(app.emit(&emit_key, event.clone()).await.0, 202);
        let (status, body) = app.get("/v1/callbacks", &emit_key).await;
        assert_eq!((status, error_code(&body)), (403, "forbidden"));
        assert_eq!(app.emit(&read_key, event.clone()).await.0, 403);
        assert_eq!(app.get("/v1/callbacks", &read_key).await.0, 403);

        let id = emit["id"].as_str().unwrap();
        let (status, _) = app
            .send(Method::DELETE, &format!("/v1/keys/{id}"), &tenant.key, None)
            .await;
        assert_eq!(status, 204);
        assert_eq!(app.emit(&emit_key, event).await.0, 401, "revoked at once");
        let (status, _) = app
            .send(Method::DELETE, &format!("/v1/keys/{id}"), &tenant.key, None)
            .await;
        assert_eq!(status, 404);
    }
}

backend_test! {
    async fn plugin_upload_versions_lists_and_explains_rejections() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (status, first) = app
            .upload(&tenant.key, "rate-policy", fixtures::plugin("rate-policy"))
            .await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["version"], 1);
        assert_eq!(first["exports"], json!(["decide"]));
        assert_eq!(first["sha256"].as_str().unwrap().len(), 64);
        assert!(first["size"].as_u64().unwrap() > 1000 && first["created_at"].as_u64().is_some());
        let (_, second) = app
            .upload(&tenant.key, "rate-policy", fixtures::plugin("rate-policy"))
            .await;
        assert_eq!(second["version"], 2);
        assert_ne!(first["id"], second["id"]);

        let (status, list) = app.get("/v1/plugins", &tenant.key).await;
        assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 2));
        let id = first["id"].as_str().unwrap();
        let (status, one) = app.get(&format!("/v1/plugins/{id}"), &tenant.key).await;
        assert_eq!((status, &one["name"]), (200, &json!("rate-policy")));

        let core = wat::parse_str("(module)").unwrap();
        let (status, body) = app.upload(&tenant.key, "core", core).await;
        assert_eq!((status, error_code(&body)), (422, "not_a_component"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("wasm32-wasip2")
        );
        let keyvalue = wat::parse_str(r#"(component (import "wasi:keyvalue/store@0.2.0" (instance)))"#)
            .unwrap();
        let (status, body) = app.upload(&tenant.key, "kv", keyvalue).await;
        assert_eq!((status, error_code(&body)), (422, "forbidden_import"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("wasi:keyvalue/store@0.2.0")
        );
        let (status, body) = app
            .upload(&tenant.key, "bad/name", fixtures::plugin("redact"))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("name"))
        );
        let (status, body) = app.get("/v1/plugins/plg_missing", &tenant.key).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"));
    }
}

backend_test! {
    async fn bodies_over_the_limit_are_413() {
        let app =
            crate::helpers::spawn_app_in(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| {
                c.max_body_bytes = 1024;
                c.plugin.max_component_bytes = 100_000;
            })
            .await;
        let tenant = app.tenant("acme").await;
        // Uploads have the component cap for their limit, not the JSON one.
        let (status, body) = app
            .upload(&tenant.key, "small", fixtures::plugin("redact"))
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = app
            .upload(&tenant.key, "big", fixtures::plugin("rate-policy"))
            .await;
        assert_eq!((status, error_code(&body)), (413, "too_large"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("100000"),
            "{body}"
        );
        let event = json!({"object_type": "app", "action": "created", "phase": "after", "data": "x".repeat(2000)});
        assert_eq!(app.emit(&tenant.key, event).await.0, 413);
    }
}

backend_test! {
    async fn deleting_a_plugin_in_use_is_409_unless_forced() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (_, plugin) = app
            .upload(&tenant.key, "rate-policy", fixtures::plugin("rate-policy"))
            .await;
        let plugin_id = plugin["id"].as_str().unwrap();
        let callback = app
            .callback(&tenant.key, json!({"name": "gate", "object_type": "policy", "phase": "before", "plugin": {"id": plugin_id}}))
            .await;
        let path = format!("/v1/plugins/{plugin_id}");
        let (status, body) = app.send(Method::DELETE, &path, &tenant.key, None).await;
        assert_eq!((status, error_code(&body)), (409, "plugin_in_use"));
        assert!(body["error"]["message"].as_str().unwrap().contains("gate"));
        let (status, _) = app
            .send(
                Method::DELETE,
                &format!("{path}?force=true"),
                &tenant.key,
                None,
            )
            .await;
        assert_eq!(status, 204);
        let (_, shown) = app
            .get(&format!("/v1/callbacks/{callback}"), &tenant.key)
            .await;
        assert_eq!(shown["enabled"], false);
        assert!(
            shown["disabled_reason"]
                .as_str()
                .unwrap()
                .contains(plugin_id)
        );
        assert_eq!(app.get(&path, &tenant.key).await.0, 404);
    }
}

backend_test! {
    async fn callback_create_returns_the_full_record() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (status, cb) = app
            .post(
                "/v1/callbacks",
                &tenant.key,
                json!({"name": "notify", "object_type": "app", "phase": "after", "url": "https://example.com/hook",
                       "headers": {"X-Team": "blue"}}),
            )
            .await;
        assert_eq!(status, 201, "{cb}");
        assert!(cb["id"].as_str().unwrap().starts_with("cb_"));
        assert!(cb["secret"].as_str().unwrap().starts_with("whsec_"));
        assert_eq!(cb["actions"], json!(["created", "updated", "deleted"]));
        assert_eq!(cb["enabled"], true);
        assert_eq!(cb["created_by"], "default");
        assert_eq!(cb["updated_by"], "default");
        assert_eq!(cb["headers"], json!({"x-team": "blue"}));
        assert_eq!(cb["expected_status"], Value::Null);
        assert_eq!(cb["last_triggered_at"], Value::Null);
        assert_eq!(cb["last_status"], Value::Null);
        assert!(cb["created_at"].as_u64().unwrap() > 0 && cb["updated_at"].as_u64().is_some());

        let (_, before) = app
            .post("/v1/callbacks", &tenant.key, json!({"name": "check", "object_type": "app", "phase": "before", "url": "http://example.com/x"}))
            .await;
        assert_eq!(
            before["expected_status"], 200,
            "before-callbacks expect 200 by default"
        );
    }
}

backend_test! {
    async fn callback_validation_names_the_field() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let base = json!({"name": "n", "object_type": "app", "phase": "after", "url": "https://example.com/h"});
        let cases = [
            (json!({"url": "ftp://example.com/h"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"phase": "during"}), "phase"),
            (json!({"expected_status": 201}), "expected_status"),
            (json!({"plugin": {"id": "plg_nope"}}), "plugin.id"),
            (json!({"url": null}), "url"),
            (json!({"actions": []}), "actions"),
            (json!({"name": ""}), "name"),
            (json!({"object_type": "a b"}), "object_type"),
            (json!({"timeout_ms": 0}), "timeout_ms"),
            (
                json!({"headers": {"webhook-id": "x"}}),
                "headers.webhook-id",
            ),
            (json!({"retry": {"max_attempts": 0}}), "retry.max_attempts"),
            (
                json!({"retry": {"max_attempts": 3, "schedule_secs": [5, 0]}}),
                "retry.schedule_secs[1]",
            ),
        ];
        for (change, field) in cases {
            let mut body = base.clone();
            for (k, v) in change.as_object().unwrap() {
                if v.is_null() {
                    body.as_object_mut().unwrap().remove(k);
                } else {
                    body[k] = v.clone();
                }
            }
            let (status, answer) = app.post("/v1/callbacks", &tenant.key, body).await;
            assert_eq!(status, 422, "{change} → {answer}");
            assert_eq!(answer["error"]["field"], field, "{change} → {answer}");
        }
        let before_retry = json!({"name": "n", "object_type": "app", "phase": "before", "url": "https://e.com", "retry": {"max_attempts": 2}});
        let (status, answer) = app.post("/v1/callbacks", &tenant.key, before_retry).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some("retry"))
        );
    }
}

backend_test! {
    async fn callback_names_are_unique_within_a_tenant() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let body = json!({"name": "dup", "object_type": "app", "phase": "after", "url": "https://example.com/h"});
        app.callback(&tenant.key, body.clone()).await;
        let (status, answer) = app.post("/v1/callbacks", &tenant.key, body.clone()).await;
        assert_eq!((status, error_code(&answer)), (409, "name_taken"));
        let other = app.tenant("other").await;
        app.callback(&other.key, body).await;
    }
}

backend_test! {
    async fn callbacks_can_be_read_replaced_patched_and_deleted() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let id = app
            .callback(&tenant.key, json!({"name": "a", "object_type": "app", "phase": "after", "url": "https://example.com/a"}))
            .await;
        let path = format!("/v1/callbacks/{id}");
        let (status, shown) = app.get(&path, &tenant.key).await;
        assert_eq!((status, &shown["name"]), (200, &json!("a")));
        let secret = shown["secret"].clone();

        let (status, replaced) = app
            .send(Method::PUT, &path, &tenant.key, Some(json!({"name": "b", "object_type": "api", "phase": "after", "url": "https://example.com/b", "actions": ["deleted"]})))
            .await;
        assert_eq!(status, 200, "{replaced}");
        assert_eq!(
            (&replaced["name"], &replaced["actions"]),
            (&json!("b"), &json!(["deleted"]))
        );
        assert_eq!(replaced["secret"], secret, "the secret survives edits");
        assert_eq!(replaced["created_at"], shown["created_at"]);

        let (status, patched) = app
            .send(
                Method::PATCH,
                &path,
                &tenant.key,
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!((status, &patched["enabled"]), (200, &json!(false)));
        assert_eq!(
            patched["name"], "b",
            "a patch keeps what it does not mention"
        );
        let (status, bad) = app
            .send(
                Method::PATCH,
                &path,
                &tenant.key,
                Some(json!({"url": "gopher://x"})),
            )
            .await;
        assert_eq!((status, bad["error"]["field"].as_str()), (422, Some("url")));

        let (status, _) = app.send(Method::DELETE, &path, &tenant.key, None).await;
        assert_eq!(status, 204);
        assert_eq!(app.get(&path, &tenant.key).await.0, 404);
        assert_eq!(
            app.send(Method::DELETE, &path, &tenant.key, None).await.0,
            404
        );
    }
}

backend_test! {
    async fn callback_list_filters_searches_and_pages() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        for i in 0..5 {
            let phase = if i % 2 == 0 { "after" } else { "before" };
            app.callback(
                &tenant.key,
                json!({"name": format!("Hook-{i}"), "object_type": if i < 3 { "app" } else { "api" }, "phase": phase,
                       "url": "https://example.com/h", "enabled": i != 4}),
            )
            .await;
        }
        let names = |page: &Value| -> Vec<String> {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let (_, all) = app.get("/v1/callbacks", &tenant.key).await;
        assert_eq!(
            names(&all),
            ["Hook-0", "Hook-1", "Hook-2", "Hook-3", "Hook-4"]
        );
        let (_, apps) = app
            .get("/v1/callbacks?object_type=app&phase=after", &tenant.key)
            .await;
        assert_eq!(names(&apps), ["Hook-0", "Hook-2"]);
        let (_, disabled) = app.get("/v1/callbacks?enabled=false", &tenant.key).await;
        assert_eq!(names(&disabled), ["Hook-4"]);
        let (_, search) = app.get("/v1/callbacks?q=hook-3", &tenant.key).await;
        assert_eq!(names(&search), ["Hook-3"]);

        let (_, first) = app.get("/v1/callbacks?limit=2", &tenant.key).await;
        assert_eq!(names(&first), ["Hook-0", "Hook-1"]);
        let cursor = first["next_cursor"].as_str().unwrap();
        let (_, second) = app
            .get(
                &format!("/v1/callbacks?limit=2&cursor={cursor}"),
                &tenant.key,
            )
            .await;
        assert_eq!(names(&second), ["Hook-2", "Hook-3"]);
        let cursor = second["next_cursor"].as_str().unwrap();
        let (_, last) = app
            .get(
                &format!("/v1/callbacks?limit=2&cursor={cursor}"),
                &tenant.key,
            )
            .await;
        assert_eq!(names(&last), ["Hook-4"]);
        assert_eq!(last["next_cursor"], Value::Null);

        let (status, body) = app.get("/v1/callbacks?phase=sideways", &tenant.key).await;
        assert_eq!((status, error_code(&body)), (422, "invalid"));
    }
}

backend_test! {
    async fn health_and_metrics_are_served() {
        let app = spawn_app().await;
        let health: Value = app
            .client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");
        app.tenant("acme").await;
        assert!(app.metric("hookgate_http_requests_total").await >= 1.0);
    }
}

/// Sends raw bytes to the server and reads the whole answer: for requests
/// that no HTTP client will send, such as a 100 KiB URL.
async fn raw(addr: &str, request: Vec<u8>) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole answer");
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_ascii_lowercase(), body)
}

backend_test! {
    async fn every_error_answer_is_the_documented_json_whichever_layer_refused() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;

        let response = app
            .client
            .delete(app.url("/v1/events"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "method_not_allowed");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("DELETE"),
            "{body}"
        );

        let (status, body) = app.get("/v1/callbacks/%ff", &tenant.key).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "malformed_request");

        let addr = app.base.trim_start_matches("http://").to_string();
        let long_url = format!(
            "GET /v1/callbacks?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
            "a".repeat(100 * 1024)
        );
        let (status, head, body) = raw(&addr, long_url.into_bytes()).await;
        assert_eq!(status, 414, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(error_code(&body), "uri_too_long");

        let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
        for n in 0..10_000 {
            many.push_str(&format!("x-h-{n}: v\r\n"));
        }
        many.push_str("\r\n");
        let (status, head, body) = raw(&addr, many.into_bytes()).await;
        assert_eq!(status, 431, "{head}");
        assert_eq!(error_code(&body), "headers_too_large");

        let (status, head, body) = raw(&addr, b"NOT HTTP AT ALL\r\n\r\n".to_vec()).await;
        assert_eq!(status, 400, "{head}");
        assert_eq!(error_code(&body), "malformed_request");

        assert_eq!(app.get("/healthz", "").await.0, 200, "still serving");
    }
}

backend_test! {
    async fn a_type_error_in_valid_json_is_422_naming_the_field() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (status, body) = app
            .emit(
                &tenant.key,
                json!({"object_type": "app", "action": "created", "phase": 5}),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], "phase");
        let (status, body) = app
            .emit(
                &tenant.key,
                json!({"object_type": ["app"], "action": "created", "phase": "after"}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (422, &json!("object_type"))
        );
    }
}

backend_test! {
    async fn json_nested_past_the_limit_is_422_naming_the_limit() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let nested = |depth: usize| -> Value {
            let mut value = json!("leaf");
            for _ in 0..depth {
                value = json!([value]);
            }
            value
        };
        // The data of an event 126 deep used to be accepted, then unreadable.
        for depth in [126, 64] {
            let (status, body) = app
                .emit(
                    &tenant.key,
                    json!({"object_type": "app", "action": "created", "phase": "after", "data": nested(depth)}),
                )
                .await;
            assert_eq!(status, 422, "depth {depth}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("64 levels"),
                "{body}"
            );
        }
        let (status, body) = app
            .emit(
                &tenant.key,
                json!({"id": "deep", "object_type": "app", "action": "created", "phase": "after", "data": nested(63)}),
            )
            .await;
        assert_eq!(status, 202, "the deepest accepted: {body}");
        let (status, event) = app.get("/v1/events/deep", &tenant.key).await;
        assert_eq!(status, 200, "what is accepted reads back: {event}");
        assert_eq!(event["event"]["data"], nested(63));
        let again = app
            .emit(
                &tenant.key,
                json!({"id": "deep", "object_type": "app", "action": "created", "phase": "after", "data": nested(63)}),
            )
            .await;
        assert_eq!(again, (202, body), "a repeat reads the original");
    }
}

backend_test! {
    async fn an_upload_answers_compiling_and_becomes_ready() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let (status, uploaded) = app
            .upload(&tenant.key, "rate-policy", fixtures::plugin("rate-policy"))
            .await;
        assert_eq!(status, 201, "{uploaded}");
        assert_eq!(uploaded["state"], "compiling", "{uploaded}");
        assert_eq!(uploaded["exports"], json!(["decide"]));
        let id = uploaded["id"].as_str().unwrap();
        let ready = app.settled_plugin(&tenant.key, id).await;
        assert_eq!(ready["state"], "ready", "{ready}");
        assert!(ready.get("error").is_none(), "{ready}");
        let (_, list) = app.get("/v1/plugins", &tenant.key).await;
        assert_eq!(list["items"][0]["state"], "ready");
    }
}

backend_test! {
    async fn a_plugin_that_validates_but_does_not_link_ends_failed_and_denies_saying_why() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        // The three hooks are there, but take no arguments: only linking
        // against the contract can tell.
        let wrong = wat::parse_str(
            r#"(component
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (export "transform" (func $f))
                (export "decide" (func $f))
                (export "judge" (func $f)))"#,
        )
        .unwrap();
        let (status, uploaded) = app.upload(&tenant.key, "wrong", wrong).await;
        assert_eq!(status, 201, "{uploaded}");
        assert_eq!(uploaded["state"], "compiling");
        let id = uploaded["id"].as_str().unwrap();
        let failed = app.settled_plugin(&tenant.key, id).await;
        assert_eq!(failed["state"], "failed", "{failed}");
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains("do not match"), "{error}");

        app.callback(&tenant.key, json!({"name": "gate", "object_type": "app",
            "phase": "before", "plugin": {"id": id}}))
            .await;
        let (_, answer) = app
            .emit(&tenant.key, json!({"object_type": "app", "action": "created",
                "phase": "before", "data": {}}))
            .await;
        assert_eq!(answer["allowed"], false, "{answer}");
        let reason = answer["decisions"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("failed to compile") && reason.contains("do not match"), "{reason}");
    }
}

#[tokio::test]
async fn a_plugin_whose_compilation_needs_more_memory_than_allowed_ends_failed_saying_so() {
    let app = spawn_app_in(
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        |config| {
            // A Rust example peaks at about 100 MiB compiling.
            config.plugin.compile_memory_mib = 48;
        },
    )
    .await;
    let tenant = app.tenant("acme").await;
    let (status, uploaded) = app
        .upload(&tenant.key, "rate-policy", fixtures::plugin("rate-policy"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let id = uploaded["id"].as_str().unwrap();
    let failed = app.settled_plugin(&tenant.key, id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("more than 48 MiB") && error.contains("plugin.compile_memory_mib"),
        "{error}"
    );
    let refused = app.metric("hookgate_plugin_compile_refusals_total").await;
    assert!(refused >= 1.0, "{refused}");

    app.callback(
        &tenant.key,
        json!({"name": "gate", "object_type": "app",
        "phase": "before", "plugin": {"id": id}}),
    )
    .await;
    let (_, answer) = app
        .emit(
            &tenant.key,
            json!({"object_type": "app", "action": "created",
            "phase": "before", "data": {}}),
        )
        .await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let reason = answer["decisions"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("plugin.compile_memory_mib"), "{reason}");
}

#[tokio::test]
async fn a_plugin_this_node_cannot_compile_stays_compiling_and_its_deliveries_wait_for_it() {
    let data_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(data_dir.clone(), |config| {
        config.compiler = Compiler::Worker("/nonexistent/hookgate".into());
    })
    .await;
    let tenant = app.tenant("acme").await;
    let (status, uploaded) = app
        .upload(&tenant.key, "redact", fixtures::plugin("redact"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let id = uploaded["id"].as_str().unwrap();
    let sink = receiver(200).await;
    app.callback(
        &tenant.key,
        json!({"name": "hook", "object_type": "app",
        "phase": "after", "url": sink.url(), "plugin": {"id": id}}),
    )
    .await;
    let (status, _) = app
        .emit(
            &tenant.key,
            json!({"object_type": "app", "action": "created",
            "phase": "after", "data": {"name": "x", "password": "hunter2"}}),
        )
        .await;
    assert_eq!(status, 202);
    // The node's fault, not the component's: the delivery is retried.
    let delivery = app
        .first_delivery(&tenant.key, |delivery| delivery["attempts"] == 1)
        .await;
    assert_eq!(delivery["status"], "pending", "{delivery}");
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot start the compile worker"), "{error}");
    let (_, plugin) = app.get(&format!("/v1/plugins/{id}"), &tenant.key).await;
    assert_eq!(
        plugin["state"], "compiling",
        "not failed for good: {plugin}"
    );

    // Restarted able to compile, the node finishes it and the retry goes.
    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir, |_| {}).await;
    assert_eq!(app.settled_plugin(&tenant.key, id).await["state"], "ready");
    let got = sink.wait_for(1, 20).await;
    assert_eq!(got[0].json()["data"], json!({"name": "x"}), "redacted");
}
