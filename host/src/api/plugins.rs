//! `/v1/plugins`: upload, list and delete WebAssembly plugins.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Query};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::model::{PluginRecord, Role};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/plugins", post(upload).get(list))
        .route("/v1/plugins/{id}", get(show).delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn upload(
    who: Principal,
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    Body(wasm): Body,
) -> Result<(StatusCode, axum::Json<PluginRecord>)> {
    who.require(&[Role::Manage], "upload plugins")?;
    let name = query
        .name
        .ok_or_else(|| Error::invalid("name", "pass the plugin's name as ?name=NAME"))?;
    let record = state
        .registry
        .upload(&who.tenant_id, &name, wasm.to_vec())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

async fn list(who: Principal, State(state): State<AppState>) -> Result<axum::Json<Value>> {
    who.require(&[Role::Manage], "manage plugins")?;
    let items = state.registry.list(&who.tenant_id).await?;
    Ok(axum::Json(json!({ "items": items })))
}

async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PluginRecord>> {
    who.require(&[Role::Manage], "manage plugins")?;
    Ok(axum::Json(state.registry.find(&who.tenant_id, &id).await?))
}

async fn remove(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode> {
    who.require(&[Role::Manage], "manage plugins")?;
    state.registry.find(&who.tenant_id, &id).await?;
    state
        .callbacks
        .release_plugin(&who.tenant_id, &id, query.force)
        .await?;
    state.registry.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
