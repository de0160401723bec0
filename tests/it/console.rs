//! The console's server side: sign-in redirects, pages rendered for the
//! cookie's key, tenant isolation and roles, and embedded assets. The
//! browser tests in `tests/console` drive the pages themselves.

use reqwest::redirect::Policy;
use serde_json::json;

use crate::backends::backend_test;
use crate::helpers::spawn_app;

backend_test! {
    async fn console_pages_need_a_valid_key_and_respect_tenants_and_roles() {
        let app = spawn_app().await;
        let acme = app.tenant("acme").await;
        let other = app.tenant("other").await;
        let id = app
            .callback(
                &acme.key,
                json!({"name": "audit", "object_type": "app", "phase": "after", "url": "http://127.0.0.1:9/x"}),
            )
            .await;
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let page = |path: &str, key: Option<&str>| {
            let mut request = client.get(app.url(path));
            if let Some(key) = key {
                request = request.header("cookie", format!("theme=dark; hookgate_key={key}"));
            }
            request.send()
        };

        let response = page("/console/callbacks", None).await.unwrap();
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/console/sign-in");
        let response = page("/console/callbacks", Some("hg_forged")).await.unwrap();
        assert_eq!(response.headers()["location"], "/console/sign-in?expired=1");

        let response = page("/console/callbacks", Some(&acme.key)).await.unwrap();
        assert_eq!(response.status(), 200);
        let html = response.text().await.unwrap();
        assert!(
            html.contains("audit") && html.contains(&id),
            "the tenant's callback is listed"
        );
        let html = page("/console/callbacks", Some(&other.key))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !html.contains("audit"),
            "another tenant's callbacks are not"
        );
        let response = page(
            &format!("/console/callbacks/{id}/history"),
            Some(&other.key),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 404);

        let (_, reader) = app
            .post(
                "/v1/keys",
                &acme.key,
                json!({"name": "auditor", "role": "read"}),
            )
            .await;
        let reader = reader["api_key"].as_str().unwrap();
        let response = page("/console/plugins", Some(reader)).await.unwrap();
        assert_eq!(response.status(), 403);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("cannot manage plugins")
        );
        let response = page(&format!("/console/callbacks/{id}/history"), Some(reader))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "a read key may read history");

        for (asset, kind) in [
            ("console.js", "text/javascript"),
            ("console.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let response = page(&format!("/console/assets/{asset}"), None)
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], kind);
        }
        let response = page("/console/assets/nope.js", None).await.unwrap();
        assert_eq!(response.status(), 404);
    }
}

backend_test! {
    async fn console_pages_hold_no_secrets_are_not_stored_and_never_dead_end() {
        let app = spawn_app().await;
        let acme = app.tenant("acme").await;
        let id = app
            .callback(
                &acme.key,
                json!({"name": "audit", "object_type": "app", "phase": "after", "url": "http://127.0.0.1:9/x"}),
            )
            .await;
        let (_, shown) = app.get(&format!("/v1/callbacks/{id}"), &acme.key).await;
        let secret = shown["secret"].as_str().unwrap().to_string();
        // The API's answers, which carry secrets, are not kept by caches either.
        let answer = app
            .client
            .get(app.url(&format!("/v1/callbacks/{id}")))
            .bearer_auth(&acme.key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["cache-control"], "no-store");
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let page = |path: &str, key: &str| {
            client
                .get(app.url(path))
                .header("cookie", format!("hookgate_key={key}"))
                .send()
        };
        let key = |role: &'static str| {
            let app = &app;
            let acme = &acme;
            async move {
                let (_, made) = app
                    .post("/v1/keys", &acme.key, json!({"name": role, "role": role}))
                    .await;
                made["api_key"].as_str().unwrap().to_string()
            }
        };
        let (reader, emitter) = (key("read").await, key("emit").await);

        // Every page a manager opens: no secret in it, and not stored.
        for path in [
            "/console/overview".to_string(),
            "/console/keys".into(),
            "/console/callbacks".to_string(),
            format!("/console/callbacks/{id}/history"),
            "/console/plugins".into(),
            "/console/try".into(),
            "/console/subscriptions".into(),
        ] {
            let response = page(&path, &acme.key).await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
            let html = response.text().await.unwrap();
            assert!(
                !html.contains(&secret) && !html.contains("whsec_"),
                "{path} holds a signing secret"
            );
        }
        let callbacks = page("/console/callbacks", &acme.key)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            callbacks.contains("data-edit-callback"),
            "the edit button is there, without the secret"
        );

        // Each role starts where it may go, and sees only what it may open.
        for (who, home) in [
            (&acme.key, "/console/overview"),
            (&reader, "/console/overview"),
            (&emitter, "/console/try"),
        ] {
            let response = page("/console", who).await.unwrap();
            assert_eq!(response.headers()["location"], home);
        }
        let read = page("/console/callbacks", &reader).await.unwrap();
        assert_eq!(read.status(), 200, "a read key sees the callbacks");
        let read = read.text().await.unwrap();
        assert!(read.contains("audit") && read.contains("/history"));
        for control in ["data-open-callback", "data-edit-callback", "data-delete-callback"] {
            assert!(!read.contains(control), "a read key gets no {control}");
        }
        assert!(!read.contains("href=\"/console/plugins\""), "nor a link to plugins");

        // A page a role may not open says so, with its navigation and a
        // way to sign out.
        let denied = page("/console/callbacks", &emitter).await.unwrap();
        assert_eq!(denied.status(), 403);
        let denied = denied.text().await.unwrap();
        assert!(denied.contains("cannot see callbacks"), "{denied}");
        assert!(denied.contains("href=\"/console/try\"") && denied.contains("data-sign-out"));
        assert!(!denied.contains("href=\"/console/callbacks\""));

        // A console address that names no page is a page, not the API's JSON.
        let unknown = page("/console/nowhere/at/all", &acme.key).await.unwrap();
        assert_eq!(unknown.status(), 404);
        assert!(
            unknown.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(unknown.text().await.unwrap().contains("No such page"));
    }
}
