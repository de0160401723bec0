//! How service errors look on the wire: a status and
//! `{"error": {"code", "message", "field"?}}`. Internal errors are logged
//! once, in full, and answered with an opaque 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            Error::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_request", None),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Error::Conflict { code, .. } => (StatusCode::CONFLICT, *code, None),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
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
        };
        let message = match &self {
            Error::Invalid { message, .. } => message.clone(),
            Error::Internal(_) => {
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
        if let Error::Unavailable {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}
