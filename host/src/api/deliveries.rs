//! `/v1/deliveries`: after-event deliveries, their attempts, and replays.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Manage, ManageOrRead};
use super::error::ApiResult;
use super::extract::Query;
use super::state::AppState;
use crate::delivery::DeliveryView;
use crate::domain::{Page, page_size};
use crate::model::{Delivery, DeliveryStatus};
use crate::store::DeliveryFilter;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(retry))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this callback's.
    callback_id: Option<String>,
    /// Only in this state.
    status: Option<DeliveryStatus>,
    /// Continue after this delivery id.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// Lists deliveries, newest first.
#[utoipa::path(get, operation_id = "list_deliveries", path = "/v1/deliveries", tag = "deliveries", params(ListQuery),
    responses((status = 200, description = "A page of deliveries.", body = Page<Delivery>)))]
async fn list(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Page<Delivery>>> {
    let filter = DeliveryFilter {
        callback_id: query.callback_id,
        status: query.status,
    };
    let page = state
        .deliverer
        .list(
            &who.tenant_id,
            &filter,
            query.cursor.as_deref(),
            page_size(query.limit),
        )
        .await?;
    Ok(axum::Json(page))
}

/// A delivery with every attempt.
#[utoipa::path(get, operation_id = "get_delivery", path = "/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id.")),
    responses((status = 200, description = "The delivery and its attempts.", body = DeliveryView)))]
async fn show(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeliveryView>> {
    Ok(axum::Json(state.deliverer.get(&who.tenant_id, &id).await?))
}

/// Makes one new attempt now, whatever the delivery's state; it is never
/// rescheduled.
#[utoipa::path(post, operation_id = "retry_delivery", path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id.")),
    responses(
        (status = 200, description = "The delivery with the new attempt.", body = DeliveryView),
        (status = 409, description = "`delivery_pending` or `delivery_in_flight`: an attempt is already scheduled or under way.", body = super::error::ErrorBody),
    ))]
async fn retry(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeliveryView>> {
    Ok(axum::Json(
        state.deliverer.retry(&who.tenant_id, &id).await?,
    ))
}
