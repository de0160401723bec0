//! `/v1/events`: emit events and read what became of them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, ManageOrEmit, ManageOrRead};
use super::error::ApiResult;
use super::extract::Json;
use super::state::AppState;
use crate::domain::Error;
use crate::domain::events::EventView;
use crate::model::{EventAnswer, NewEvent};
use crate::outbound::CAUSATION_HEADER;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(emit))
        .routes(routes!(show))
}

/// Emits an event. A before-event runs the matching before-callbacks in
/// name order and answers 200 with the verdict; an after-event is stored
/// with one pending delivery per matching after-callback, durably, before
/// the 202. An `id` sent again with the same event returns the original
/// answer; with a different event, it is refused.
#[utoipa::path(post, operation_id = "emit_event", path = "/v1/events", tag = "events", request_body = NewEvent,
    params(("hookgate-causation" = Option<String>, Header, description = "Sent back from a callback request, so that loops are stopped.")),
    responses(
        (status = 200, description = "A before-event's verdict.", body = EventAnswer),
        (status = 202, description = "An after-event, stored with its deliveries.", body = EventAnswer),
        (status = 409, description = "`event_loop`: the event would be deeper than `max_event_depth` in a chain of events causing events. `event_id_reused`: the `id` was already used by a different event.", body = super::error::ErrorBody),
        (status = 503, description = "Too many pending deliveries; retry after `Retry-After` seconds.", body = super::error::ErrorBody),
    ))]
async fn emit(
    who: Caller<ManageOrEmit>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(new): Json<NewEvent>,
) -> ApiResult<(StatusCode, axum::Json<EventAnswer>)> {
    let causation = match headers.get(CAUSATION_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Error::invalid(CAUSATION_HEADER, "must be ASCII"))?,
        ),
        None => None,
    };
    let answer = state.events.emit(&who.tenant_id, new, causation).await?;
    Ok((status_of(&answer), axum::Json(answer)))
}

/// 200 for a before-event's verdict, 202 for an accepted after-event.
fn status_of(answer: &EventAnswer) -> StatusCode {
    match answer {
        EventAnswer::Gate { .. } => StatusCode::OK,
        EventAnswer::Accepted { .. } => StatusCode::ACCEPTED,
    }
}

/// An event and what it caused, with the status its emit was answered.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct EventShown {
    /// The event and what it caused.
    #[serde(flatten)]
    view: EventView,
    /// The status the events endpoint answered.
    status: u16,
}

/// An event with its decisions or deliveries, and their attempts.
#[utoipa::path(get, operation_id = "get_event", path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "The event's id.")),
    responses((status = 200, description = "The event and what it caused.", body = EventShown)))]
async fn show(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EventShown>> {
    let view = state.events.get(&who.tenant_id, &id).await?;
    let status = status_of(&view.answer).as_u16();
    Ok(axum::Json(EventShown { view, status }))
}
