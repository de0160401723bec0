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
