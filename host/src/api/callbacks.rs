//! `/v1/callbacks`: register, edit and inspect callbacks and their history.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;

use super::{Json, Query};
use crate::app::AppState;
use crate::auth::Principal;
use crate::callbacks::{CallbackInput, CallbackView, ListQuery, Page, page_size};
use crate::error::Result;
use crate::model::{Activation, Role};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/callbacks", get(list).post(create))
        .route(
            "/v1/callbacks/{id}",
            get(show).put(replace).patch(patch).delete(remove),
        )
        .route("/v1/callbacks/{id}/activations", get(activations))
}

async fn create(
    who: Principal,
    State(state): State<AppState>,
    Json(input): Json<CallbackInput>,
) -> Result<(StatusCode, axum::Json<CallbackView>)> {
    who.require(&[Role::Manage], "manage callbacks")?;
    let view = state
        .callbacks
        .create(&who.tenant_id, &who.key_name, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn list(
    who: Principal,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Page<CallbackView>>> {
    who.require(&[Role::Manage], "manage callbacks")?;
    Ok(axum::Json(
        state.callbacks.list(&who.tenant_id, query).await?,
    ))
}

async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<CallbackView>> {
    who.require(&[Role::Manage], "manage callbacks")?;
    Ok(axum::Json(state.callbacks.get(&who.tenant_id, &id).await?))
}

async fn replace(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(input): Json<CallbackInput>,
) -> Result<axum::Json<CallbackView>> {
    who.require(&[Role::Manage], "manage callbacks")?;
    Ok(axum::Json(
        state
            .callbacks
            .replace(&who.tenant_id, &id, &who.key_name, input)
            .await?,
    ))
}

async fn patch(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(patch): Json<serde_json::Value>,
) -> Result<axum::Json<CallbackView>> {
    who.require(&[Role::Manage], "manage callbacks")?;
    Ok(axum::Json(
        state
            .callbacks
            .patch(&who.tenant_id, &id, &who.key_name, patch)
            .await?,
    ))
}

async fn remove(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    who.require(&[Role::Manage], "manage callbacks")?;
    state.callbacks.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn activations(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<Page<Activation>>> {
    who.require(&[Role::Manage, Role::Read], "read history")?;
    let page = state
        .callbacks
        .activations(&who.tenant_id, &id, query.cursor, page_size(query.limit))
        .await?;
    Ok(axum::Json(page))
}
