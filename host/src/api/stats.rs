//! Delivery figures: `/v1/stats` for a whole tenant, and
//! `/v1/callbacks/{id}/stats` for one callback. The store counts attempts
//! by hour as they are recorded, so asking is cheap enough to poll.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, ManageOrRead};
use super::error::ApiResult;
use super::extract::Query;
use super::state::AppState;
use crate::domain::stats::{DeliveryStats, Window};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tenant))
        .routes(routes!(callback))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// How far back: hours or days, like `24h` (the default) or `7d`, up
    /// to `30d`. The window ends with the current hour.
    #[param(
        value_type = Option<String>,
        pattern = "^0*(([1-9][0-9]?|[1-6][0-9]{2}|7[01][0-9]|720)h|([1-9]|[12][0-9]|30)d)$"
    )]
    window: Option<Window>,
}

/// All the tenant's delivery attempts over a window, hour by hour, with
/// the success rate: every after-callback's added up.
#[utoipa::path(get, operation_id = "get_stats", path = "/v1/stats", tag = "stats",
    params(StatsQuery),
    responses((status = 200, description = "The tenant's figures.", body = DeliveryStats)))]
async fn tenant(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<axum::Json<DeliveryStats>> {
    let window = query.window.unwrap_or(Window::DAY);
    Ok(axum::Json(
        state.callbacks.tenant_stats(&who.tenant_id, window).await?,
    ))
}

/// One callback's delivery attempts over a window, hour by hour, with its
/// success rate.
#[utoipa::path(get, operation_id = "get_callback_stats", path = "/v1/callbacks/{id}/stats", tag = "stats",
    params(("id" = String, Path, description = "The callback's id."), StatsQuery),
    responses((status = 200, description = "The callback's figures.", body = DeliveryStats)))]
async fn callback(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<axum::Json<DeliveryStats>> {
    let window = query.window.unwrap_or(Window::DAY);
    Ok(axum::Json(
        state.callbacks.stats(&who.tenant_id, &id, window).await?,
    ))
}
