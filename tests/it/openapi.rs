//! OpenAPI callbacks end to end: importing a document's `callbacks`,
//! subscribing with a request that fills the runtime expressions, delivery
//! to the resolved URL, unsubscribing, and the documents Hookgate serves.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backends::backend_test;
use crate::helpers::{Tenant, TestApp, receiver, spawn_app};

/// The subscribe example from the OpenAPI guide to callbacks: `POST
/// /subscribe` takes a `callbackUrl` in its body, and `myEvent` is POSTed
/// there.
const SUBSCRIBE_EXAMPLE: &str = r#"
openapi: 3.0.0
info:
  version: 0.0.0
  title: test
paths:
  /subscribe:
    post:
      summary: Subscribe to a webhook
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                callbackUrl:   # Callback URL
                  type: string
                  format: uri
                  example: https://myserver.com/send/callback/here
              required:
                - callbackUrl
      responses:
        '201':
          description: Webhook created
      callbacks:   # Callback definition
        myEvent:   # Event name
          '{$request.body#/callbackUrl}':   # The callback URL,
                                            # Refers to the passed URL
            post:
              requestBody:   # Contents of the callback message
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      properties:
                        message:
                          type: string
                          example: Some event happened
                      required:
                        - message
              responses:   # Expected responses to the callback message
                '200':
                  description: Your server returns this code if it accepts the callback
"#;

/// A 3.1 document in JSON with an embedded expression, a callback that is
/// not a POST, and one reached through `$ref`.
fn streams_document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "streams", "version": "1"},
        "paths": {"/streams": {"post": {
            "parameters": [{"name": "callbackUrl", "in": "query", "required": true, "schema": {"type": "string"}}],
            "responses": {"201": {"description": "subscribed"}},
            "callbacks": {
                "onData": {"{$request.query.callbackUrl}/data": {"post": {
                    "requestBody": {"content": {"application/json": {"schema": {"type": ["object", "null"]}}}},
                    "responses": {"202": {"description": "accepted"}, "204": {"description": "ignored"}}
                }}},
                "onPing": {"{$request.query.callbackUrl}/ping": {"get": {
                    "responses": {"200": {"description": "pong"}}
                }}},
                "onClose": {"$ref": "#/components/callbacks/Closed"}
            }
        }}},
        "components": {"callbacks": {"Closed": {"{$request.query.callbackUrl}/closed": {"post": {
            "responses": {"200": {"description": "ok"}}
        }}}}}
    })
}

async fn import(app: &TestApp, key: &str, query: &str, document: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/v1/openapi/import{query}")))
        .bearer_auth(key)
        .header("content-type", "application/yaml")
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, path: &str, key: &str) -> u16 {
    app.send(Method::DELETE, path, key, None).await.0
}

fn after(object_type: &str) -> Value {
    json!({"object_type": object_type, "action": "created", "phase": "after", "data": {"message": "Some event happened"}})
}

