//! `/v1/events`: emit events and read what became of them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Json;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::event::NewEvent;
use crate::events::EventView;
use crate::model::{EventAnswer, Role};
use crate::outbound::CAUSATION_HEADER;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(emit))
        .routes(routes!(show))
}

/// Emits an event. A before-event runs the matching before-callbacks in
/// name order and answers 200 with the verdict; an after-event is stored
/// with one pending delivery per matching after-callback, durably, before
/// the 202. A repeated `id` returns the original answer.
#[utoipa::path(post, operation_id = "emit_event", path = "/v1/events", tag = "events", request_body = NewEvent,
    params(("hookgate-causation" = Option<String>, Header, description = "Sent back from a callback request, so that loops are stopped.")),
    responses(
        (status = 200, description = "A before-event's verdict.", body = EventAnswer),
        (status = 202, description = "An after-event, stored with its deliveries.", body = EventAnswer),
        (status = 409, description = "`event_loop`: the event would be deeper than `max_event_depth` in a chain of events causing events.", body = super::error::ErrorBody),
        (status = 503, description = "Too many pending deliveries; retry after `Retry-After` seconds.", body = super::error::ErrorBody),
    ))]
async fn emit(
    who: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(new): Json<NewEvent>,
) -> Result<(StatusCode, axum::Json<EventAnswer>)> {
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

/// An event with its decisions or deliveries, and their attempts.
#[utoipa::path(get, operation_id = "get_event", path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "The event's id.")),
    responses((status = 200, description = "The event and what it caused.", body = EventView)))]
async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<EventView>> {
    who.require(&[Role::Manage, Role::Read], "read history")?;
    Ok(axum::Json(state.events.get(&who.tenant_id, &id).await?))
}
