//! What history keeps of a request or a response: the values of secret
//! headers, passwords in URLs and credential-like query values replaced
//! by [`REDACTED`], and bodies cut at [`HISTORY_BODY_CAP`]. History is
//! readable with a `read` key, so it never shows a secret.

use std::collections::BTreeMap;

use super::Answer;
use crate::model::HttpRecord;

/// Bytes of a body kept in history.
pub const HISTORY_BODY_CAP: usize = 4 * 1024;

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

/// Headers with the values of secret ones, and of those named in `also`,
/// replaced by [`REDACTED`].
pub(super) fn redacted(headers: &[(String, String)], also: &[String]) -> BTreeMap<String, String> {
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

/// A body as history keeps it, and whether it was cut.
pub(super) fn capped(body: &[u8]) -> (String, bool) {
    let truncated = body.len() > HISTORY_BODY_CAP;
    let kept = &body[..body.len().min(HISTORY_BODY_CAP)];
    (String::from_utf8_lossy(kept).into_owned(), truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
