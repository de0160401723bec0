//! The errors services report, in terms an API client can act on. The API
//! layer maps each to its HTTP status (see `api::error`).

use crate::plugin::PluginError;
use crate::store::StoreError;

/// What went wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be parsed (400).
    #[error("{0}")]
    Malformed(String),
    /// No credentials, or unknown ones (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The credentials may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing for this tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state (409).
    #[error("{message}")]
    Conflict {
        /// Machine-readable reason.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The body is over the configured limit (413).
    #[error("request body is over the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A field has a bad value (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, such as `plugin.id`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An uploaded plugin failed validation (422).
    #[error(transparent)]
    Plugin(PluginError),
    /// Hookgate is overloaded; try again later (503).
    #[error("{message}")]
    Unavailable {
        /// Explanation.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Hookgate's own failure (500); the details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A 422 for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A 404 naming what was not found.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Error::NotFound(format!("{kind} `{id}` not found"))
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(field) => Error::Conflict {
                code: "conflict",
                message: format!("{field} is already taken"),
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

/// Shorthand for service results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
