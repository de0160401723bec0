//! `/v1/openapi/…`: import an OpenAPI document's callbacks, and the
//! document a tenant's receivers implement.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::Value;

use super::{Body, Query};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::Result;
use crate::model::Role;
use crate::openapi::import::{self, ImportOptions, ImportReport};
use crate::openapi::receivers;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi/import", post(import_document))
        .route("/v1/openapi/webhooks", get(webhooks))
}

async fn import_document(
    who: Principal,
    State(state): State<AppState>,
    Query(options): Query<ImportOptions>,
    Body(document): Body,
) -> Result<(StatusCode, axum::Json<ImportReport>)> {
    who.require(&[Role::Manage], "import templates")?;
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

async fn webhooks(who: Principal, State(state): State<AppState>) -> Result<axum::Json<Value>> {
    who.require(&[Role::Manage, Role::Read], "read the webhooks document")?;
    let callbacks = state.callbacks.all(&who.tenant_id).await?;
    Ok(axum::Json(receivers::document(&who.tenant_id, &callbacks)))
}
