//! Requests Hookgate sends to callback URLs: one shared client, the headers
//! every request carries, error classes a tenant can act on, and the
//! redacted, capped copies kept in history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::egress::{self, GuardedResolver};
use crate::event::Event;
use crate::model::{Callback, HttpRecord};
use crate::plugin::Outgoing;
use crate::signing::{self, BadSecret};

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
/// Headers whose values never reach history, whoever set them.
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "webhook-signature",
];
/// What history shows in place of a secret.
pub const REDACTED: &str = "***";

/// Headers that Hookgate sets itself, or that belong to the HTTP
/// connection: neither a callback's headers nor a plugin may set them. The
/// one list, applied by the one builder of outgoing requests.
pub const RESERVED_HEADERS: [&str; 13] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    CAUSATION_HEADER,
];

/// Whether `name` is one of the [`RESERVED_HEADERS`], in any case.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_HEADERS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}

/// A request for a callback URL, built the same way by the gate, delivery
/// and `plugin run`: the body and headers a plugin's transform left (or
/// the plain envelope), less any reserved header; the callback's own
/// headers, which replace same-named ones; the causation chain; and, once
/// [`Request::sign`] is called, the Standard Webhooks headers.
#[derive(Debug, Clone)]
pub struct Request {
    /// Where it goes.
    pub url: String,
    /// Every header sent, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as signed and sent.
    pub body: Vec<u8>,
    /// Headers whose values history replaces with [`REDACTED`]: the
    /// callback's own, which often carry credentials.
    secret_headers: Vec<String>,
}

impl Request {
    /// The plain request every callback starts from: the event's JSON
    /// envelope, before any transform.
    pub fn envelope(event: &Event) -> Outgoing {
        Outgoing {
            headers: vec![("content-type".into(), "application/json".into())],
            body: event.envelope().to_string().into_bytes(),
        }
    }

    /// Assembles the request from what the transform left, the callback's
    /// own headers and the causation chain (event ids, oldest first, ending
    /// with this event's).
    pub fn build(
        url: &str,
        transformed: Outgoing,
        own_headers: &BTreeMap<String, String>,
        causation: &str,
    ) -> Self {
        let mut headers: Vec<(String, String)> = transformed
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, _)| !is_reserved(name) && !own_headers.contains_key(name))
            .collect();
        headers.extend(
            own_headers
                .iter()
                .filter(|(name, _)| !is_reserved(name))
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
        );
        headers.push((CAUSATION_HEADER.into(), causation.to_string()));
        Request {
            url: url.to_string(),
            headers,
            body: transformed.body,
            secret_headers: own_headers.keys().map(|k| k.to_ascii_lowercase()).collect(),
        }
    }

    /// Signs the final body as Standard Webhooks does: `webhook-id` (the
    /// message id, the same on every attempt), `webhook-timestamp` (seconds)
    /// and one `webhook-signature` per secret.
    pub fn sign(
        &mut self,
        secrets: &[&str],
        message_id: &str,
        now_ms: u64,
    ) -> Result<(), BadSecret> {
        let timestamp = (now_ms / 1000) as i64;
        let signature = signing::header(secrets, message_id, timestamp, &self.body)?;
        self.headers
            .push(("webhook-id".into(), message_id.to_string()));
        self.headers
            .push(("webhook-timestamp".into(), timestamp.to_string()));
        self.headers.push(("webhook-signature".into(), signature));
        Ok(())
    }

    /// The request as history keeps it: credentials in the URL, secret
    /// headers and the callback's own header values redacted; body capped.
    pub fn record(&self) -> HttpRecord {
        let (body, truncated) = capped(&self.body);
        HttpRecord {
            url: Some(redact_url(&self.url)),
            status: None,
            headers: redacted(&self.headers, &self.secret_headers),
            body,
            truncated,
        }
    }
}

