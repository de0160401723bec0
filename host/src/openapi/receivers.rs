//! The OpenAPI 3.1 document a receiver's developer needs: one `webhooks`
//! entry per event type a tenant has callbacks for, with the payload, the
//! signature headers and what each response status makes Hookgate do.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::{Callback, Phase};
use crate::outbound::CAUSATION_HEADER;

/// The receivers' document for a tenant's callbacks. Disabled callbacks
/// count too: they may be enabled again, and receivers should be ready.
pub fn document(tenant_id: &str, callbacks: &[Callback]) -> Value {
    let mut types: BTreeMap<String, Vec<&Callback>> = BTreeMap::new();
    for callback in callbacks {
        for action in &callback.actions {
            types
                .entry(format!("{}.{action}", callback.object_type))
                .or_default()
                .push(callback);
        }
    }
    let webhooks: serde_json::Map<String, Value> = types
        .iter()
        .map(|(kind, users)| (kind.clone(), json!({ "post": operation(kind, users) })))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Hookgate webhooks of tenant {tenant_id}"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What Hookgate POSTs to this tenant's callback URLs. After-events are \
                signed with Standard Webhooks headers and delivered at least once: deduplicate on \
                `webhook-id`. Before-events are sent once, and the answer's status allows or \
                denies the change.",
        },
        "webhooks": webhooks,
        "components": {
            "schemas": { "Event": event_schema() },
            "headers": { "Retry-After": {
                "description": "Seconds (or an HTTP date) to wait before the next attempt; honoured up to a configured cap.",
                "schema": { "type": "string" },
            }},
        },
    })
}

fn operation(kind: &str, users: &[&Callback]) -> Value {
    let (object_type, action) = kind.rsplit_once('.').unwrap_or((kind, ""));
    let sent_by: Vec<String> = users
        .iter()
        .map(|c| format!("`{}` ({})", c.name, c.phase.as_str()))
        .collect();
    json!({
        "operationId": kind,
        "summary": format!("{object_type} {action}"),
        "description": format!("Sent by callbacks {}.", sent_by.join(", ")),
        "parameters": parameters(),
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "allOf": [
                    { "$ref": "#/components/schemas/Event" },
                    { "properties": {
                        "type": { "const": kind },
                        "object_type": { "const": object_type },
                        "action": { "const": action },
                    }},
                ],
            }}},
        },
        "responses": responses(users),
    })
}

/// The headers every request carries: the causation chain and the
/// Standard Webhooks signature.
fn parameters() -> Vec<Value> {
    vec![
        header(
            CAUSATION_HEADER,
            "The chain of event ids that led here and its depth. Send it back on events you emit \
             in response, so that Hookgate can stop loops.",
            true,
        ),
        header(
            "webhook-id",
            "The message's id: for an after-event the delivery's, the same on every attempt \
             (deduplicate on it); for a before-event the activation's.",
            true,
        ),
        header(
            "webhook-timestamp",
            "Seconds since the Unix epoch when the request was signed.",
            true,
        ),
        header(
            "webhook-signature",
            "`v1,` then base64(HMAC-SHA256(secret, \"{webhook-id}.{webhook-timestamp}.{body}\")), \
             the secret being the base64 part of the callback's `whsec_` secret. During a secret \
             rotation two signatures are sent, separated by a space; accept either.",
            true,
        ),
    ]
}

/// What each answer does: the status a before-callback expects allows;
/// an after-event's status decides delivery, retry or unsubscription.
fn responses(users: &[&Callback]) -> serde_json::Map<String, Value> {
    let after = users.iter().any(|c| c.phase == Phase::After);
    let mut responses = serde_json::Map::new();
    let mut before = false;
    for callback in users.iter().filter(|c| c.phase == Phase::Before) {
        before = true;
        let status = callback.expected_status.unwrap_or(200).to_string();
        responses.insert(
            status.clone(),
            json!({ "description": format!(
                "Before-event: allows the change (callback `{}` expects {status}).",
                callback.name
            )}),
        );
    }
    if after {
        responses.insert(
            "2XX".into(),
            json!({ "description": "After-event: delivered." }),
        );
        responses.insert(
            "410".into(),
            json!({ "description": "After-event: gone. The callback is disabled, which unsubscribes the receiver." }),
        );
        for (code, what) in [
            ("408", "request timeout"),
            ("429", "too many requests"),
            ("5XX", "server error"),
        ] {
            responses.insert(
                code.into(),
                json!({
                    "description": format!("After-event: {what}; retried on the callback's schedule."),
                    "headers": { "Retry-After": { "$ref": "#/components/headers/Retry-After" } },
                }),
            );
        }
    }
    let default = match (after, before) {
        (true, false) => "After-event: any other status fails the delivery without retry.",
        (false, _) => "Before-event: any other status denies the change.",
        (true, true) => {
            "Before-event: any other status denies the change. After-event: any other status \
             fails the delivery without retry."
        }
    };
    responses.insert("default".into(), json!({ "description": default }));
    responses
}

fn header(name: &str, description: &str, required: bool) -> Value {
    json!({
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": { "type": "string" },
    })
}

/// The envelope every callback request carries, before any plugin
/// transform changes it.
fn event_schema() -> Value {
    json!({
        "type": "object",
        "required": ["type", "timestamp", "event_id", "object_type", "action", "phase", "data"],
        "properties": {
            "type": { "type": "string", "description": "`object_type.action`" },
            "timestamp": { "type": "string", "format": "date-time" },
            "event_id": { "type": "string" },
            "object_type": { "type": "string" },
            "action": { "type": "string" },
            "phase": { "type": "string", "enum": ["before", "after"] },
            "actor": { "type": ["string", "null"] },
            "data": { "description": "The object the event is about, as the emitter sent it." },
        },
    })
}
