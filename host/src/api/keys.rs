//! `/v1/keys`: a tenant's API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use super::auth::{Caller, Manage};
use super::error::ApiResult;
use super::extract::Json;
use super::state::AppState;
use crate::domain::tenants::{KeyView, NewKey};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// A new key, with its secret shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    key: KeyView,
    /// The secret to send as `Authorization: Bearer …`; only its hash is stored.
    api_key: String,
}

/// Creates an API key with a role: `manage` (everything), `emit` (events
/// and subscriptions only) or `read` (history only).
#[utoipa::path(post, operation_id = "create_key", path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, description = "Created; the secret is shown only now.", body = CreatedKey)))]
async fn create(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Json(new): Json<NewKey>,
) -> ApiResult<(StatusCode, axum::Json<CreatedKey>)> {
    let (key, api_key) = state.tenants.create_key(&who.tenant_id, new).await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedKey { key, api_key })))
}

/// Lists the tenant's keys, without their secrets.
#[utoipa::path(get, operation_id = "list_keys", path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "The tenant's keys, oldest first.", body = Items<KeyView>)))]
async fn list(
    who: Caller<Manage>,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Items<KeyView>>> {
    let items = state.tenants.list_keys(&who.tenant_id).await?;
    Ok(axum::Json(Items { items }))
}

/// Revokes a key, effective immediately.
#[utoipa::path(delete, operation_id = "revoke_key", path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 204, description = "Revoked.")))]
async fn revoke(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.tenants.revoke_key(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
