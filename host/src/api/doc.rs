//! The management API's OpenAPI 3.1 document, generated from the handlers
//! and types so that it cannot drift, and served at `GET /openapi.json`.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::state::AppState;

/// The document's fixed parts; each route module adds its paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Hookgate",
        description = "A self-hosted callback runtime. A host system emits events; Hookgate \
            answers before-events with allow or deny and delivers after-events as signed \
            webhooks, running the callbacks that tenants registered.",
        license(name = "Apache-2.0 OR MIT"),
    ),
    security(("tenant_key" = [])),
    modifiers(&Auth),
    components(schemas(ErrorBody)),
    tags(
        (name = "operations", description = "Health, metrics and this document."),
        (name = "tenants", description = "Tenants, managed with the admin token."),
        (name = "keys", description = "A tenant's API keys."),
        (name = "plugins", description = "WebAssembly components that export one or more hooks: transform, decide and judge."),
        (name = "callbacks", description = "What runs for which events, and its history."),
        (name = "stats", description = "Delivery figures by hour, for a tenant or one callback."),
        (name = "events", description = "Emitting events and reading what they caused."),
        (name = "deliveries", description = "After-event deliveries and their attempts."),
        (name = "openapi", description = "OpenAPI 3 callbacks: templates, subscriptions, import, and the receivers' document."),
    ),
)]
pub(super) struct ApiDoc;

/// The two bearer credentials: a tenant's API key, and the admin token.
struct Auth;

impl Modify for Auth {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme(
            "tenant_key",
            bearer("A tenant API key, with the manage, emit or read role."),
        );
        components.add_security_scheme(
            "admin_token",
            bearer("The admin token, from HOOKGATE_ADMIN_TOKEN or generated on first start."),
        );
    }
}

/// Completes the document once every route is in it: adds the error
/// answers operations share, so handlers document only what is particular
/// to them.
pub(super) fn finish(api: &mut OpenApi) {
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let public = operation.security.as_ref().is_some_and(|s| {
                s.iter()
                    .all(|r| r == &utoipa::openapi::security::SecurityRequirement::default())
            });
            let has_path_params = operation.parameters.iter().flatten().any(|p| match p {
                utoipa::openapi::RefOr::T(p) => {
                    p.parameter_in == utoipa::openapi::path::ParameterIn::Path
                }
                utoipa::openapi::RefOr::Ref(_) => false,
            });
            let mut add = |status: &str, description: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description).into());
            };
            if !public {
                add("401", "No credentials, or unknown ones.");
                add("403", "The credentials may not do this.");
            }
            if has_path_params {
                add("404", "No such thing in this tenant.");
            }
            if operation.request_body.is_some() {
                add("400", "The body is malformed.");
                add("413", "The body is over the configured limit.");
            }
            if !public {
                add(
                    "422",
                    "A field or parameter has a bad value; `field` names it.",
                );
            }
        }
    }
}

/// The generated document, rendered once.
#[derive(Clone)]
pub(super) struct Published(Arc<String>);

impl Published {
    pub(super) fn new(api: OpenApi) -> Self {
        Published(Arc::new(api.to_json().expect("the document serializes")))
    }
}

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document.
#[utoipa::path(
    get, operation_id = "get_openapi_document",
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The management API's OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
)]
async fn openapi_json(Extension(doc): Extension<Published>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_ref().clone(),
    )
}
