//! `/v1/callbacks`: register, edit and inspect callbacks and their history.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Manage, ManageOrRead};
use super::error::ApiResult;
use super::extract::{Json, Query};
use super::state::AppState;
use crate::domain::callbacks::{CallbackFilter, CallbackView};
use crate::domain::{Error, input};
use crate::domain::{Page, page_size};
use crate::model::{Activation, ActivationOutcome};
use crate::model::{CallbackInput, Phase};
use crate::store::{ActivationQuery, PageFrom};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, patch, remove))
        .routes(routes!(activations))
        .routes(routes!(rotate_secret))
        .routes(routes!(replay))
}

const ID: &str = "The callback's id.";

/// Filters and paging for listing callbacks.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this object type.
    object_type: Option<String>,
    /// Only this phase.
    phase: Option<Phase>,
    /// Only enabled, or only disabled, callbacks.
    enabled: Option<bool>,
    /// Only names containing this text, ignoring case.
    q: Option<String>,
    /// Continue after this callback id.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// Registers a callback, with a fresh signing secret.
#[utoipa::path(post, operation_id = "create_callback", path = "/v1/callbacks", tag = "callbacks", request_body = CallbackInput,
    responses(
        (status = 201, description = "Registered.", body = CallbackView),
        (status = 409, description = "The name is taken.", body = super::error::ErrorBody),
    ))]
async fn create(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Json(input): Json<CallbackInput>,
) -> ApiResult<(StatusCode, axum::Json<CallbackView>)> {
    let view = state
        .callbacks
        .create(&who.tenant_id, &who.key_name, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Lists callbacks, filtered, in creation order.
#[utoipa::path(get, operation_id = "list_callbacks", path = "/v1/callbacks", tag = "callbacks", params(ListQuery),
    responses((status = 200, description = "A page of callbacks.", body = Page<CallbackView>)))]
async fn list(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Page<CallbackView>>> {
    let filter = CallbackFilter {
        object_type: query.object_type,
        phase: query.phase,
        enabled: query.enabled,
        q: query.q,
    };
    let page = state
        .callbacks
        .list(
            &who.tenant_id,
            &filter,
            query.cursor.as_deref(),
            page_size(query.limit),
        )
        .await?;
    Ok(axum::Json(page))
}

/// One callback.
#[utoipa::path(get, operation_id = "get_callback", path = "/v1/callbacks/{id}", tag = "callbacks",
    params(("id" = String, Path, description = ID)),
    responses((status = 200, description = "The callback.", body = CallbackView)))]
async fn show(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CallbackView>> {
    Ok(axum::Json(state.callbacks.get(&who.tenant_id, &id).await?))
}

/// Replaces every writable field.
#[utoipa::path(put, operation_id = "replace_callback", path = "/v1/callbacks/{id}", tag = "callbacks", request_body = CallbackInput,
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "Replaced.", body = CallbackView),
        (status = 409, description = "The name is taken.", body = super::error::ErrorBody),
    ))]
async fn replace(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(input): Json<CallbackInput>,
) -> ApiResult<axum::Json<CallbackView>> {
    Ok(axum::Json(
        state
            .callbacks
            .replace(&who.tenant_id, &id, &who.key_name, input)
            .await?,
    ))
}

/// Applies a JSON merge patch (RFC 7386), such as `{"enabled": false}`.
#[utoipa::path(patch, operation_id = "patch_callback", path = "/v1/callbacks/{id}", tag = "callbacks",
    request_body(content = Object, content_type = "application/merge-patch+json", description = "Fields of the callback input to change; null removes one."),
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "Changed.", body = CallbackView),
        (status = 409, description = "The name is taken.", body = super::error::ErrorBody),
    ))]
async fn patch(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(patch): Json<serde_json::Value>,
) -> ApiResult<axum::Json<CallbackView>> {
    Ok(axum::Json(
        state
            .callbacks
            .patch(&who.tenant_id, &id, &who.key_name, patch)
            .await?,
    ))
}

/// Deletes a callback. Its history stays until retention prunes it.
#[utoipa::path(delete, operation_id = "delete_callback", path = "/v1/callbacks/{id}", tag = "callbacks",
    params(("id" = String, Path, description = ID)),
    responses((status = 204, description = "Deleted.")))]
