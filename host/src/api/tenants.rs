//! `/v1/tenants`: the administrator creates and lists tenants.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Items, Json};
use crate::app::AppState;
use crate::auth::Admin;
use crate::error::Result;
use crate::model::Tenant;
use crate::tenants::{self, NewTenant};

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
) -> Result<(StatusCode, axum::Json<CreatedTenant>)> {
    let (tenant, api_key) = tenants::create_tenant(&state.db, new).await?;
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
async fn list(_: Admin, State(state): State<AppState>) -> Result<axum::Json<Items<Tenant>>> {
    let items = tenants::list_tenants(&state.db).await?;
    Ok(axum::Json(Items { items }))
}
