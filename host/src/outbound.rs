//! Requests Hookgate sends to callback URLs: one shared client, the headers
//! every request carries, error classes a tenant can act on, and the
//! redacted, capped copies kept in history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::egress::{self, GuardedResolver};

use crate::model::HttpRecord;

/// Carries the chain of event ids that led to a request, so that an event
/// emitted in reaction to it can be refused once the chain is too deep.
pub const CAUSATION_HEADER: &str = "hookgate-causation";
/// `user-agent` of every request.
pub const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));
/// Bytes of a body kept in history.
pub const HISTORY_BODY_CAP: usize = 4 * 1024;
/// Bytes of a response body read at all; the rest is dropped unread.
const RESPONSE_READ_CAP: usize = 64 * 1024;
/// Default time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Headers whose values never reach history.
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "webhook-signature",
];

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

    /// POSTs `body` to `url` and reads the answer, within `timeout` overall.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        let parsed = url::Url::parse(url).map_err(|e| SendError {
            class: "config",
            message: format!("{url} is not a valid URL: {e}"),
        })?;
        egress::check_literal(&parsed, self.allow_private).map_err(|blocked| SendError {
            class: "blocked",
            message: blocked.to_string(),
        })?;
        let mut request = self.client.post(parsed).timeout(timeout).body(body);
        for (name, value) in headers {
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
        exchange.await.map_err(|e| classify(&e, url, timeout))
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
    /// `timeout`, `connection_refused`, `unknown_host`, `connect`, `io`,
    /// `blocked` (by the egress guard) or `config` (a bad URL).
    pub class: &'static str,
    /// What happened, for the tenant.
    pub message: String,
}

fn classify(err: &reqwest::Error, url: &str, timeout: Duration) -> SendError {
    if let Some(blocked) = egress::find_blocked(err) {
        return SendError {
            class: "blocked",
            message: blocked.to_string(),
        };
    }
    let chain = error_chain(err);
    let (class, message) = if err.is_timeout() {
        (
            "timeout",
            format!("no answer from {url} within {} ms", timeout.as_millis()),
        )
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        (
            "unknown_host",
            format!("cannot resolve the host of {url}: {chain}"),
        )
    } else if chain.contains("Connection refused") {
        (
            "connection_refused",
            format!("{url} refused the connection"),
        )
    } else if err.is_connect() {
        ("connect", format!("cannot connect to {url}: {chain}"))
    } else {
        ("io", format!("request to {url} failed: {chain}"))
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

/// A request as history keeps it.
pub fn request_record(url: &str, headers: &[(String, String)], body: &[u8]) -> HttpRecord {
    let (body, truncated) = capped(body);
    HttpRecord {
        url: Some(url.to_string()),
        status: None,
        headers: redacted(headers),
        body,
        truncated,
    }
}

/// A response as history keeps it.
pub fn response_record(answer: &Answer) -> HttpRecord {
    let (body, truncated) = capped(&answer.body);
    HttpRecord {
        url: None,
        status: Some(answer.status),
        headers: redacted(&answer.headers),
        body,
        truncated,
    }
}

fn redacted(headers: &[(String, String)]) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let value = if SECRET_HEADERS.contains(&name.as_str()) {
                "[redacted]".to_string()
            } else {
                value.clone()
            };
            (name, value)
        })
        .collect()
}

fn capped(body: &[u8]) -> (String, bool) {
    let truncated = body.len() > HISTORY_BODY_CAP;
    let kept = &body[..body.len().min(HISTORY_BODY_CAP)];
    (String::from_utf8_lossy(kept).into_owned(), truncated)
}

/// Reads the causation header of an incoming event: the ids of the events
/// that led to it, oldest first.
pub fn parse_causation(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_redacts_secrets_and_caps_bodies() {
        let headers = vec![
            ("Authorization".to_string(), "Bearer s3cret".to_string()),
            ("x-trace".to_string(), "1".to_string()),
        ];
        let body = vec![b'a'; HISTORY_BODY_CAP + 10];
        let record = request_record("http://x", &headers, &body);
        assert_eq!(record.headers["authorization"], "[redacted]");
        assert_eq!(record.headers["x-trace"], "1");
        assert!(record.truncated);
        assert_eq!(record.body.len(), HISTORY_BODY_CAP);
    }

    #[test]
    fn causation_chain_parses_ids_in_order() {
        assert_eq!(parse_causation("evt_a, evt_b,,"), ["evt_a", "evt_b"]);
        assert!(parse_causation("").is_empty());
    }
}
