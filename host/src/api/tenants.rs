//! `/v1/tenants`: the administrator creates and lists tenants.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use super::auth::Admin;
use super::error::ApiResult;
use super::extract::Json;
use super::state::AppState;
use crate::domain::tenants::NewTenant;
use crate::model::Tenant;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list))
}

/// A new tenant with its first key, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedTenant {
    /// `ten_…`
    id: String,
    /// Display name.
    name: String,
    /// Milliseconds since the Unix epoch.
    created_at: u64,
    /// A `manage` key for the tenant; only its hash is stored.
    api_key: String,
}

/// Creates a tenant and its first API key.
#[utoipa::path(post, operation_id = "create_tenant", path = "/v1/tenants", tag = "tenants", security(("admin_token" = [])),
    request_body = NewTenant,
    responses((status = 201, description = "Created; the key is shown only now.", body = CreatedTenant)))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    Json(new): Json<NewTenant>,
) -> ApiResult<(StatusCode, axum::Json<CreatedTenant>)> {
    let (tenant, api_key) = state.tenants.create_tenant(new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedTenant {
            id: tenant.id,
            name: tenant.name,
            created_at: tenant.created_at,
            api_key,
        }),
    ))
}

/// Lists every tenant.
#[utoipa::path(get, operation_id = "list_tenants", path = "/v1/tenants", tag = "tenants", security(("admin_token" = [])),
    responses((status = 200, description = "Every tenant, oldest first.", body = Items<Tenant>)))]
async fn list(_: Admin, State(state): State<AppState>) -> ApiResult<axum::Json<Items<Tenant>>> {
    let items = state.tenants.list_tenants().await?;
    Ok(axum::Json(Items { items }))
}
