//! Events and verdicts: the vocabulary shared by the gate, delivery and plugins.

use serde::{Deserialize, Serialize};

/// When an event is emitted relative to the change it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before the change: the emitter waits for an allow or a deny.
    Before,
    /// After the change: the event is delivered to receivers as a webhook.
    After,
}

impl Phase {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

/// Something that happened, or is about to happen, in the host system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Stable across every delivery attempt, so receivers can deduplicate.
    pub id: String,
    /// The kind of object concerned, such as `app` or `api`.
    pub object_type: String,
    /// What happened to it: `created`, `updated`, `deleted`, or tenant-defined.
    pub action: String,
    /// Before or after the change.
    pub phase: Phase,
    /// Who caused it, if known.
    pub actor: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The object itself.
    pub data: serde_json::Value,
}

impl Event {
    /// The JSON body POSTed to callback URLs, before any plugin transform.
    ///
    /// One function builds it so that the gate, delivery and `plugin run`
    /// show plugins exactly the same envelope. Every delivery makes one, so
    /// it is written straight from the event, with no copy of `data`.
    pub fn envelope(&self) -> Vec<u8> {
        let envelope = Envelope {
            action: &self.action,
            actor: self.actor.as_deref(),
            data: &self.data,
            event_id: &self.id,
            object_type: &self.object_type,
            phase: self.phase,
            timestamp: rfc3339(self.timestamp_ms),
            kind: format!("{}.{}", self.object_type, self.action),
        };
        serde_json::to_vec(&envelope).expect("an envelope has only string keys")
    }
}

/// The envelope's fields, in the alphabetical order its body has always
/// had on the wire.
#[derive(Serialize)]
struct Envelope<'a> {
    action: &'a str,
    actor: Option<&'a str>,
    data: &'a serde_json::Value,
    event_id: &'a str,
    object_type: &'a str,
    phase: Phase,
    timestamp: String,
    #[serde(rename = "type")]
    kind: String,
}

/// An event as a client submits it: `id` and the timestamp are optional and
/// filled in by [`NewEvent::into_event`].
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"object_type": "app", "action": "created", "phase": "after",
           "actor": "alice", "data": {"name": "shop", "owner": "alice"}}),
    json!({"id": "app-42-create", "object_type": "app", "action": "created", "phase": "before",
           "data": {"name": "shop"}})
))]
pub struct NewEvent {
    /// Client-chosen id, used as an idempotency key.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub id: Option<String>,
    /// The kind of object concerned.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
    pub object_type: String,
    /// What happened to it.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
    pub action: String,
    /// Before or after the change.
    pub phase: Phase,
    /// Who caused it.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub actor: Option<String>,
    /// The object itself.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl NewEvent {
    /// Completes the event with a fresh `evt_` id if none was given, and the
    /// given timestamp.
    pub fn into_event(self, timestamp_ms: u64) -> Event {
        Event {
            id: self
                .id
                .unwrap_or_else(|| format!("evt_{}", ulid::Ulid::new())),
            object_type: self.object_type,
            action: self.action,
            phase: self.phase,
            actor: self.actor,
            timestamp_ms,
            data: self.data,
        }
    }
}

/// The answer to a before-event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// Let the change go ahead.
    Allow,
    /// Refuse the change, saying why.
    Deny(String),
}

/// Formats milliseconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(timestamp_ms: u64) -> String {
    let secs = (timestamp_ms / 1000) as i64;
    let millis = timestamp_ms % 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_649_367_553_123), "2022-04-07T21:39:13.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn envelope_carries_type_and_data() {
        let event = Event {
            id: "evt_1".into(),
            object_type: "app".into(),
            action: "created".into(),
            phase: Phase::After,
            actor: Some("alice".into()),
            timestamp_ms: 0,
            data: serde_json::json!({"name": "weather"}),
        };
        let body = String::from_utf8(event.envelope()).unwrap();
        assert_eq!(
            body,
            r#"{"action":"created","actor":"alice","data":{"name":"weather"},"event_id":"evt_1","object_type":"app","phase":"after","timestamp":"1970-01-01T00:00:00.000Z","type":"app.created"}"#
        );
    }
}
