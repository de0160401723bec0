//! `/v1/callback-templates`: callbacks with runtime expressions, filled in
//! by subscriptions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Items;
use super::auth::{Caller, Manage};
use super::error::ApiResult;
use super::extract::Json;
use super::state::AppState;
use crate::model::CallbackInput;
use crate::model::Template;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, remove))
}

const ID: &str = "The template's id.";

/// Creates a template: a callback whose `url` and header values may hold
/// runtime expressions such as `{$request.body#/callbackUrl}`.
#[utoipa::path(post, operation_id = "create_template", path = "/v1/callback-templates", tag = "openapi", request_body = CallbackInput,
    responses(
        (status = 201, description = "Created.", body = Template),
        (status = 409, description = "The name is taken.", body = super::error::ErrorBody),
    ))]
async fn create(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Json(spec): Json<CallbackInput>,
) -> ApiResult<(StatusCode, axum::Json<Template>)> {
    let template = state
        .templates
        .create(&who.tenant_id, &who.key_name, spec)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(template)))
}

/// Lists templates.
#[utoipa::path(get, operation_id = "list_templates", path = "/v1/callback-templates", tag = "openapi",
    responses((status = 200, description = "Every template, oldest first.", body = Items<Template>)))]
async fn list(
    who: Caller<Manage>,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Items<Template>>> {
    let items = state.templates.list(&who.tenant_id).await?;
    Ok(axum::Json(Items { items }))
}

/// One template.
#[utoipa::path(get, operation_id = "get_template", path = "/v1/callback-templates/{id}", tag = "openapi",
    params(("id" = String, Path, description = ID)),
    responses((status = 200, description = "The template.", body = Template)))]
async fn show(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Template>> {
    Ok(axum::Json(state.templates.get(&who.tenant_id, &id).await?))
}

/// Replaces a template; callbacks already made from it are unchanged.
#[utoipa::path(put, operation_id = "replace_template", path = "/v1/callback-templates/{id}", tag = "openapi", request_body = CallbackInput,
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "Replaced.", body = Template),
        (status = 409, description = "The name is taken.", body = super::error::ErrorBody),
    ))]
async fn replace(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(spec): Json<CallbackInput>,
) -> ApiResult<axum::Json<Template>> {
    Ok(axum::Json(
        state
            .templates
            .replace(&who.tenant_id, &id, &who.key_name, spec)
            .await?,
    ))
}

/// Deletes a template; its subscriptions stay until unsubscribed.
#[utoipa::path(delete, operation_id = "delete_template", path = "/v1/callback-templates/{id}", tag = "openapi",
    params(("id" = String, Path, description = ID)),
    responses((status = 204, description = "Deleted.")))]
async fn remove(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.templates.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
