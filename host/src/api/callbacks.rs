//! `/v1/callbacks`: register, edit and inspect callbacks and their history.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Json, Query};
use crate::app::AppState;
use crate::auth::Principal;
use crate::callbacks::{CallbackInput, CallbackView, ListQuery, Page, page_size};
use crate::error::{Error, Result};
use crate::model::{Activation, Role};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/callbacks", get(list).post(create))
        .route(
            "/v1/callbacks/{id}",
            get(show).put(replace).patch(patch).delete(remove),
        )
        .route("/v1/callbacks/{id}/activations", get(activations))
        .route("/v1/callbacks/{id}/rotate-secret", post(rotate_secret))
        .route("/v1/callbacks/{id}/replay", post(replay))
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

async fn rotate_secret(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<CallbackView>> {
    who.require(&[Role::Manage], "manage callbacks")?;
    let overlap = Duration::from_secs(state.config.delivery.secret_overlap_hours * 3600);
    Ok(axum::Json(
        state
            .callbacks
            .rotate_secret(&who.tenant_id, &id, &who.key_name, overlap)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    since: Option<String>,
    until: Option<String>,
}

async fn replay(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> Result<axum::Json<serde_json::Value>> {
    who.require(&[Role::Manage], "replay deliveries")?;
    let since = instant("since", query.since.as_deref())?.unwrap_or(0);
    let until = instant("until", query.until.as_deref())?.unwrap_or(u64::MAX);
    if since > until {
        return Err(Error::invalid("since", "must not be after `until`"));
    }
    let replayed = state
        .deliverer
        .replay(&who.tenant_id, &id, since, until)
        .await?;
    Ok(axum::Json(
        serde_json::json!({"replayed": replayed.len(), "deliveries": replayed}),
    ))
}

/// An RFC 3339 time or milliseconds since the epoch.
fn instant(field: &str, value: Option<&str>) -> Result<Option<u64>> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(Some(ms));
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(d.as_millis() as u64))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("`{value}` is neither RFC 3339 nor milliseconds since the epoch"),
            )
        })
}
