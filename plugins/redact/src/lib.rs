//! Removes sensitive keys from delivered bodies: every object key named in
//! config `fields` (comma separated, default `password,@metadata`) goes,
//! wherever it is in the body, including inside arrays.

use hookgate_sdk::{Event, Failure, Outgoing, Transform, Transformed};
use serde_json::Value;

struct Redact;

impl Transform for Redact {
    fn transform(_event: Event, mut request: Outgoing) -> Result<Transformed, Failure> {
        let fields = hookgate_sdk::config_or("fields", "password,@metadata");
        let fields = parse_fields(&fields);
        let mut body = request.json()?;
        redact(&mut body, &fields);
        request.set_json(&body)?;
        Ok(Transformed::Send(request))
    }
}

hookgate_sdk::export!(Redact: Transform);

/// Splits a comma-separated list, trimming whitespace and dropping empty
/// names so that `"a, b,"` means `a` and `b`.
fn parse_fields(fields: &str) -> Vec<&str> {
    fields
        .split(',')
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .collect()
}

fn redact(value: &mut Value, fields: &[&str]) {
    match value {
        Value::Object(object) => {
            object.retain(|key, _| !fields.contains(&key.as_str()));
            for member in object.values_mut() {
                redact(member, fields);
            }
        }
        Value::Array(items) => {
            for item in items {
                redact(item, fields);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_trimmed_and_empty_names_dropped() {
        assert_eq!(
            parse_fields(" password , @metadata,,"),
            ["password", "@metadata"]
        );
    }

    #[test]
    fn named_keys_are_removed_at_any_depth_including_inside_arrays() {
        let mut body = json!({
            "password": "top",
            "data": {
                "name": "alice",
                "credentials": [{ "password": "s3cret", "kind": "basic" }],
                "@metadata": { "etag": "1" },
            },
        });
        redact(&mut body, &["password", "@metadata"]);
        assert_eq!(
            body,
            json!({ "data": { "name": "alice", "credentials": [{ "kind": "basic" }] } })
        );
    }

    #[test]
    fn string_values_equal_to_a_field_name_are_kept() {
        let mut body = json!({ "hint": "password", "list": ["password"] });
        let expected = body.clone();
        redact(&mut body, &["password"]);
        assert_eq!(body, expected);
    }
}
