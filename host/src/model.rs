//! The records Hookgate keeps: tenants, keys, plugins, callbacks, events,
//! deliveries and activations. They are what the storage trait persists and
//! what the API shows, so every field here is part of the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Phase};

/// A customer of this Hookgate: everything else belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// `ten_…`
    pub id: String,
    /// Display name.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything within the tenant.
    Manage,
    /// Emit events only: the credential a host system, or a receiver calling
    /// back, uses.
    Emit,
    /// Read history only.
    Read,
}

/// A tenant API key. Only the hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// What the key is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the secret; never shown by the API.
    pub hash: String,
    /// The first characters of the secret, so people can tell keys apart.
    pub prefix: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// An uploaded plugin version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRecord {
    /// `plg_…`
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Name shared by all versions.
    pub name: String,
    /// 1 for the first upload of a name, then 2, 3, …
    pub version: u32,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Component size in bytes.
    pub size: usize,
    /// The component's function exports.
    pub exports: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// The plugin a callback runs, and its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRef {
    /// A plugin version id.
    pub id: String,
    /// Values the plugin reads with `config(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// How an after-callback's failed deliveries are retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means never retry.
    #[schema(minimum = 1, maximum = 50)]
    pub max_attempts: u32,
    /// Delay before each retry, in seconds; the last repeats if needed.
    #[serde(default)]
    pub schedule_secs: Vec<u64>,
}

/// A tenant's registration: run this for these events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Callback {
    /// `cb_…`
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Unique within the tenant; before-callbacks run in name order.
    pub name: String,
    /// The object type it listens to.
    pub object_type: String,
    /// Before or after.
    pub phase: Phase,
    /// The actions it listens to.
    pub actions: Vec<String>,
    /// Where to POST; optional for a before-callback that has a plugin.
    pub url: Option<String>,
    /// The status a before-callback's URL must answer to allow.
    pub expected_status: Option<u16>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Disabled callbacks are kept but never run.
    pub enabled: bool,
    /// Why it was disabled, when Hookgate disabled it.
    pub disabled_reason: Option<String>,
    /// The plugin it runs.
    pub plugin: Option<PluginRef>,
    /// Per-request timeout, overriding the default.
    pub timeout_ms: Option<u64>,
    /// Retry policy of an after-callback, overriding the default.
    pub retry: Option<RetryPolicy>,
    /// Signing secret, `whsec_…`.
    pub secret: String,
    /// The secret before the last rotation, still used to sign until
    /// `previous_secret_expires_at`, so receivers can switch over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// When the previous secret stops being used, in ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// Name of the key that created it.
    pub created_by: String,
    /// Name of the key that last changed it.
    pub updated_by: String,
    /// The subscription that made it, if one did; unsubscribing deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionRef>,
}

/// Marks a callback as made by a subscription, so that the subscription
/// lives exactly as long as its callback and needs no record of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionRef {
    /// `sub_…`
    pub id: String,
    /// The template it was made from.
    pub template_id: String,
    /// That template's name when it was made.
    pub template_name: String,
}

/// A callback with blanks: its URL and header values may hold OpenAPI
/// runtime expressions, filled from a subscription request to make a real
/// callback. Imported from an OpenAPI document's `callbacks`, or written
/// by hand.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Template {
    /// `tpl_…`
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// The callback it makes, unrendered.
    #[serde(flatten)]
    pub spec: crate::callbacks::CallbackInput,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// Name of the key that created it.
    pub created_by: String,
    /// Name of the key that last changed it.
    pub updated_by: String,
}

/// When a callback last ran and how it went, read from its newest
/// activation so that running a callback never rewrites its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct LastRun {
    /// Milliseconds since the Unix epoch.
    pub last_triggered_at: Option<u64>,
    /// The outcome: `allow`, `deny`, `succeeded`, `failed`, …
    pub last_status: Option<String>,
}

impl LastRun {
    /// What the newest activation says about the last run.
    pub fn from_latest(latest: Option<&Activation>) -> Self {
        LastRun {
            last_triggered_at: latest.map(|a| a.at),
            last_status: latest.map(|a| a.outcome.clone()),
        }
    }
}

/// One before-callback's part in a gate decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// The callback.
    pub callback_id: String,
    /// Its name at the time.
    pub callback_name: String,
    /// `allow` or `deny`.
    pub verdict: String,
    /// Why it denied, or what happened.
    pub reason: Option<String>,
    /// The URL's HTTP status, when one answered.
    pub status: Option<u16>,
    /// Time spent on this callback.
    pub duration_ms: f64,
    /// The activation that records it in full.
    pub activation_id: String,
}

