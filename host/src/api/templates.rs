//! `/v1/callback-templates`: callbacks with runtime expressions, filled in
//! by subscriptions.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::Json;
use crate::app::AppState;
use crate::auth::Principal;
use crate::callbacks::CallbackInput;
use crate::error::Result;
use crate::model::{Role, Template};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/callback-templates", get(list).post(create))
        .route(
            "/v1/callback-templates/{id}",
            get(show).put(replace).delete(remove),
        )
}

async fn create(
    who: Principal,
    State(state): State<AppState>,
    Json(spec): Json<CallbackInput>,
) -> Result<(StatusCode, axum::Json<Template>)> {
    who.require(&[Role::Manage], "manage templates")?;
    let template = state
        .templates
        .create(&who.tenant_id, &who.key_name, spec)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(template)))
}

async fn list(who: Principal, State(state): State<AppState>) -> Result<axum::Json<Value>> {
    who.require(&[Role::Manage], "manage templates")?;
    let items = state.templates.list(&who.tenant_id).await?;
    Ok(axum::Json(json!({ "items": items })))
}

async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Template>> {
    who.require(&[Role::Manage], "manage templates")?;
    Ok(axum::Json(state.templates.get(&who.tenant_id, &id).await?))
}

async fn replace(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(spec): Json<CallbackInput>,
) -> Result<axum::Json<Template>> {
    who.require(&[Role::Manage], "manage templates")?;
    Ok(axum::Json(
        state
            .templates
            .replace(&who.tenant_id, &id, &who.key_name, spec)
            .await?,
    ))
}

async fn remove(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    who.require(&[Role::Manage], "manage templates")?;
    state.templates.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
