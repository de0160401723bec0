//! Checks shared by the services that accept tenant input. Each failure is
//! a 422 naming the field.

use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

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
