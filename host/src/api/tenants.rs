//! `/v1/tenants`: the administrator creates and lists tenants.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use super::Json;
use crate::app::AppState;
use crate::auth::Admin;
use crate::error::Result;
use crate::tenants::{self, NewTenant};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/tenants", post(create).get(list))
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    Json(new): Json<NewTenant>,
) -> Result<(StatusCode, axum::Json<Value>)> {
    let (tenant, api_key) = tenants::create_tenant(&state.db, new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(
            json!({"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at, "api_key": api_key}),
        ),
    ))
}

async fn list(_: Admin, State(state): State<AppState>) -> Result<axum::Json<Value>> {
    let items = tenants::list_tenants(&state.db).await?;
    Ok(axum::Json(json!({ "items": items })))
}