backend_test! {
    async fn the_specifications_subscribe_example_works_end_to_end() {
        let app = spawn_app().await;
        let tenant = app.tenant("shop").await;
        let sink = receiver(200).await;

        let (status, report) = import(&app, &tenant.key, "", SUBSCRIBE_EXAMPLE).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["openapi"], "3.0.0");
        assert_eq!(report["skipped"], json!([]));
        let created = &report["created"][0];
        assert_eq!(
            (&created["name"], &created["operation"], &created["url"]),
            (
                &json!("myEvent"),
                &json!("POST /subscribe"),
                &json!("{$request.body#/callbackUrl}")
            )
        );
        let template_id = created["template_id"].as_str().unwrap();
        let (_, template) = app
            .get(
                &format!("/v1/callback-templates/{template_id}"),
                &tenant.key,
            )
            .await;
        assert_eq!(
            (&template["object_type"], &template["phase"]),
            (&json!("myEvent"), &json!("after"))
        );

        // The API received `POST /subscribe {"callbackUrl": …}` and passes it on.
        let (status, sub) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                json!({"template": "myEvent", "request": {"url": "https://api.example/subscribe", "body": {"callbackUrl": sink.url()}}}),
            )
            .await;
        assert_eq!(status, 201, "{sub}");
        assert_eq!(sub["url"], sink.url());
        let (sub_id, callback_id) = (
            sub["id"].as_str().unwrap(),
            sub["callback_id"].as_str().unwrap(),
        );
        let (_, callback) = app
            .get(&format!("/v1/callbacks/{callback_id}"), &tenant.key)
            .await;
        assert_eq!(callback["url"], sink.url());
        assert_eq!(callback["subscription"]["id"], sub_id);

        let (status, answer) = app.emit(&tenant.key, after("myEvent")).await;
        assert_eq!(status, 202, "{answer}");
        let got = &sink.wait_for(1, 10).await[0];
        assert_eq!(got.target, "/hook");
        assert_eq!(got.json()["data"]["message"], "Some event happened");
        assert!(got.header("webhook-signature").unwrap().starts_with("v1,"));

        assert_eq!(
            delete(&app, &format!("/v1/subscriptions/{sub_id}"), &tenant.key).await,
            204
        );
        let (status, _) = app
            .get(&format!("/v1/subscriptions/{sub_id}"), &tenant.key)
            .await;
        assert_eq!(status, 404);
        let (status, _) = app
            .get(&format!("/v1/callbacks/{callback_id}"), &tenant.key)
            .await;
        assert_eq!(status, 404, "unsubscribing removes the callback");
        let (status, answer) = app.emit(&tenant.key, after("myEvent")).await;
        assert_eq!((status, &answer["deliveries"]), (202, &json!([])));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            sink.received().len(),
            1,
            "nothing arrives after unsubscribing"
        );
    }
}

backend_test! {
    async fn a_3_1_import_skips_what_it_cannot_deliver_and_a_before_template_expects_the_2xx_code() {
        let app = spawn_app().await;
        let tenant = app.tenant("streams").await;
        let sink = receiver(202).await;

        let (status, report) = import(
            &app,
            &tenant.key,
            "?phase=before&object_type=stream&actions=opened,closed",
            &streams_document().to_string(),
        )
        .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["openapi"], "3.1.0");
        let mut names: Vec<&str> = report["created"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["onClose", "onData"], "{report}");
        let on_data = report["created"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "onData")
            .unwrap();
        assert_eq!(on_data["expected_status"], 202, "the lowest 2xx");
        let skipped = &report["skipped"][0];
        assert_eq!(skipped["name"], "onPing");
        assert!(
            skipped["reason"].as_str().unwrap().contains("GET"),
            "{skipped}"
        );

        // Importing again skips every name that exists, saying so.
        let (_, again) = import(
            &app,
            &tenant.key,
            "?phase=before",
            &streams_document().to_string(),
        )
        .await;
        assert_eq!(again["created"], json!([]));
        assert!(
            again["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("already exists"),
            "{again}"
        );

        let base = format!("http://{}", sink.addr);
        let (status, sub) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                json!({"template": "onData", "request": {"url": format!("https://api.example/streams?callbackUrl={base}")}}),
            )
            .await;
        assert_eq!(status, 201, "{sub}");
        assert_eq!(sub["url"], format!("{base}/data"));

        let before =
            json!({"object_type": "stream", "action": "opened", "phase": "before", "data": {}});
        let (status, answer) = app.emit(&tenant.key, before.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["allowed"], true, "{answer}");
        assert_eq!(sink.received()[0].target, "/data");
        sink.answer(200);
        let (_, answer) = app.emit(&tenant.key, before).await;
        assert_eq!(
            answer["allowed"], false,
            "200 is not the expected 202: {answer}"
        );
    }
}

