//! The HTTP API, and only HTTP: each resource module exposes a `router()`
//! of documented handlers; [`router`] composes them with tracing, metrics
//! and the body limit, and serves the OpenAPI document they add up to.
//! Handlers take their caller through a role extractor (`auth`), parse with
//! the extractors in `extract`, call a service and map the result; `error`
//! gives every failure its status and JSON shape.

pub(crate) mod auth;
mod callbacks;
mod deliveries;
mod doc;
pub(crate) mod error;
mod events;
pub(crate) mod extract;
mod keys;
mod openapi;
mod ops;
mod plugins;
pub mod state;
mod stats;
mod subscriptions;
mod templates;
mod tenants;
pub(crate) mod wire;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use self::error::ApiError;
use self::state::AppState;
use crate::domain::Error;

/// The whole API, with `pages` (the console, a client of it) served
/// alongside under the same layers.
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let (routes, mut api) = routes().split_for_parts();
    doc::finish(&mut api);
    routes
        .layer(axum::Extension(doc::Published::new(api)))
        .merge(pages)
        .fallback(|| async { ApiError::from(Error::NotFound("no such endpoint".into())) })
        // A handler that panics answers 500, and the connection lives on.
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::from(Error::Internal("a request handler panicked".into())).into_response()
        }))
        // Answers carry secrets and tenants' data: no cache keeps them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(track))
        .layer(TraceLayer::new_for_http())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Every documented route. Routes are only ever added through
/// `OpenApiRouter::routes`, so the document cannot miss one.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .merge(doc::router())
        .merge(ops::router())
        .merge(tenants::router())
        .merge(keys::router())
        .merge(plugins::router())
        .merge(callbacks::router())
        .merge(stats::router())
        .merge(events::router())
        .merge(deliveries::router())
        .merge(templates::router())
        .merge(subscriptions::router())
        .merge(openapi::router())
}

/// A list answer: `{"items": [...]}`, leaving room for paging fields.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
}

/// Counts requests by route and status, and times them.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("hookgate_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("hookgate_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    /// Routes added with plain axum would be served but missing from the
    /// document, so no route module may add one.
    #[test]
    fn every_route_goes_through_the_documenting_router() {
        let modules = [
            ("callbacks", include_str!("callbacks.rs")),
            ("deliveries", include_str!("deliveries.rs")),
            ("doc", include_str!("doc.rs")),
            ("events", include_str!("events.rs")),
            ("keys", include_str!("keys.rs")),
            ("openapi", include_str!("openapi.rs")),
            ("ops", include_str!("ops.rs")),
            ("plugins", include_str!("plugins.rs")),
            ("subscriptions", include_str!("subscriptions.rs")),
            ("templates", include_str!("templates.rs")),
            ("tenants", include_str!("tenants.rs")),
        ];
        for (name, source) in modules {
            let source = source.replace("OpenApiRouter::new()", "");
            for undocumented in [".route(", ".nest(", "Router::new()"] {
                assert!(
                    !source.contains(undocumented),
                    "api/{name}.rs adds a route with `{undocumented}`; use `.routes(routes!(...))`"
                );
            }
        }
        let here = include_str!("mod.rs");
        let body = &here[..here.find("#[cfg(test)]").unwrap()];
        assert!(
            !body.contains(".route("),
            "api/mod.rs adds an undocumented route"
        );
    }
}
