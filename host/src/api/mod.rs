//! The HTTP API. Each resource module exposes a `router()` of documented
//! handlers; [`router`] composes them with tracing, metrics and the body
//! limit, and serves the OpenAPI document they add up to. Handlers parse,
//! check the caller's role, call a service and map the result.

mod callbacks;
mod deliveries;
mod doc;
mod error;
mod events;
mod keys;
mod openapi;
mod ops;
mod plugins;
mod subscriptions;
mod templates;
mod tenants;
pub(crate) mod wire;

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::error::Error;
use crate::input;

/// The whole API, and the console that uses it.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (routes, mut api) = routes().split_for_parts();
    doc::finish(&mut api);
    routes
        .layer(axum::Extension(doc::Published::new(api)))
        .merge(crate::console::router())
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
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

/// The raw request body, with an over-limit body reported as a JSON 413.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Error> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge {
                    limit: state.config.max_body_bytes,
                },
                _ => Error::Malformed(rejection.body_text()),
            })
    }
}

/// A JSON body: malformed JSON is a 400, a wrong shape a 422 naming the field.
pub struct Json<T>(pub T);

/// Bodies larger than this are parsed on a blocking thread: a 10 MiB
/// document takes tens of milliseconds that the async workers, serving
/// every other request, should not spend.
const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for Json<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Error> {
        let Body(bytes) = Body::from_request(request, state).await?;
        if bytes.len() <= BLOCKING_PARSE_BYTES {
            return parse_json(&bytes).map(Json);
        }
        tokio::task::spawn_blocking(move || parse_json(&bytes))
            .await
            .map_err(|e| Error::Internal(format!("parsing a JSON body failed: {e}")))?
            .map(Json)
    }
}

/// Parses a JSON body: nesting first, in linear time, then the type.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    input::json_nesting(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| e.into_inner())
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|err| json_error::<T>(bytes, err))
}

/// Why a body did not deserialize: malformed JSON is a 400; valid JSON of
/// the wrong shape is a 422 naming the field. serde_json reports some type
/// errors, such as a number where an enum's name belongs, as syntax
/// errors, so the two are told apart by whether the text is JSON at all.
fn json_error<T: DeserializeOwned>(bytes: &[u8], err: serde_json::Error) -> Error {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(_) => Error::Malformed(format!("malformed JSON: {err}")),
        Ok(value) => match from_value::<T>(value) {
            Err(shaped) => shaped,
            Ok(_) => Error::Malformed(format!("malformed JSON: {err}")),
        },
    }
}

/// Deserializes a JSON value, reporting a wrong shape as a 422 naming the field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        Error::Invalid {
            field: if path == "." { String::new() } else { path },
            message: err.into_inner().to_string(),
        }
    })
}

/// Query parameters, with bad values reported as a 422.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| Error::invalid("query", e.body_text()))
    }
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
