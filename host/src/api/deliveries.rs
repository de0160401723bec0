//! `/v1/deliveries`: after-event deliveries, their attempts, and replays.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Query;
use crate::app::AppState;
use crate::auth::Principal;
use crate::callbacks::{Page, page_size};
use crate::delivery::DeliveryView;
use crate::error::Result;
use crate::model::{Delivery, DeliveryStatus, Role};
use crate::store::DeliveryFilter;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/deliveries", get(list))
        .route("/v1/deliveries/{id}", get(show))
        .route("/v1/deliveries/{id}/retry", post(retry))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    callback_id: Option<String>,
    status: Option<DeliveryStatus>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list(
    who: Principal,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Page<Delivery>>> {
    who.require(&[Role::Manage, Role::Read], "read history")?;
    let filter = DeliveryFilter {
        callback_id: query.callback_id,
        status: query.status,
    };
    let page = state
        .deliverer
        .list(&who.tenant_id, filter, query.cursor, page_size(query.limit))
        .await?;
    Ok(axum::Json(page))
}

async fn show(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<DeliveryView>> {
    who.require(&[Role::Manage, Role::Read], "read history")?;
    Ok(axum::Json(state.deliverer.get(&who.tenant_id, &id).await?))
}

async fn retry(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<DeliveryView>> {
    who.require(&[Role::Manage], "retry deliveries")?;
    Ok(axum::Json(
        state.deliverer.retry(&who.tenant_id, &id).await?,
    ))
}
