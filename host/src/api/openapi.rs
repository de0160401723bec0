//! `/v1/openapi/…`: import an OpenAPI document's callbacks, and the
//! document a tenant's receivers implement.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Manage, ManageOrRead};
use super::error::ApiResult;
use super::extract::{Body, Query};
use super::state::AppState;
use crate::openapi::import::{self, ImportOptions, ImportReport};
use crate::openapi::receivers;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_document))
        .routes(routes!(webhooks))
}

/// Imports an OpenAPI 3.0 or 3.1 document (JSON or YAML): every POST in
/// an operation's `callbacks` becomes a template named after the callback.
#[utoipa::path(post, operation_id = "import_openapi", path = "/v1/openapi/import", tag = "openapi", params(ImportOptions),
    request_body(content = String, content_type = "application/yaml", description = "The document, in YAML or JSON."),
    responses((status = 200, description = "What was created, and what was skipped and why.", body = ImportReport)))]
async fn import_document(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Query(options): Query<ImportOptions>,
    Body(document): Body,
) -> ApiResult<(StatusCode, axum::Json<ImportReport>)> {
    let report = import::import(
        &state.templates,
        &who.tenant_id,
        &who.key_name,
        &document,
        options,
    )
    .await?;
    Ok((StatusCode::OK, axum::Json(report)))
}

/// The OpenAPI 3.1 document for the tenant's receivers: one `webhooks`
/// entry per event type it has callbacks for, with the payload, the
/// signature headers and the responses Hookgate expects.
#[utoipa::path(get, operation_id = "get_webhooks_document", path = "/v1/openapi/webhooks", tag = "openapi",
    responses((status = 200, description = "An OpenAPI 3.1 document.", body = Object)))]
async fn webhooks(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Value>> {
    let callbacks = state.callbacks.all(&who.tenant_id).await?;
    Ok(axum::Json(receivers::document(&who.tenant_id, &callbacks)))
}
