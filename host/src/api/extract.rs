//! Extractors that turn a request into typed input, with every rejection
//! in the API's error shape: an over-limit body is a 413, malformed JSON a
//! 400, and valid JSON of the wrong shape a 422 naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::domain::error::from_value;
use crate::domain::{Error, input};

/// The raw request body, with an over-limit body reported as a JSON 413.
pub(crate) struct Body(pub(crate) Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
                    limit: state.config.max_body_bytes,
                },
                _ => Error::Malformed(rejection.body_text()).into(),
            })
    }
}

/// A plugin upload's bytes, under the component size cap rather than the
/// JSON API's body limit: real Python and JavaScript components are tens of
/// megabytes, and no JSON document needs to be.
pub(crate) struct Wasm(pub(crate) Bytes);

impl FromRequest<AppState> for Wasm {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.plugin.max_component_bytes;
        axum::body::to_bytes(request.into_body(), limit)
            .await
            .map(Wasm)
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                if too_large {
                    ApiError::TooLarge { limit }
                } else {
                    Error::Malformed(format!("could not read the upload: {e}")).into()
                }
            })
    }
}

/// A JSON body: malformed JSON is a 400, a wrong shape a 422 naming the field.
pub(crate) struct Json<T>(pub(crate) T);

/// Bodies larger than this are parsed on a blocking thread: a 10 MiB
/// document takes tens of milliseconds that the async workers, serving
/// every other request, should not spend.
const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let Body(bytes) = Body::from_request(request, state).await?;
        if bytes.len() <= BLOCKING_PARSE_BYTES {
            return Ok(Json(parse_json(&bytes)?));
        }
        let parsed = tokio::task::spawn_blocking(move || parse_json(&bytes))
            .await
            .map_err(|e| Error::Internal(format!("parsing a JSON body failed: {e}")))?;
        Ok(Json(parsed?))
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

/// Query parameters, with bad values reported as a 422.
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| Error::invalid("query", e.body_text()).into())
    }
}
