//! What a plugin answers.

use std::fmt;

use crate::Outgoing;

/// What [`Transform::transform`](crate::Transform::transform) decided to do with an
/// outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// Send this request instead of the original.
    Send(Outgoing),
    /// Do not send anything; the string says why and is kept in history.
    Skip(String),
}

impl Transformed {
    /// Do not send anything, for the given reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Self::Skip(reason.into())
    }
}

/// The answer to a before-event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the change go ahead.
    Allow,
    /// Refuse the change; the string is the reason shown to the caller.
    Deny(String),
}

impl Verdict {
    /// Let the change go ahead.
    pub fn allow() -> Self {
        Self::Allow
    }

    /// Refuse the change, for a reason shown to the caller.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny(reason.into())
    }
}

/// A plugin's own report that it could not do its job.
///
/// Hookgate treats it as a failure of the call: a before-event is denied, a
/// delivery fails. Use `?` to return one from an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A short machine-readable code, such as `bad-config` or `bad-data`.
    pub code: String,
    /// A sentence for the person reading the history.
    pub message: String,
}

impl Failure {
    /// A failure with the given code and message.
    ///
    /// ```
    /// # use hookgate_sdk::Failure;
    /// let failure = Failure::new("quota", "the tenant has no deliveries left");
    /// assert_eq!(failure.to_string(), "quota: the tenant has no deliveries left");
    /// ```
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A failure with code `bad-config`: the callback's plugin configuration
    /// is missing a key or has a value the plugin cannot use.
    pub fn bad_config(message: impl Into<String>) -> Self {
        Self::new("bad-config", message)
    }

    /// A failure with code `bad-data`: the event or a message does not have
    /// the shape the plugin needs.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new("bad-data", message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}
