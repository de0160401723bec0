//! Operational endpoints: liveness and Prometheus metrics.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::app::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
