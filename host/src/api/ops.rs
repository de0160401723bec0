//! Operational endpoints: liveness and Prometheus metrics.

use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

/// A liveness answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Alive {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: answers while the server can serve requests.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Serving.", body = Alive)))]
async fn healthz() -> axum::Json<Alive> {
    axum::Json(Alive { status: "ok" })
}

/// Metrics in the Prometheus text format: requests, gate decisions,
/// plugin calls, fuel, queue depth and delivery outcomes.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition.", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
