//! `/v1/subscriptions`: subscribe and unsubscribe, as an OpenAPI 3 API's
//! subscribe operation would.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Items, Json};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::Result;
use crate::model::Role;
use crate::subscriptions::{SubscriptionInput, SubscriptionView};

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

/// Lists subscriptions.
#[utoipa::path(get, operation_id = "list_subscriptions", path = "/v1/subscriptions", tag = "openapi",
    responses((status = 200, description = "Every subscription, oldest first.", body = Items<SubscriptionView>)))]
async fn list(
    who: Principal,
    State(state): State<AppState>,
) -> Result<axum::Json<Items<SubscriptionView>>> {
    who.require(&[Role::Manage, Role::Read], "list subscriptions")?;
    let items = state.subscriptions.list(&who.tenant_id).await?;
    Ok(axum::Json(Items { items }))
}

/// One subscription.
#[utoipa::path(get, operation_id = "get_subscription", path = "/v1/subscriptions/{id}", tag = "openapi",
    params(("id" = String, Path, description = ID)),
    responses((status = 200, description = "The subscription.", body = SubscriptionView)))]
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

/// Unsubscribes: the callback is deleted and nothing more is delivered.
#[utoipa::path(delete, operation_id = "unsubscribe", path = "/v1/subscriptions/{id}", tag = "openapi",
    params(("id" = String, Path, description = ID)),
    responses((status = 204, description = "Unsubscribed.")))]
async fn unsubscribe(
    who: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    who.require(&[Role::Manage, Role::Emit], "unsubscribe")?;
    state.subscriptions.unsubscribe(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
