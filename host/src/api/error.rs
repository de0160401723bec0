//! How errors look on the wire: a status and
//! `{"error": {"code", "message", "field"?}}`. This is where a service's
//! error gets its HTTP status. Internal errors are logged once, in full,
//! and answered with an opaque 500.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::Error;

/// What a handler can fail with: a service's error, or one only HTTP has.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A service refused or failed.
    #[error(transparent)]
    Domain(#[from] Error),
    /// The credentials may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The body is over the configured limit (413).
    #[error("request body is over the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Shorthand for handler results.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// What went wrong, for a program and for a person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// Stable and machine-readable, such as `invalid` or `name_taken`.
    code: String,
    /// What happened and, where it helps, what to do.
    message: String,
    /// The offending field's path, such as `plugin.id`, for a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            ApiError::Domain(err) => match err {
                Error::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_request", None),
                Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
                Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
                Error::Conflict { code, .. } => (StatusCode::CONFLICT, *code, None),
                Error::Invalid { field, .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    Some(field.clone()).filter(|f| !f.is_empty()),
                ),
                Error::Plugin(err) => (StatusCode::UNPROCESSABLE_ENTITY, err.code(), None),
                Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
                Error::Internal(detail) => {
                    tracing::error!("internal error: {detail}");
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
                }
            },
        };
        let message = match &self {
            ApiError::Domain(Error::Invalid { message, .. }) => message.clone(),
            ApiError::Domain(Error::Internal(_)) => {
                "Hookgate failed to handle this request; the details are in its log".into()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                field,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Domain(Error::Unavailable {
            retry_after_secs, ..
        }) = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

/// Bytes of a plain-text error body quoted in its JSON replacement.
const QUOTED_ERROR_BYTES: usize = 1024;

/// Gives every error answer the documented JSON shape, whichever layer
/// produced it: axum's own rejections (a 405 with an empty body, a path
/// that is not UTF-8 in plain text) as much as the handlers'. Answers that
/// are already JSON, and the console's HTML pages, pass unchanged.
pub(super) async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let typed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json") || t.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || typed {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, QUOTED_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        // The router adds the `Allow` header after this layer has run.
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on {path}; the Allow header lists what is")
        }
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::BAD_REQUEST => "malformed_request",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "request_refused",
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
            field: None,
        },
    };
    let mut response = Response::from_parts(
        parts,
        Body::from(serde_json::to_vec(&body).expect("error bodies serialize")),
    );
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