backend_test! {
    async fn subscriptions_fill_headers_and_name_what_they_cannot_evaluate() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let (status, template) = app
            .post(
                "/v1/callback-templates",
                &tenant.key,
                json!({"name": "orders", "object_type": "order", "phase": "after",
                       "url": "http://{$request.header.Host}/cb?id={$request.body#/ids/1}",
                       "headers": {"x-subscriber": "{$request.body#/who~1name}", "x-status": "{$statusCode}"}}),
            )
            .await;
        assert_eq!(status, 201, "{template}");
        let host = sink.addr.to_string();

        let subscribe = |request: Value, response: Option<Value>| {
            let mut body = json!({"template": template["id"], "request": request});
            if let Some(response) = response {
                body["response"] = response;
            }
            body
        };
        let request =
            json!({"headers": {"HOST": host}, "body": {"ids": ["a", "b"], "who/name": "carol"}});
        let (status, err) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                subscribe(request.clone(), None),
            )
            .await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["field"], "headers.x-status");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("$statusCode"),
            "{err}"
        );

        let (status, sub) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                subscribe(request.clone(), Some(json!({"status": 201}))),
            )
            .await;
        assert_eq!(status, 201, "{sub}");
        assert_eq!(sub["url"], format!("http://{host}/cb?id=b"));
        app.emit(&tenant.key, after("order")).await;
        let got = &sink.wait_for(1, 10).await[0];
        assert_eq!(got.target, "/cb?id=b");
        assert_eq!(
            (got.header("x-subscriber"), got.header("x-status")),
            (Some("carol"), Some("201"))
        );

        let (status, err) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                subscribe(
                    json!({"headers": {"host": host}, "body": {"ids": ["a"]}}),
                    None,
                ),
            )
            .await;
        assert_eq!(status, 422);
        assert_eq!(err["error"]["field"], "url");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("$request.body#/ids/1"),
            "{err}"
        );

        let (status, err) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                json!({"template": "nope", "request": {}}),
            )
            .await;
        assert_eq!((status, &err["error"]["field"]), (422, &json!("template")));
    }
}

backend_test! {
    async fn templates_are_checked_and_resolved_urls_must_be_http() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let bad = |url: &str| json!({"name": "t", "object_type": "o", "phase": "after", "url": url});

        let (status, err) = app
            .post(
                "/v1/callback-templates",
                &tenant.key,
                bad("http://x/{$request.bogus}"),
            )
            .await;
        assert_eq!((status, &err["error"]["field"]), (422, &json!("url")));
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("position 19"),
            "points at `bogus`: {message}"
        );
        let (status, err) = app
            .post(
                "/v1/callback-templates",
                &tenant.key,
                bad("{$request.body#/u"),
            )
            .await;
        assert_eq!(status, 422, "{err}");
        let (status, err) = app
            .post(
                "/v1/callback-templates",
                &tenant.key,
                json!({"name": "t", "object_type": "o", "phase": "after", "url": "{$request.body#/u}", "expected_status": 200}),
            )
            .await;
        assert_eq!(
            (status, &err["error"]["field"]),
            (422, &json!("expected_status"))
        );

        let (status, template) = app
            .post(
                "/v1/callback-templates",
                &tenant.key,
                bad("{$request.body#/u}"),
            )
            .await;
        assert_eq!(status, 201, "{template}");
        let id = template["id"].as_str().unwrap();
        let (status, _) = app
            .post("/v1/callback-templates", &tenant.key, bad("http://x/"))
            .await;
        assert_eq!(status, 409, "names are unique");
        let (status, err) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                json!({"template": "t", "request": {"body": {"u": "file:///etc/passwd"}}}),
            )
            .await;
        assert_eq!((status, &err["error"]["field"]), (422, &json!("url")));
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("file:///etc/passwd"),
            "{err}"
        );

        let mut replaced = bad("https://example.com/{$request.path.id}");
        replaced["name"] = json!("renamed");
        let (status, put) = app
            .send(
                Method::PUT,
                &format!("/v1/callback-templates/{id}"),
                &tenant.key,
                Some(replaced),
            )
            .await;
        assert_eq!((status, &put["name"]), (200, &json!("renamed")), "{put}");
        let (_, list) = app.get("/v1/callback-templates", &tenant.key).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);

        let other = app.tenant("other").await;
        let (status, _) = app
            .get(&format!("/v1/callback-templates/{id}"), &other.key)
            .await;
        assert_eq!(status, 404, "another tenant's template is not found");
        assert_eq!(
            delete(&app, &format!("/v1/callback-templates/{id}"), &other.key).await,
            404
        );
        assert_eq!(
            delete(&app, &format!("/v1/callback-templates/{id}"), &tenant.key).await,
            204
        );
        let (status, _) = app
            .get(&format!("/v1/callback-templates/{id}"), &tenant.key)
            .await;
        assert_eq!(status, 404);
    }
}

