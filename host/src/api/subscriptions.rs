//! `/v1/subscriptions`: subscribe and unsubscribe, as an OpenAPI 3 API's
//! subscribe operation would.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use super::auth::{Caller, ManageOrEmit, ManageOrRead};
use super::error::ApiResult;
use super::extract::Json;
use super::state::AppState;
use crate::domain::subscriptions::{SubscriptionInput, SubscriptionView};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, subscribe))
        .routes(routes!(show, unsubscribe))
}

const ID: &str = "The subscription's id.";

/// Subscribes: fills the template's runtime expressions from the
/// subscribe request (and its response) and registers the callback. An
/// expression without a value is a 422 naming it; a resolved URL that is
/// not http(s) is refused.
#[utoipa::path(post, operation_id = "subscribe", path = "/v1/subscriptions", tag = "openapi", request_body = SubscriptionInput,
    responses((status = 201, description = "Subscribed.", body = SubscriptionView)))]
async fn subscribe(
    who: Caller<ManageOrEmit>,
    State(state): State<AppState>,
    Json(input): Json<SubscriptionInput>,
) -> ApiResult<(StatusCode, axum::Json<SubscriptionView>)> {
    let view = state
        .subscriptions
        .subscribe(&who.tenant_id, &who.key_name, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Lists subscriptions.
#[utoipa::path(get, operation_id = "list_subscriptions", path = "/v1/subscriptions", tag = "openapi",
    responses((status = 200, description = "Every subscription, oldest first.", body = Items<SubscriptionView>)))]
async fn list(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Items<SubscriptionView>>> {
    let items = state.subscriptions.list(&who.tenant_id).await?;
    Ok(axum::Json(Items { items }))
}

/// One subscription.
#[utoipa::path(get, operation_id = "get_subscription", path = "/v1/subscriptions/{id}", tag = "openapi",
    params(("id" = String, Path, description = ID)),
    responses((status = 200, description = "The subscription.", body = SubscriptionView)))]
async fn show(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SubscriptionView>> {
    Ok(axum::Json(
        state.subscriptions.get(&who.tenant_id, &id).await?,
    ))
}

/// Unsubscribes: the callback is deleted and nothing more is delivered.
#[utoipa::path(delete, operation_id = "unsubscribe", path = "/v1/subscriptions/{id}", tag = "openapi",
    params(("id" = String, Path, description = ID)),
    responses((status = 204, description = "Unsubscribed.")))]
async fn unsubscribe(
    who: Caller<ManageOrEmit>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.subscriptions.unsubscribe(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
