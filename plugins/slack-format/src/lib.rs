//! Delivers events as Slack incoming-webhook messages: the body becomes
//! `{"text": "app \"weather-app\" was created by alice"}`.
//!
//! The object is named by its `name`, else its `id`, else the event id.

use hookgate_sdk::{Event, Failure, Outgoing, Transform, Transformed};
use serde_json::{Value, json};

struct SlackFormat;

impl Transform for SlackFormat {
    fn transform(event: Event, mut request: Outgoing) -> Result<Transformed, Failure> {
        request.set_json(&json!({ "text": text(&event, &event.json()?) }))?;
        request.set_header("content-type", "application/json");
        request.set_header("x-hookgate-format", "slack");
        Ok(Transformed::Send(request))
    }
}

hookgate_sdk::export!(SlackFormat: Transform);

/// One sentence about `event`, whose parsed data is `payload`.
fn text(event: &Event, payload: &Value) -> String {
    let label = ["name", "id"]
        .into_iter()
        .find_map(|key| match payload.get(key) {
            Some(Value::String(label)) => Some(label.clone()),
            Some(Value::Number(label)) => Some(label.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| event.id.clone());
    let mut text = format!("{} \"{label}\" was {}", event.object_type, event.action);
    if let Some(actor) = &event.actor {
        text.push_str(" by ");
        text.push_str(actor);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_sdk::Phase;

    fn event(actor: Option<&str>) -> Event {
        Event {
            id: "evt_1".into(),
            object_type: "app".into(),
            action: "created".into(),
            phase: Phase::After,
            actor: actor.map(Into::into),
            timestamp_ms: 0,
            data: String::new(),
        }
    }

    #[test]
    fn the_object_is_named_by_its_name_and_the_actor_is_credited() {
        let payload = json!({ "name": "weather-app", "id": "app_1" });
        assert_eq!(
            text(&event(Some("alice")), &payload),
            r#"app "weather-app" was created by alice"#
        );
    }

    #[test]
    fn without_a_name_the_id_is_used_and_without_an_actor_nobody_is_credited() {
        assert_eq!(
            text(&event(None), &json!({ "id": 42 })),
            r#"app "42" was created"#
        );
    }

    #[test]
    fn without_a_name_or_an_id_the_event_id_is_used() {
        assert_eq!(text(&event(None), &json!([])), r#"app "evt_1" was created"#);
    }
}
