//! The one builder of outgoing requests, for the gate, delivery and
//! `plugin run` alike, and the headers only Hookgate may set.

use std::collections::BTreeMap;

use super::redact::{capped, redact_url, redacted};
use super::signing::{self, BadSecret};
use crate::model::{Callback, Event, HttpRecord};
use crate::plugin::Outgoing;

/// Carries the chain of event ids that led to a request, so that an event
/// emitted in reaction to it can be refused once the chain is too deep.
pub const CAUSATION_HEADER: &str = "hookgate-causation";

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
    /// Headers whose values history replaces with `***`: the
    /// callback's own, which often carry credentials.
    secret_headers: Vec<String>,
}

impl Request {
    /// The plain request every callback starts from: the event's JSON
    /// envelope, before any transform.
    pub fn envelope(event: &Event) -> Outgoing {
        Outgoing {
            headers: vec![("content-type".into(), "application/json".into())],
            body: event.envelope(),
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
    use crate::outbound::{HISTORY_BODY_CAP, REDACTED};

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
    fn causation_chain_parses_ids_in_order() {
        assert_eq!(parse_causation("evt_a, evt_b,,"), ["evt_a", "evt_b"]);
        assert!(parse_causation("").is_empty());
    }
}