backend_test! {
    async fn a_receiver_answering_410_is_unsubscribed_and_other_tenants_cannot_touch_it() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(410).await;
        import(&app, &tenant.key, "", SUBSCRIBE_EXAMPLE).await;
        let (_, sub) = app
            .post(
                "/v1/subscriptions",
                &tenant.key,
                json!({"template": "myEvent", "request": {"body": {"callbackUrl": sink.url()}}}),
            )
            .await;
        let sub_id = sub["id"].as_str().unwrap();
        let other = app.tenant("other").await;
        assert_eq!(
            delete(&app, &format!("/v1/subscriptions/{sub_id}"), &other.key).await,
            404
        );
        let (_, listed) = app.get("/v1/subscriptions", &other.key).await;
        assert_eq!(listed["items"], json!([]));

        app.emit(&tenant.key, after("myEvent")).await;
        sink.wait_for(1, 10).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, got) = app
                .get(&format!("/v1/subscriptions/{sub_id}"), &tenant.key)
                .await;
            if got["enabled"] == false {
                assert!(
                    got["disabled_reason"].as_str().unwrap().contains("410"),
                    "{got}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not unsubscribed: {got}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let (_, listed) = app.get("/v1/subscriptions", &tenant.key).await;
        assert_eq!(listed["items"][0]["id"], sub_id);
    }
}

backend_test! {
    async fn bad_documents_are_refused_with_the_reason() {
        let app = spawn_app().await;
        let Tenant { key, .. } = app.tenant("acme").await;
        let (status, err) = import(&app, &key, "", "openapi: [3.0\n  paths: {").await;
        assert_eq!(status, 400, "{err}");
        let (status, err) = import(&app, &key, "", r#"{"swagger": "2.0"}"#).await;
        assert_eq!(status, 422);
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Swagger 2.0"),
            "{err}"
        );
        let (status, err) = import(&app, &key, "", "openapi: 4.0.0\n").await;
        assert_eq!((status, &err["error"]["field"]), (422, &json!("openapi")));
        let (status, err) = import(
            &app,
            &key,
            "",
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    post:\n      responses: 12\n",
        )
        .await;
        assert_eq!(status, 422, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains("paths"),
            "{err}"
        );
        let (status, _) = import(&app, &key, "?phase=sideways", SUBSCRIBE_EXAMPLE).await;
        assert_eq!(status, 422);
    }
}

backend_test! {
    async fn the_webhooks_document_describes_what_receivers_get() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        for (name, phase, actions) in [
            ("audit", "after", json!(["created", "updated"])),
            ("guard", "before", json!(["deleted"])),
        ] {
            app.callback(
                &tenant.key,
                json!({"name": name, "object_type": "order", "phase": phase, "actions": actions, "url": sink.url()}),
            )
            .await;
        }
        let (status, doc) = app.get("/v1/openapi/webhooks", &tenant.key).await;
        assert_eq!(status, 200);
        assert_eq!(doc["openapi"], "3.1.0");
        let kinds: Vec<&String> = doc["webhooks"].as_object().unwrap().keys().collect();
        assert_eq!(kinds, ["order.created", "order.deleted", "order.updated"]);
        let created = &doc["webhooks"]["order.created"]["post"];
        let headers: Vec<&str> = created["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(headers.contains(&"webhook-signature"), "{headers:?}");
        assert!(created["responses"]["410"].is_object());
        let deleted = &doc["webhooks"]["order.deleted"]["post"];
        assert!(
            deleted["responses"]["200"]["description"]
                .as_str()
                .unwrap()
                .contains("allows")
        );
        crate::openapi_schema::assert_valid_3_1(&doc);

        let other = app.tenant("other").await;
        let (_, empty) = app.get("/v1/openapi/webhooks", &other.key).await;
        assert_eq!(empty["webhooks"], json!({}));
    }
}

