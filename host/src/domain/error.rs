//! The errors services report, in terms a client can act on. Each kind
//! says what went wrong, not how to say it over HTTP: the API layer picks
//! the status (see `api::error`).

use crate::plugin::PluginError;
use crate::store::StoreError;

/// What went wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that cannot even be read, such as a document that is not
    /// YAML.
    #[error("{0}")]
    Malformed(String),
    /// Credentials that name no one, or no one any more.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// No such thing for this tenant.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state.
    #[error("{message}")]
    Conflict {
        /// Machine-readable reason.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A field has a bad value.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, such as `plugin.id`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An uploaded plugin failed validation.
    #[error(transparent)]
    Plugin(PluginError),
    /// Hookgate is overloaded; try again later.
    #[error("{message}")]
    Unavailable {
        /// Explanation.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Hookgate's own failure; the details go to the log only.
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
            StoreError::Unavailable(reason) => Error::Unavailable {
                message: format!(
                    "Hookgate cannot reach its database right now ({reason}); nothing was \
                     stored, try again shortly"
                ),
                retry_after_secs: 5,
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

/// Shorthand for service results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Deserializes a JSON value, reporting a wrong shape as [`Error::Invalid`]
/// naming the field.
pub fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        Error::Invalid {
            field: if path == "." { String::new() } else { path },
            message: err.into_inner().to_string(),
        }
    })
}
