//! `/v1/events`: emit events and read what became of them.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;

use super::Json;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::event::NewEvent;
use crate::events::EventView;
use crate::model::Role;
use crate::outbound::CAUSATION_HEADER;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(emit))
        .route("/v1/events/{id}", get(show))
}

async fn emit(
    who: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(new): Json<NewEvent>,
) -> Result<(StatusCode, axum::Json<Value>)> {
    who.require(&[Role::Manage, Role::Emit], "emit events")?;
    let causation = match headers.get(CAUSATION_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Error::invalid(CAUSATION_HEADER, "must be ASCII"))?,
        ),
        None => None,
    };
    let answer = state.events.emit(&who.tenant_id, new, causation).await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    Ok((status, axum::Json(answer.body)))
}

async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<EventView>> {
    who.require(&[Role::Manage, Role::Read], "read history")?;
    Ok(axum::Json(state.events.get(&who.tenant_id, &id).await?))
}