/// Every operation of the management API, as the README lists them.
const OPERATIONS: [(&str, &str); 37] = [
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/tenants"),
    ("post", "/v1/tenants"),
    ("get", "/v1/keys"),
    ("post", "/v1/keys"),
    ("delete", "/v1/keys/{id}"),
    ("get", "/v1/plugins"),
    ("post", "/v1/plugins"),
    ("get", "/v1/plugins/{id}"),
    ("delete", "/v1/plugins/{id}"),
    ("get", "/v1/callbacks"),
    ("post", "/v1/callbacks"),
    ("get", "/v1/callbacks/{id}"),
    ("put", "/v1/callbacks/{id}"),
    ("patch", "/v1/callbacks/{id}"),
    ("delete", "/v1/callbacks/{id}"),
    ("get", "/v1/callbacks/{id}/activations"),
    ("get", "/v1/callbacks/{id}/stats"),
    ("get", "/v1/stats"),
    ("post", "/v1/callbacks/{id}/rotate-secret"),
    ("post", "/v1/callbacks/{id}/replay"),
    ("post", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("get", "/v1/deliveries"),
    ("get", "/v1/deliveries/{id}"),
    ("post", "/v1/deliveries/{id}/retry"),
    ("get", "/v1/callback-templates"),
    ("post", "/v1/callback-templates"),
    ("get", "/v1/callback-templates/{id}"),
    ("put", "/v1/callback-templates/{id}"),
    ("delete", "/v1/callback-templates/{id}"),
    ("get", "/v1/subscriptions"),
    ("post", "/v1/subscriptions"),
    ("get", "/v1/subscriptions/{id}"),
    ("delete", "/v1/subscriptions/{id}"),
];

backend_test! {
    async fn the_management_api_document_has_every_route_and_is_valid_openapi_3_1() {
        let app = spawn_app().await;
        let response = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "served without credentials");
        let doc: Value = response.json().await.unwrap();
        crate::openapi_schema::assert_valid_3_1(&doc);

        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut expected: Vec<(String, String)> = OPERATIONS
            .iter()
            .chain(&[
                ("post", "/v1/openapi/import"),
                ("get", "/v1/openapi/webhooks"),
            ])
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        expected.sort();
        assert_eq!(documented, expected);

        // Every documented operation is served: anything but the router's own
        // "no such endpoint" or "method not allowed".
        for (method, path) in &documented {
            let url = app.url(&path.replace("{id}", "nope"));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(method.clone(), url)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is not routed");
            assert!(
                !(status == 404 && body["error"]["message"] == "no such endpoint"),
                "{method} {path} is not routed"
            );
        }

        let schemas = &doc["components"]["schemas"];
        for name in [
            "CallbackInput",
            "CallbackView",
            "ErrorBody",
            "EventAnswer",
            "Template",
            "SubscriptionInput",
        ] {
            assert!(schemas[name].is_object(), "{name} is described");
        }
        let create = &doc["paths"]["/v1/callbacks"]["post"];
        assert!(
            create["responses"]["422"].is_object(),
            "validation errors are documented"
        );
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
    }
}

