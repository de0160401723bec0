//! Operational endpoints: liveness and Prometheus metrics.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

/// Whether this node can serve.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, or `degraded` while storage does not answer.
    status: &'static str,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Health: 200 while this node can serve requests, 503 while its storage
/// (a shared database) does not answer, which a load balancer should read
/// as "send elsewhere for now".
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Serving.", body = Health),
        (status = 503, description = "Storage does not answer; writes are refused for now.", body = Health),
    ))]
async fn healthz(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    match state.store.check().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok",
                reason: None,
            }),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health {
                status: "degraded",
                reason: Some(err.to_string()),
            }),
        ),
    }
}

/// Metrics in the Prometheus text format: requests, gate decisions,
/// plugin calls, fuel, queue depth and delivery outcomes.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition.", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
