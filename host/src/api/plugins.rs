//! `/v1/plugins`: upload, list and delete WebAssembly plugins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use super::auth::{Caller, Manage};
use super::error::ApiResult;
use super::extract::{Query, Wasm};
use super::state::AppState;
use crate::domain::Error;
use crate::model::PluginRecord;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, list))
        .routes(routes!(show, remove))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// The plugin's name; re-uploading a name makes its next version.
    // Optional in the type only, so that its absence gets its own message.
    #[param(required = true, pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    name: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    /// Delete even while callbacks use it; they are disabled, with the reason.
    #[serde(default)]
    force: bool,
}

/// Uploads a WebAssembly component. It is validated (size, kind, imports,
/// exports, starting memory) and stored at once, then compiled in the
/// background: the answer says `compiling`, and the plugin's record turns
/// `ready`, or `failed` with the error. A validation failure is a 422
/// carrying the runtime's precise message.
#[utoipa::path(post, operation_id = "upload_plugin", path = "/v1/plugins", tag = "plugins", params(UploadQuery),
    request_body(description = "The component's bytes, under any content type.",
        content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses((status = 201, description = "Stored as the name's next version, compiling.", body = PluginRecord)))]
async fn upload(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    Wasm(wasm): Wasm,
) -> ApiResult<(StatusCode, axum::Json<PluginRecord>)> {
    let name = query
        .name
        .ok_or_else(|| Error::invalid("name", "pass the plugin's name as ?name=NAME"))?;
    let record = state
        .plugins
        .upload(&who.tenant_id, &name, wasm.to_vec())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

/// Lists every version of every plugin.
#[utoipa::path(get, operation_id = "list_plugins", path = "/v1/plugins", tag = "plugins",
    responses((status = 200, description = "Plugin versions, oldest first.", body = Items<PluginRecord>)))]
async fn list(
    who: Caller<Manage>,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Items<PluginRecord>>> {
    let items = state.plugins.list(&who.tenant_id).await?;
    Ok(axum::Json(Items { items }))
}

/// One plugin version.
#[utoipa::path(get, operation_id = "get_plugin", path = "/v1/plugins/{id}", tag = "plugins",
    params(("id" = String, Path, description = "The plugin version's id.")),
    responses((status = 200, description = "The plugin version.", body = PluginRecord)))]
async fn show(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PluginRecord>> {
    Ok(axum::Json(state.plugins.find(&who.tenant_id, &id).await?))
}

/// Deletes a plugin version: a 409 while callbacks use it, unless `force`.
#[utoipa::path(delete, operation_id = "delete_plugin", path = "/v1/plugins/{id}", tag = "plugins",
    params(("id" = String, Path, description = "The plugin version's id."), DeleteQuery),
    responses(
        (status = 204, description = "Deleted."),
        (status = 409, description = "Callbacks use it; their names are listed.", body = super::error::ErrorBody),
    ))]
async fn remove(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    state.plugins.find(&who.tenant_id, &id).await?;
    state
        .callbacks
        .release_plugin(&who.tenant_id, &id, query.force)
        .await?;
    state.plugins.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