backend_test! {
    async fn a_ref_cycle_in_an_import_is_422_naming_it_and_the_server_keeps_serving() {
        let app = spawn_app().await;
        let Tenant { key, .. } = app.tenant("acme").await;
        let document = |components: Value| {
            json!({"openapi": "3.1.0", "info": {"title": "x", "version": "1"},
                "paths": {"/s": {"post": {"responses": {"200": {"description": "ok"}},
                    "callbacks": {"cb": {"$ref": "#/components/callbacks/loop"}}}}},
                "components": {"callbacks": components}})
            .to_string()
        };
        let itself = document(json!({"loop": {"$ref": "#/components/callbacks/loop"}}));
        let two_step = document(json!({
            "loop": {"$ref": "#/components/callbacks/back"},
            "back": {"$ref": "#/components/callbacks/loop"},
        }));
        for doc in [itself, two_step] {
            let (status, err) = import(&app, &key, "", &doc).await;
            assert_eq!(status, 422, "{err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("cycle") && message.contains("#/components/callbacks/loop"),
                "{message}"
            );
        }
        assert_eq!(app.get("/healthz", "").await.0, 200);
        let (status, report) = import(&app, &key, "", &streams_document().to_string()).await;
        assert_eq!(status, 200, "a one-hop $ref still resolves: {report}");
    }
}

backend_test! {
    async fn deeply_nested_yaml_is_refused_at_once_without_stalling_other_requests() {
        let app = spawn_app().await;
        let Tenant { key, .. } = app.tenant("acme").await;
        // Once, these took 5 s and over 30 s to refuse, on the request threads.
        let started = std::time::Instant::now();
        let nested = |depth: usize| format!("a: {}", "[".repeat(depth));
        let healthz = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let at = std::time::Instant::now();
            assert_eq!(app.get("/healthz", "").await.0, 200);
            at.elapsed()
        };
        let (shallow, deep) = (nested(40_000), nested(100_000));
        let (a, b, c, healthz) = tokio::join!(
            import(&app, &key, "", &shallow),
            import(&app, &key, "", &deep),
            import(&app, &key, "", &deep),
            healthz,
        );
        for (status, err) in [a, b, c] {
            assert_eq!(status, 422, "{err}");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("64 levels"),
                "{err}"
            );
        }
        // Generous bounds that only a quadratic parser would miss.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(healthz < Duration::from_secs(1), "healthz took {healthz:?}");
    }
}

backend_test! {
    async fn a_subscription_takes_a_request_path_unless_the_template_uses_url() {
        let app = spawn_app().await;
        let Tenant { key, .. } = app.tenant("acme").await;
        let sink = receiver(200).await;
        let template = |name: &str, url: &str| json!({"name": name, "object_type": "stream", "phase": "after", "url": url});
        let by_body = format!("http://{}/{{$request.query.who}}", sink.addr);
        assert_eq!(
            app.post(
                "/v1/callback-templates",
                &key,
                template("by-query", &by_body)
            )
            .await
            .0,
            201
        );
        assert_eq!(
            app.post("/v1/callback-templates", &key, template("by-url", "{$url}"))
                .await
                .0,
            201
        );
        let subscribe = |template: &str| json!({"template": template, "request": {"url": "/subscribe?who=alice", "body": {}}});
        let (status, sub) = app
            .post("/v1/subscriptions", &key, subscribe("by-query"))
            .await;
        assert_eq!(status, 201, "a path with a query string is enough: {sub}");
        assert_eq!(sub["url"], format!("http://{}/alice", sink.addr));

        let (status, err) = app
            .post("/v1/subscriptions", &key, subscribe("by-url"))
            .await;
        assert_eq!(
            (status, &err["error"]["field"]),
            (422, &json!("url")),
            "{err}"
        );
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("$url") && message.contains("/subscribe"),
            "{message}"
        );

        let (status, err) = app
            .post(
                "/v1/subscriptions",
                &key,
                json!({"template": "by-query", "request": {"url": "subscribe"}}),
            )
            .await;
        assert_eq!(
            (status, &err["error"]["field"]),
            (422, &json!("request.url")),
            "{err}"
        );
    }
}

backend_test! {
    async fn every_operation_documents_the_conflicts_it_can_answer() {
        let app = spawn_app().await;
        let doc: Value = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (path, method) in [
            ("/v1/events", "post"),
            ("/v1/deliveries/{id}/retry", "post"),
            ("/v1/callbacks/{id}", "patch"),
            ("/v1/callbacks", "post"),
        ] {
            assert!(
                doc["paths"][path][method]["responses"]["409"].is_object(),
                "{method} {path} can answer 409"
            );
        }
    }
}

