//! Requests Hookgate sends to callback URLs: the one builder
//! ([`Request`]), the shared client behind the egress guard, error classes
//! a tenant can act on, signing, and the redacted copies kept in history.
//!
//! Layout: `request` builds; `signing` signs; `egress` guards addresses;
//! `redact` makes history safe to show; this module sends.

pub mod egress;
mod redact;
mod request;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use self::egress::GuardedResolver;
pub use self::redact::{HISTORY_BODY_CAP, REDACTED, redact_url, response_record};
pub use self::request::{
    CAUSATION_HEADER, RESERVED_HEADERS, Request, is_reserved, parse_causation, signing_secrets,
};
use crate::model::ErrorClass;

/// `user-agent` of every request.
pub const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));
/// Bytes of a response body read at all; the rest is dropped unread.
const RESPONSE_READ_CAP: usize = 64 * 1024;
/// Default time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The client shared by every outgoing request: keep-alive pooling, a
/// connect timeout, no redirects (a redirect could lead anywhere), and the
/// egress guard on every address it connects to.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    allow_private: bool,
}

impl HttpClient {
    /// A client that reaches non-public addresses only if `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
            .build()
            .expect("the HTTP client's settings are valid");
        HttpClient {
            client,
            allow_private,
        }
    }

    /// POSTs a request and reads the answer, within `timeout` overall.
    pub async fn send(&self, request: Request, timeout: Duration) -> Result<Answer, SendError> {
        let Request {
            url, headers, body, ..
        } = request;
        // Only a failure quotes the URL, so only a failure redacts it.
        let shown = || redact_url(&url);
        let parsed = url::Url::parse(&url).map_err(|e| SendError {
            class: ErrorClass::Config,
            message: format!("{} is not a valid URL: {e}", shown()),
        })?;
        egress::check_literal(&parsed, self.allow_private).map_err(|blocked| SendError {
            class: ErrorClass::Blocked,
            message: blocked.to_string(),
        })?;
        let mut request = self.client.post(parsed).timeout(timeout).body(body);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while body.len() < RESPONSE_READ_CAP {
                match response.chunk().await? {
                    Some(chunk) => body.extend_from_slice(&chunk),
                    None => break,
                }
            }
            body.truncate(RESPONSE_READ_CAP);
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        };
        // reqwest's errors quote the URL, credentials and all; they are
        // stripped here and the redacted URL quoted instead.
        exchange
            .await
            .map_err(|e| classify(&e.without_url(), &shown(), timeout))
    }
}

/// What a receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Up to the first 64 KiB of the body.
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What kind of failure: `Blocked` by the egress guard, `Config` for
    /// a bad URL, or one of the ways a connection fails.
    pub class: ErrorClass,
    /// What happened, for the tenant.
    pub message: String,
}

fn classify(err: &reqwest::Error, url: &str, timeout: Duration) -> SendError {
    if let Some(blocked) = egress::find_blocked(err) {
        return SendError {
            class: ErrorClass::Blocked,
            message: blocked.to_string(),
        };
    }
    let chain = error_chain(err);
    let (class, message) = if err.is_timeout() {
        (
            ErrorClass::Timeout,
            format!("no answer from {url} within {} ms", timeout.as_millis()),
        )
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        (
            ErrorClass::UnknownHost,
            format!("cannot resolve the host of {url}: {chain}"),
        )
    } else if chain.contains("Connection refused") {
        (
            ErrorClass::ConnectionRefused,
            format!("{url} refused the connection"),
        )
    } else if err.is_connect() {
        (
            ErrorClass::Connect,
            format!("cannot connect to {url}: {chain}"),
        )
    } else {
        (ErrorClass::Io, format!("request to {url} failed: {chain}"))
    };
    SendError { class, message }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
