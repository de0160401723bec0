//! Fills in a missing field of `app` payloads before delivery: the field named
//! by config `field` (default `language`) is set to the string in config
//! `value` (default `Java`) when the payload does not have it. A value that is
//! present, even `null`, is never overwritten.
//!
//! Events about other object types are sent unchanged.

use hookgate_sdk::{Event, Failure, Outgoing, Transform, Transformed};
use serde_json::Value;

struct AppDefaults;

impl Transform for AppDefaults {
    fn transform(event: Event, mut request: Outgoing) -> Result<Transformed, Failure> {
        if event.object_type != "app" {
            return Ok(Transformed::Send(request));
        }
        let field = hookgate_sdk::config_or("field", "language");
        let value = hookgate_sdk::config_or("value", "Java");
        let mut body = request.json()?;
        fill_in(&mut body, field, value)?;
        request.set_json(&body)?;
        Ok(Transformed::Send(request))
    }
}

hookgate_sdk::export!(AppDefaults: Transform);

/// Sets `field` of the payload in `body` to `value` unless it has the field.
///
/// The payload is the envelope's `data` member, or the whole body when the
/// body is not an envelope (an earlier plugin may have replaced it).
fn fill_in(body: &mut Value, field: String, value: String) -> Result<(), Failure> {
    let payload = match body {
        Value::Object(envelope) if envelope.contains_key("data") => &mut envelope["data"],
        body => body,
    };
    let Value::Object(payload) = payload else {
        return Err(Failure::bad_data("the app payload is not a JSON object"));
    };
    payload.entry(field).or_insert(Value::String(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filled(mut body: Value) -> Value {
        fill_in(&mut body, "language".into(), "Java".into()).unwrap();
        body
    }

    #[test]
    fn a_missing_field_of_the_envelope_data_is_filled_in() {
        assert_eq!(
            filled(json!({ "type": "app.created", "data": { "name": "weather-app" } })),
            json!({ "type": "app.created", "data": { "name": "weather-app", "language": "Java" } })
        );
    }

    #[test]
    fn a_present_field_is_kept_even_when_null() {
        let body = json!({ "data": { "language": null } });
        assert_eq!(filled(body.clone()), body);
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_the_payload() {
        assert_eq!(
            filled(json!({ "name": "weather-app" })),
            json!({ "name": "weather-app", "language": "Java" })
        );
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_bad_data() {
        let failure =
            fill_in(&mut json!({ "data": [] }), "language".into(), "Java".into()).unwrap_err();
        assert_eq!(failure.code, "bad-data");
    }
}