backend_test! {
    async fn every_documented_link_leads_from_a_real_answer_to_what_it_names() {
        let app = spawn_app().await;
        let tenant = app.tenant("acme").await;
        let sink = receiver(200).await;
        let key = tenant.key.as_str();

        // A real answer of every operation a link starts from, by operation
        // id and status.
        let mut answers: Vec<(&str, u16, Value)> = Vec::new();
        let (status, plugin) = app
            .upload(key, "defaults", crate::fixtures::plugin("app-defaults"))
            .await;
        answers.push(("upload_plugin", status, plugin));
        for (operation, path, body) in [
            ("create_key", "/v1/keys", json!({"name": "ci", "role": "read"})),
            (
                "create_callback",
                "/v1/callbacks",
                json!({"name": "a", "object_type": "app", "phase": "after", "url": sink.url()}),
            ),
            (
                "create_template",
                "/v1/callback-templates",
                json!({"name": "t", "object_type": "order", "phase": "after",
                       "url": "{$request.body#/callbackUrl}"}),
            ),
            (
                "subscribe",
                "/v1/subscriptions",
                json!({"template": "t", "request": {"body": {"callbackUrl": sink.url()}}}),
            ),
        ] {
            let (status, answer) = app.post(path, key, body).await;
            answers.push((operation, status, answer));
        }
        let (status, verdict) = app
            .emit(key, json!({"object_type": "app", "action": "created", "phase": "before"}))
            .await;
        answers.push(("emit_event", status, verdict));
        let (status, accepted) = app
            .emit(key, json!({"object_type": "app", "action": "created", "phase": "after"}))
            .await;
        answers.push(("emit_event", status, accepted));
        let (status, listed) = app.get("/v1/deliveries", key).await;
        answers.push(("list_deliveries", status, listed));

        let (_, doc) = app.get("/openapi.json", key).await;
        let mut operations = std::collections::HashMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations.insert(operation["operationId"].as_str().unwrap(), (method, path));
            }
        }
        let mut followed = 0;
        for (source, status, body) in &answers {
            let (method, path) = operations[source];
            let response = &doc["paths"][path][method]["responses"][status.to_string()];
            assert!(response.is_object(), "{source} answered {status}, undocumented: {body}");
            let links = response["links"].as_object();
            for (name, link) in links.into_iter().flatten() {
                let expression = link["parameters"]["id"].as_str().unwrap();
                let pointer = expression.strip_prefix("$response.body#").unwrap();
                let id = body.pointer(pointer).and_then(Value::as_str);
                let id = id.unwrap_or_else(|| panic!("{source} {name}: no {pointer} in {body}"));
                let target = link["operationId"].as_str().unwrap();
                let (_, path) = operations[target];
                assert!(path.contains("{id}"), "{target} takes no id");
                // What the id names exists: read where it can be, and a key,
                // which cannot be read, revoked.
                let member = &path[..path.find("{id}").unwrap() + 4];
                let (status, got) = if doc["paths"][member]["get"].is_object() {
                    app.get(&member.replace("{id}", id), key).await
                } else {
                    assert_eq!(target, "revoke_key");
                    app.send(Method::DELETE, &format!("/v1/keys/{id}"), key, None)
                        .await
                };
                let expected = if target == "revoke_key" { 204 } else { 200 };
                assert_eq!(status, expected, "{source} → {target} with {id}: {got}");
                followed += 1;
            }
        }
        // Every link in the table has an answer above to start from.
        let documented = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .flat_map(|operation| operation["responses"].as_object().unwrap().values())
            .filter_map(|response| response["links"].as_object())
            .map(|links| links.len())
            .sum::<usize>();
        assert!(followed > 20, "{followed} links followed");
        assert_eq!(followed, documented, "a documented link was not followed");
    }
}
