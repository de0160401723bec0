//! `/v1/keys`: a tenant's API keys.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use serde_json::{Value, json};

use super::Json;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::Result;
use crate::model::Role;
use crate::tenants::{self, NewKey};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", post(create).get(list))
        .route("/v1/keys/{id}", delete(revoke))
}

async fn create(
    who: Principal,
    State(state): State<AppState>,
    Json(new): Json<NewKey>,
) -> Result<(StatusCode, axum::Json<Value>)> {
    who.require(&[Role::Manage], "manage keys")?;
    let (key, secret) = tenants::create_key(&state.db, &who.tenant_id, new).await?;
    let mut body = serde_json::to_value(key).expect("keys serialize");
    body["api_key"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(body)))
}

async fn list(who: Principal, State(state): State<AppState>) -> Result<axum::Json<Value>> {
    who.require(&[Role::Manage], "manage keys")?;
    let items = tenants::list_keys(&state.db, &who.tenant_id).await?;
    Ok(axum::Json(json!({ "items": items })))
}

async fn revoke(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    who.require(&[Role::Manage], "manage keys")?;
    tenants::revoke_key(&state.db, &who.tenant_id, &id).await?;
    state.keys.clear();
    Ok(StatusCode::NO_CONTENT)
}