/// The secrets a callback signs with now: its current one, and during the
/// overlap after a rotation, the previous one too.
pub fn signing_secrets(callback: &Callback, now_ms: u64) -> Vec<&str> {
    let mut secrets = vec![callback.secret.as_str()];
    if let (Some(previous), Some(until)) = (
        &callback.previous_secret,
        callback.previous_secret_expires_at,
    ) && until > now_ms
    {
        secrets.push(previous);
    }
    secrets
}

/// Words that mark a query parameter's value as a credential, matched
/// against the parameter's name split at punctuation.
const CREDENTIAL_WORDS: [&str; 19] = [
    "token",
    "key",
    "apikey",
    "secret",
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "pass",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "session",
    "sessionid",
    "jwt",
    "bearer",
    "accesskey",
];

/// A URL fit for history and error messages: the userinfo password, and
/// the values of query parameters whose names look like credentials
/// (`token`, `api_key`, `X-Amz-Signature`, …), replaced by [`REDACTED`].
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(REDACTED));
    }
    if parsed.query_pairs().any(|(name, _)| is_credential(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_credential(&name) {
                    REDACTED.to_string()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn is_credential(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    CREDENTIAL_WORDS.contains(&lower.as_str())
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| CREDENTIAL_WORDS.contains(&word))
}

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
        let shown = redact_url(&url);
        let parsed = url::Url::parse(&url).map_err(|e| SendError {
            class: "config",
            message: format!("{shown} is not a valid URL: {e}"),
        })?;
        egress::check_literal(&parsed, self.allow_private).map_err(|blocked| SendError {
            class: "blocked",
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
            .map_err(|e| classify(&e.without_url(), &shown, timeout))
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

/// A response as history keeps it.
pub fn response_record(answer: &Answer) -> HttpRecord {
    let (body, truncated) = capped(&answer.body);
    HttpRecord {
        url: None,
        status: Some(answer.status),
        headers: redacted(&answer.headers, &[]),
        body,
        truncated,
    }
}

fn redacted(headers: &[(String, String)], also: &[String]) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let secret = SECRET_HEADERS.contains(&name.as_str()) || also.contains(&name);
            let value = if secret {
                REDACTED.to_string()
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
        let transformed = Outgoing {
            headers: vec![
                ("Authorization".to_string(), "Bearer s3cret".to_string()),
                ("x-trace".to_string(), "1".to_string()),
                ("Host".to_string(), "evil.example".to_string()),
                ("hookgate-causation".to_string(), "forged".to_string()),
            ],
            body: vec![b'a'; HISTORY_BODY_CAP + 10],
        };
        let own = BTreeMap::from([("x-partner-token".to_string(), "p4ss".to_string())]);
        let request = Request::build("http://u:pw@x/h?token=t&page=2", transformed, &own, "evt_1");
        let names: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "x-trace",
                "x-partner-token",
                CAUSATION_HEADER
            ],
            "reserved headers from a plugin are dropped"
        );
        assert_eq!(request.headers[3].1, "evt_1");
        let record = request.record();
        assert_eq!(record.headers["authorization"], REDACTED);
        assert_eq!(record.headers["x-partner-token"], REDACTED);
        assert_eq!(record.headers["x-trace"], "1");
        assert_eq!(
            record.url.as_deref(),
            Some("http://u:***@x/h?token=***&page=2")
        );
        assert!(record.truncated);
        assert_eq!(record.body.len(), HISTORY_BODY_CAP);
    }

    #[test]
    fn credential_like_query_values_are_redacted() {
        for (url, shown) in [
            ("https://x/?api_key=1&q=2", "https://x/?api_key=***&q=2"),
            (
                "https://x/?X-Amz-Signature=abc",
                "https://x/?X-Amz-Signature=***",
            ),
            (
                "https://x/?access_token=a&sessionId=b",
                "https://x/?access_token=***&sessionId=***",
            ),
            ("https://x/?monkey=1", "https://x/?monkey=1"),
            ("https://user@x/", "https://user@x/"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn causation_chain_parses_ids_in_order() {
        assert_eq!(parse_causation("evt_a, evt_b,,"), ["evt_a", "evt_b"]);
        assert!(parse_causation("").is_empty());
    }
}
