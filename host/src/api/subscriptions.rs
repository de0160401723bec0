//! `/v1/subscriptions`: subscribe and unsubscribe, as an OpenAPI 3 API's
//! subscribe operation would.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::Json;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::Result;
use crate::model::Role;
use crate::subscriptions::{SubscriptionInput, SubscriptionView};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/subscriptions", get(list).post(subscribe))
        .route("/v1/subscriptions/{id}", get(show).delete(unsubscribe))
}

async fn subscribe(
    who: Principal,
    State(state): State<AppState>,
    Json(input): Json<SubscriptionInput>,
) -> Result<(StatusCode, axum::Json<SubscriptionView>)> {
    who.require(&[Role::Manage, Role::Emit], "subscribe")?;
    let view = state
        .subscriptions
        .subscribe(&who.tenant_id, &who.key_name, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn list(who: Principal, State(state): State<AppState>) -> Result<axum::Json<Value>> {
    who.require(&[Role::Manage, Role::Read], "list subscriptions")?;
    let items = state.subscriptions.list(&who.tenant_id).await?;
    Ok(axum::Json(json!({ "items": items })))
}

async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<SubscriptionView>> {
    who.require(&[Role::Manage, Role::Read], "read subscriptions")?;
    Ok(axum::Json(
        state.subscriptions.get(&who.tenant_id, &id).await?,
    ))
}

async fn unsubscribe(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    who.require(&[Role::Manage, Role::Emit], "unsubscribe")?;
    state.subscriptions.unsubscribe(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