async fn remove(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.callbacks.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Continue with activations older than this one.
    cursor: Option<String>,
    /// Go back to the activations newer than this one: a page's
    /// `prev_cursor`.
    after: Option<String>,
    /// Only activations with this outcome.
    outcome: Option<ActivationOutcome>,
    /// Only activations at or after this time: RFC 3339, or milliseconds
    /// since the epoch.
    since: Option<String>,
    /// Only activations before this time, likewise.
    until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

impl HistoryQuery {
    /// The store's query, or what is wrong with this one.
    fn selection(self) -> Result<ActivationQuery, Error> {
        let from = match (self.cursor, self.after) {
            (None, None) => PageFrom::Newest,
            (Some(id), None) => PageFrom::Before(id),
            (None, Some(id)) => PageFrom::After(id),
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "after",
                    "give `cursor` to go to older activations or `after` to go back, not both",
                ));
            }
        };
        let since = input::instant("since", self.since.as_deref())?;
        let until = input::instant("until", self.until.as_deref())?;
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(Error::invalid("since", "must not be after `until`"));
        }
        Ok(ActivationQuery {
            outcome: self.outcome,
            since,
            until,
            from,
        })
    }
}

/// The callback's activations, newest first: each run with its outcome,
/// and the request and response (secrets redacted, bodies capped).
/// Filters by outcome and time; pages both ways.
#[utoipa::path(get, operation_id = "list_callback_activations", path = "/v1/callbacks/{id}/activations", tag = "callbacks",
    params(("id" = String, Path, description = ID), HistoryQuery),
    responses((status = 200, description = "A page of activations.", body = Page<Activation>)))]
async fn activations(
    who: Caller<ManageOrRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<axum::Json<Page<Activation>>> {
    let limit = page_size(query.limit);
    let page = state
        .callbacks
        .activations(&who.tenant_id, &id, query.selection()?, limit)
        .await?;
    Ok(axum::Json(page))
}

/// Makes a new signing secret. Until the configured overlap ends, requests
/// carry signatures with both the old and the new one.
#[utoipa::path(post, operation_id = "rotate_callback_secret", path = "/v1/callbacks/{id}/rotate-secret", tag = "callbacks",
    params(("id" = String, Path, description = ID)),
    responses((status = 200, description = "The callback with its new secret.", body = CallbackView)))]
async fn rotate_secret(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CallbackView>> {
    let overlap = Duration::from_secs(state.config.delivery.secret_overlap_hours * 3600);
    Ok(axum::Json(
        state
            .callbacks
            .rotate_secret(&who.tenant_id, &id, &who.key_name, overlap)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    /// Start of the window: RFC 3339, or milliseconds since the epoch.
    since: Option<String>,
    /// End of the window, likewise.
    until: Option<String>,
}

/// What a replay re-sent.
#[derive(Serialize, utoipa::ToSchema)]
struct Replayed {
    /// How many deliveries.
    replayed: usize,
    /// Their ids.
    deliveries: Vec<String>,
}

/// Re-delivers the window's failed deliveries, one new attempt each. One
/// being retried by hand at that moment is left out, so it is never
/// attempted twice at once; the answer lists those taken.
#[utoipa::path(post, operation_id = "replay_callback_deliveries", path = "/v1/callbacks/{id}/replay", tag = "callbacks",
    params(("id" = String, Path, description = ID), ReplayQuery),
    responses((status = 200, description = "What was re-sent.", body = Replayed)))]
async fn replay(
    who: Caller<Manage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> ApiResult<axum::Json<Replayed>> {
    let since = input::instant("since", query.since.as_deref())?.unwrap_or(0);
    let until = input::instant("until", query.until.as_deref())?.unwrap_or(u64::MAX);
    if since > until {
        return Err(Error::invalid("since", "must not be after `until`").into());
    }
    let replayed = state
        .deliverer
        .replay(&who.tenant_id, &id, since, until)
        .await?;
    Ok(axum::Json(Replayed {
        replayed: replayed.len(),
        deliveries: replayed,
    }))
}