/// An event as received, with the answer given, for history and idempotency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventRecord {
    /// Owner.
    pub tenant_id: String,
    /// The event.
    pub event: Event,
    /// The ids of the events that led to this one, oldest first.
    pub causation: Vec<String>,
    /// Gate decisions, for a before-event.
    pub decisions: Vec<Decision>,
    /// Deliveries created, for an after-event.
    pub deliveries: Vec<DeliveryRef>,
}

impl EventRecord {
    /// The events endpoint's answer: 200 with the gate's verdict for a
    /// before-event, 202 with the deliveries for an after-event. Rebuilt
    /// from the record, so a repeated event id gets exactly the original.
    pub fn answer(&self) -> (u16, EventAnswer) {
        match self.event.phase {
            Phase::Before => (
                200,
                EventAnswer::Gate {
                    event_id: self.event.id.clone(),
                    allowed: self.decisions.iter().all(|d| d.verdict == "allow"),
                    decisions: self.decisions.clone(),
                },
            ),
            Phase::After => (
                202,
                EventAnswer::Accepted {
                    event_id: self.event.id.clone(),
                    deliveries: self.deliveries.clone(),
                },
            ),
        }
    }
}

/// The events endpoint's answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventAnswer {
    /// A before-event's verdict: allowed unless a callback denied.
    Gate {
        /// The event.
        event_id: String,
        /// Whether the change may go ahead.
        allowed: bool,
        /// Each callback's part, in the order they ran.
        decisions: Vec<Decision>,
    },
    /// An after-event, stored with one pending delivery per callback.
    Accepted {
        /// The event.
        event_id: String,
        /// The deliveries made.
        deliveries: Vec<DeliveryRef>,
    },
}

/// How an after-callback has been faring, for auto-disable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Health {
    /// Deliveries that failed in a row.
    pub consecutive_failures: u32,
    /// When the current run of failures began, in ms since the epoch.
    pub failing_since: Option<u64>,
}

/// A delivery as an event lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryRef {
    /// The delivery.
    pub id: String,
    /// Where it goes.
    pub callback_id: String,
}

/// A request or response as history keeps it: secrets redacted, body capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HttpRecord {
    /// The URL, for a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The status, for a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Headers, with secret values replaced by `***`.
    pub headers: BTreeMap<String, String>,
    /// The body as text, cut at the history cap.
    pub body: String,
    /// Whether the body was cut.
    pub truncated: bool,
}

/// One run of a callback: a gate decision, or a delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activation {
    /// `act_…`, time-ordered.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// The callback that ran.
    pub callback_id: String,
    /// The event it ran for.
    pub event_id: String,
    /// The delivery this attempt belongs to, for after-callbacks.
    pub delivery_id: Option<String>,
    /// Attempt number within the delivery, from 1.
    pub attempt: Option<u32>,
    /// Milliseconds since the Unix epoch, when it started.
    pub at: u64,
    /// `allow`, `deny`, `succeeded`, `failed`, `skipped`, `blocked`, …
    pub outcome: String,
    /// HTTP status, when a URL answered.
    pub status: Option<u16>,
    /// How long it took.
    pub duration_ms: f64,
    /// The class of error, such as `timeout` or `plugin`.
    pub error_class: Option<String>,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// The request sent, if any.
    pub request: Option<HttpRecord>,
    /// The response received, if any.
    pub response: Option<HttpRecord>,
    /// When the next attempt is due, if one is scheduled.
    pub next_attempt_at: Option<u64>,
}

/// State of an after-event's delivery to one callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver accepted it.
    Succeeded,
    /// Attempts exhausted, or a final error.
    Failed,
    /// A plugin chose not to send it.
    Skipped,
    /// The target address is not allowed.
    Blocked,
}

impl DeliveryStatus {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Blocked => "blocked",
        }
    }
}

/// An after-event on its way to one callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `dlv_…`; also the `webhook-id` on every attempt.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Where it goes.
    pub callback_id: String,
    /// What it carries.
    pub event_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// `attempts` when the current round of retries began: a replay starts
    /// a new round with the full retry policy.
    #[serde(default)]
    pub round_start: u32,
    /// The activations recording each attempt, oldest first.
    #[serde(default)]
    pub attempt_ids: Vec<String>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// Why it failed, was skipped or blocked.
    pub last_error: Option<String>,
}
