//! Delivers only the events whose data has a given value at a given place.
//!
//! Config `pointer` is a JSON Pointer (RFC 6901) into the event data, such as
//! `/status` or `/owner/team`, and config `equals` the value to find there:
//! JSON if it parses as JSON (`true`, `3`, `"x"`), else a plain string. Both
//! are required. Matching events are sent unchanged; the others are skipped,
//! with a reason that says what was found instead.

use hookgate_sdk::{Event, Failure, Outgoing, Transform, Transformed};
use serde_json::Value;

struct ContentFilter;

impl Transform for ContentFilter {
    fn transform(event: Event, request: Outgoing) -> Result<Transformed, Failure> {
        let filter = Filter::new(required("pointer")?, &required("equals")?)?;
        Ok(match filter.mismatch(&event.json()?) {
            None => Transformed::Send(request),
            Some(reason) => Transformed::skip(reason),
        })
    }
}

hookgate_sdk::export!(ContentFilter: Transform);

fn required(key: &str) -> Result<String, Failure> {
    hookgate_sdk::config(key)
        .ok_or_else(|| Failure::bad_config(format!("config key {key:?} is required")))
}

struct Filter {
    pointer: String,
    expected: Value,
}

impl Filter {
    fn new(pointer: String, equals: &str) -> Result<Self, Failure> {
        // `Value::pointer` finds nothing with such a pointer; say so now
        // instead of skipping every event as "missing".
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(Failure::bad_config(format!(
                "config key \"pointer\" has value {pointer:?}, which is not a JSON Pointer: \
                 it must be empty or start with '/'"
            )));
        }
        let expected =
            serde_json::from_str(equals).unwrap_or_else(|_| Value::String(equals.to_owned()));
        Ok(Self { pointer, expected })
    }

    /// Why `data` does not match, or `None` if it does.
    fn mismatch(&self, data: &Value) -> Option<String> {
        let found = match data.pointer(&self.pointer) {
            Some(found) if *found == self.expected => return None,
            Some(found) => found.to_string(),
            None => "missing".to_owned(),
        };
        Some(format!(
            "event data at {:?} is {found}, not the expected {}",
            self.pointer, self.expected
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(pointer: &str, equals: &str) -> Filter {
        Filter::new(pointer.into(), equals).unwrap()
    }

    #[test]
    fn a_value_equal_to_the_expected_json_matches() {
        let data = json!({ "owner": { "team": "payments", "size": 3, "active": true } });
        assert_eq!(filter("/owner/size", "3").mismatch(&data), None);
        assert_eq!(filter("/owner/active", "true").mismatch(&data), None);
        assert_eq!(filter("/owner/team", r#""payments""#).mismatch(&data), None);
    }

    #[test]
    fn an_expected_value_that_is_not_json_is_a_string() {
        let data = json!({ "status": "active" });
        assert_eq!(filter("/status", "active").mismatch(&data), None);
    }

    #[test]
    fn a_different_value_is_skipped_saying_what_was_found() {
        let data = json!({ "status": "archived" });
        assert_eq!(
            filter("/status", "active").mismatch(&data).unwrap(),
            r#"event data at "/status" is "archived", not the expected "active""#
        );
    }

    #[test]
    fn a_missing_value_is_skipped_as_missing() {
        assert_eq!(
            filter("/status", "active").mismatch(&json!({})).unwrap(),
            r#"event data at "/status" is missing, not the expected "active""#
        );
    }

    #[test]
    fn a_pointer_without_a_leading_slash_is_bad_config() {
        let failure = Filter::new("status".into(), "active").err().unwrap();
        assert_eq!(failure.code, "bad-config");
    }
}
