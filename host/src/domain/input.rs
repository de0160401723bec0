//! Checks shared by the services that accept tenant input. Each failure is
//! a 422 naming the field.

use super::{Error, Result};

/// How deeply tenant documents (JSON bodies, event data, imported YAML) may
/// nest. Deep nesting buys nothing real, and every parser and decoder that
/// recurses is one stack frame per level; one limit, checked where input
/// enters, keeps everything Hookgate stores well within what it can read
/// back (the stored records wrap an event's data in three more levels).
pub const MAX_NESTING: usize = 64;

/// A non-empty, single-line text of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An identifier: 1 to `max` characters of letters, digits and `_.:-`.
/// Used where values become storage keys or URL path segments.
pub fn identifier(field: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("must be 1 to {max} letters, digits or `_.:-`, got `{value}`"),
        ))
    }
}

/// An absolute http or https URL with a host.
pub fn http_url(field: &str, value: &str) -> Result<url::Url> {
    let url = url::Url::parse(value)
        .map_err(|e| Error::invalid(field, format!("is not a valid URL ({e}): `{value}`")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            field,
            format!("must use http or https, not `{}`", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "must name a host"));
    }
    Ok(url)
}

/// Refuses a JSON text nested deeper than [`MAX_NESTING`], in one linear
/// pass that never recurses, before any parser sees it.
pub fn json_nesting(bytes: &[u8]) -> Result<()> {
    check_nesting(bytes, b"", "JSON")
}

/// Refuses a YAML (or JSON) text whose flow collections, `[` and `{`, nest
/// deeper than [`MAX_NESTING`], in one linear pass. The YAML parser's time
/// grows with the square of that depth, so this is checked before it runs.
pub fn yaml_nesting(bytes: &[u8]) -> Result<()> {
    check_nesting(bytes, b"'", "YAML")
}

/// The nesting scan: `[` and `{` open a level, `]` and `}` close one,
/// except inside double-quoted strings (with backslash escapes) and, for
/// YAML, single-quoted ones.
fn check_nesting(bytes: &[u8], other_quotes: &[u8], what: &str) -> Result<()> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (at, &byte) in bytes.iter().enumerate() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if byte == b'\\' && open == b'"' {
                escaped = true;
            } else if byte == open {
                quote = None;
            }
            continue;
        }
        match byte {
            b'"' => quote = Some(byte),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Error::invalid(
                        "",
                        format!(
                            "the {what} document nests deeper than {MAX_NESTING} levels (at byte \
                             {at}); Hookgate accepts at most {MAX_NESTING}"
                        ),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            other if other_quotes.contains(&other) => quote = Some(other),
            _ => {}
        }
    }
    Ok(())
}

/// Reads a time given as RFC 3339 or as milliseconds since the epoch;
/// `None` when not given.
pub fn instant(field: &str, value: Option<&str>) -> Result<Option<u64>> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(Some(ms));
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(d.as_millis() as u64))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("`{value}` is neither RFC 3339 nor milliseconds since the epoch"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let at_limit = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(json_nesting(at_limit.as_bytes()).is_ok());
        let over = format!("[{at_limit}]");
        let err = json_nesting(over.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("deeper than 64 levels"), "{err}");
        let quoted = format!("{{\"a\": \"{}\\\"[[\"}}", "[".repeat(200));
        assert!(json_nesting(quoted.as_bytes()).is_ok(), "{quoted}");
        let yaml = format!("a: '{}'\nb: [[x]]", "{".repeat(200));
        assert!(yaml_nesting(yaml.as_bytes()).is_ok());
        assert!(yaml_nesting(format!("a: {}", "[".repeat(40_000)).as_bytes()).is_err());
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(http_url("url", "https://example.com/hook").is_ok());
        let err = http_url("url", "ftp://example.com")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "url: must use http or https, not `ftp`");
        assert!(http_url("url", "not a url").is_err());
    }

    #[test]
    fn identifiers_refuse_slashes_and_spaces() {
        assert!(identifier("id", "evt_01:a.b-c", 128).is_ok());
        assert!(identifier("id", "a/b", 128).is_err());
        assert!(identifier("id", "", 128).is_err());
        assert!(text("name", "  ", 10).is_err());
        assert!(text("name", "ok", 10).is_ok());
    }
}
