//! The management API's OpenAPI 3.1 document, generated from the handlers
//! and types so that it cannot drift, and served at `GET /openapi.json`.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::ArrayItems;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::state::AppState;
use crate::domain::templates;

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
        for operation in operations(item) {
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
    template_input(api);
    link(api);
}

/// A template's name is shorter than a callback's (see
/// [`templates::MAX_NAME`]), so its body is documented as `TemplateInput`:
/// `CallbackInput` with that limit, and its URL an example with runtime
/// expressions.
fn template_input(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    let Some(RefOr::T(Schema::Object(callback))) = components.schemas.get("CallbackInput") else {
        panic!("the document describes no CallbackInput");
    };
    let mut template = callback.clone();
    template.description = Some(
        "A template as a tenant writes it: a callback whose URL and header values may hold \
         OpenAPI runtime expressions, filled from a subscription request."
            .into(),
    );
    template.examples = vec![serde_json::json!({
        "name": "order-events", "object_type": "order", "phase": "after",
        "url": "{$request.body#/callbackUrl}",
        "headers": {"x-subscriber": "{$request.header.x-client-id}"}
    })];
    match template.properties.get_mut("name") {
        Some(RefOr::T(Schema::Object(name))) => name.max_length = Some(templates::MAX_NAME),
        _ => panic!("CallbackInput has no name"),
    }
    // A template as answered is those fields and its own, `allOf` them;
    // the closed input schema there would refuse its own fields.
    let mut fields = template.clone();
    fields.additional_properties = None;
    fields.examples = Vec::new();
    fields.description = Some("A template's callback, unrendered.".into());
    for schema in components.schemas.values_mut() {
        reopen(schema, "TemplateFields");
    }
    components
        .schemas
        .insert("TemplateFields".into(), Schema::Object(fields).into());
    components
        .schemas
        .insert("TemplateInput".into(), Schema::Object(template).into());
    for id in ["create_template", "replace_template"] {
        let content = match &mut operation(api, id).request_body {
            Some(RefOr::T(body)) => body.content.get_mut("application/json"),
            _ => None,
        };
        let Some(RefOr::T(content)) = content else {
            panic!("{id} takes no JSON body");
        };
        content.schema = Some(Ref::from_schema_name("TemplateInput").into());
    }
}

/// Where an answer names something that other operations take by id: the
/// operation, its status, a JSON pointer to the id in its body, and the
/// collection whose `{id}` operations take it. Documented as OpenAPI
/// links, so that a client (or a test tool) can follow what it created or
/// listed to everything that can be done with it. A link to a list's first
/// item, or an event's first delivery, leads nowhere when there is none.
const LINKS: [(&str, &str, &str, &str); 10] = [
    ("create_key", "201", "/id", "/v1/keys"),
    ("upload_plugin", "201", "/id", "/v1/plugins"),
    ("create_callback", "201", "/id", "/v1/callbacks"),
    ("create_template", "201", "/id", "/v1/callback-templates"),
    ("subscribe", "201", "/id", "/v1/subscriptions"),
    ("subscribe", "201", "/callback_id", "/v1/callbacks"),
    ("emit_event", "200", "/event_id", "/v1/events"),
    ("emit_event", "202", "/event_id", "/v1/events"),
    ("emit_event", "202", "/deliveries/0/id", "/v1/deliveries"),
    ("list_deliveries", "200", "/items/0/id", "/v1/deliveries"),
];

/// Adds [`LINKS`]: from each answer, one link to every operation on the
/// member it names. A table naming an operation or status the document
/// lacks is a programming error, which every test that starts a server
/// finds.
fn link(api: &mut OpenApi) {
    let mut members: Vec<(String, String)> = Vec::new();
    for (path, item) in api.paths.paths.iter_mut() {
        for operation in operations(item) {
            if let Some(id) = &operation.operation_id {
                members.push((path.clone(), id.clone()));
            }
        }
    }
    for (source, status, pointer, collection) in LINKS {
        let member = format!("{collection}/{{id}}");
        let links: Vec<(String, Link)> = members
            .iter()
            .filter(|(path, _)| path == &member || path.starts_with(&format!("{member}/")))
            .map(|(_, target)| {
                let link = LinkBuilder::new()
                    .operation_id(target)
                    .parameter("id", format!("$response.body#{pointer}"))
                    .build();
                (target.clone(), link)
            })
            .collect();
        assert!(
            !links.is_empty(),
            "no operation takes an id of {collection}"
        );
        let response = operation(api, source).responses.responses.get_mut(status);
        let Some(RefOr::T(response)) = response else {
            panic!("the document has no {status} answer of {source} to link from");
        };
        for (name, link) in links {
            response.links.insert(name, RefOr::T(link));
        }
    }
}

/// Points every `allOf` part that is `CallbackInput`, within `schema`, at
/// `fields` instead: the parts of `allOf` must each accept the whole.
fn reopen(schema: &mut RefOr<Schema>, fields: &str) {
    let RefOr::T(schema) = schema else { return };
    let parts = match schema {
        Schema::AllOf(all) => {
            for part in &mut all.items {
                if matches!(part, RefOr::Ref(r) if r.ref_location.ends_with("/CallbackInput")) {
                    *part = Ref::from_schema_name(fields).into();
                }
            }
            all.items.iter_mut().collect()
        }
        Schema::OneOf(one) => one.items.iter_mut().collect(),
        Schema::AnyOf(any) => any.items.iter_mut().collect(),
        Schema::Object(object) => object.properties.values_mut().collect(),
        Schema::Array(array) => match &mut array.items {
            ArrayItems::RefOrSchema(item) => vec![item.as_mut()],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for part in parts {
        reopen(part, fields);
    }
}

/// The operation with this id; the document lacking it is a programming
/// error.
fn operation<'a>(api: &'a mut OpenApi, id: &str) -> &'a mut Operation {
    api.paths
        .paths
        .values_mut()
        .flat_map(operations)
        .find(|operation| operation.operation_id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("the document has no operation {id}"))
}

/// A path's operations, whichever methods it has.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
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
