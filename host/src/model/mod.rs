//! The records Hookgate keeps: tenants, keys, plugins, callbacks, events,
//! deliveries and activations. They are what storage persists and what the
//! API shows, so every field here is part of the API. This module is the
//! bottom of the crate: plain data, depending on nothing else in it.

pub mod event;
pub mod ids;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::event::{Event, NewEvent, Phase, Verdict};

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

impl Role {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manage => "manage",
            Role::Emit => "emit",
            Role::Read => "read",
        }
    }
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
    /// The hooks it exports, of `transform`, `decide` and `judge`: only
    /// these run, and a callback that needs another refuses the plugin.
    pub exports: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Whether it is ready to run. Versions stored before states existed
    /// were compiled at upload, so they read as ready.
    #[serde(default = "PluginState::ready")]
    pub state: PluginState,
    /// Why compiling failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a plugin version is between upload and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Validated and stored; being compiled, off the upload's request path.
    Compiling,
    /// Compiled: callbacks run it.
    Ready,
    /// Could not be compiled; `error` says why. Callbacks using it deny
    /// (before) or fail (after) with that reason.
    Failed,
}

impl PluginState {
    fn ready() -> Self {
        PluginState::Ready
    }
}

/// The plugin a callback runs, and its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRef {
    /// A plugin version id.
    pub id: String,
    /// Values the plugin reads with `config(key)`: strings, numbers or
    /// booleans, kept as written so that an edit shows them as they were.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

impl PluginRef {
    /// The configuration as the plugin reads it: every value as text, a
    /// string as itself and a number or boolean as written in JSON.
    pub fn config_text(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect()
    }
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
    pub spec: CallbackInput,
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
    /// The outcome of that run.
    pub last_status: Option<ActivationOutcome>,
}

impl LastRun {
    /// What the newest activation says about the last run.
    pub fn from_latest(latest: Option<&Activation>) -> Self {
        LastRun {
            last_triggered_at: latest.map(|a| a.at),
            last_status: latest.map(|a| a.outcome),
        }
    }
}

/// A before-callback's ruling on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ruling {
    /// The change may go ahead, as far as this callback is concerned.
    Allow,
    /// The change is refused.
    Deny,
}

/// One before-callback's part in a gate decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// The callback.
    pub callback_id: String,
    /// Its name at the time.
    pub callback_name: String,
    /// Its ruling.
    pub verdict: Ruling,
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
    /// The events endpoint's answer, rebuilt from the record, so a
    /// repeated event id gets exactly the original.
    pub fn answer(&self) -> EventAnswer {
        match self.event.phase {
            Phase::Before => EventAnswer::Gate {
                event_id: self.event.id.clone(),
                allowed: self.decisions.iter().all(|d| d.verdict == Ruling::Allow),
                decisions: self.decisions.clone(),
            },
            Phase::After => EventAnswer::Accepted {
                event_id: self.event.id.clone(),
                deliveries: self.deliveries.clone(),
            },
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

/// One hour of a callback's delivery attempts, counted as each attempt is
/// recorded, so that health figures never scan history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HourCount {
    /// Start of the hour, in ms since the epoch.
    pub at: u64,
    /// Attempts the receiver took.
    pub succeeded: u64,
    /// Attempts that failed or were blocked.
    pub failed: u64,
}

impl HourCount {
    /// Milliseconds in the hours these count.
    pub const HOUR_MS: u64 = 3_600_000;

    /// The count one attempt adds, if it counts. A skipped attempt does
    /// not, nor one Hookgate never made because its callback was disabled
    /// or deleted: neither says anything about the receiver.
    pub fn of(attempt: &Activation) -> Option<HourCount> {
        let never_made = match attempt.error_class {
            Some(ErrorClass::Disabled) => true,
            Some(ErrorClass::Gone) => attempt.request.is_none(),
            _ => false,
        };
        if never_made {
            return None;
        }
        let (succeeded, failed) = match attempt.outcome {
            ActivationOutcome::Succeeded => (1, 0),
            ActivationOutcome::Failed | ActivationOutcome::Blocked => (0, 1),
            _ => return None,
        };
        attempt.delivery_id.as_ref()?;
        Some(HourCount {
            at: attempt.at - attempt.at % Self::HOUR_MS,
            succeeded,
            failed,
        })
    }

    /// Adds another count of the same hour.
    pub fn add(&mut self, other: &HourCount) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
    }

    /// Attempts of either outcome.
    pub fn attempts(&self) -> u64 {
        self.succeeded + self.failed
    }

    /// Adds up the counts that share a key: one sum per callback and hour,
    /// say, however many attempts share it.
    pub fn tally<K: Ord>(
        counts: impl IntoIterator<Item = (K, HourCount)>,
    ) -> BTreeMap<K, HourCount> {
        let mut sums: BTreeMap<K, HourCount> = BTreeMap::new();
        for (key, count) in counts {
            sums.entry(key)
                .and_modify(|sum| sum.add(&count))
                .or_insert(count);
        }
        sums
    }
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
    /// That callback's name when the event came; empty in events stored
    /// before names were kept.
    #[serde(default)]
    pub callback_name: String,
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
    /// How it went.
    pub outcome: ActivationOutcome,
    /// HTTP status, when a URL answered.
    pub status: Option<u16>,
    /// How long it took.
    pub duration_ms: f64,
    /// The class of error, when something went wrong.
    pub error_class: Option<ErrorClass>,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// The request sent, if any.
    pub request: Option<HttpRecord>,
    /// The response received, if any.
    pub response: Option<HttpRecord>,
    /// When the next attempt is due, if one is scheduled.
    pub next_attempt_at: Option<u64>,
}

/// How one run of a callback went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActivationOutcome {
    /// A before-callback allowed the event.
    Allow,
    /// A before-callback denied it.
    Deny,
    /// A delivery attempt reached the receiver, which took it.
    Succeeded,
    /// A delivery attempt failed.
    Failed,
    /// A plugin chose not to send the delivery.
    Skipped,
    /// The target address is not allowed.
    Blocked,
}

impl ActivationOutcome {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationOutcome::Allow => "allow",
            ActivationOutcome::Deny => "deny",
            ActivationOutcome::Succeeded => "succeeded",
            ActivationOutcome::Failed => "failed",
            ActivationOutcome::Skipped => "skipped",
            ActivationOutcome::Blocked => "blocked",
        }
    }
}

impl From<DeliveryStatus> for ActivationOutcome {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Succeeded => ActivationOutcome::Succeeded,
            // An attempt that leaves its delivery pending failed.
            DeliveryStatus::Pending | DeliveryStatus::Failed => ActivationOutcome::Failed,
            DeliveryStatus::Skipped => ActivationOutcome::Skipped,
            DeliveryStatus::Blocked => ActivationOutcome::Blocked,
        }
    }
}

/// What kind of thing went wrong, so that a tenant can tell a broken
/// receiver from a policy or a plugin at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No answer within the timeout.
    Timeout,
    /// Nothing listens at the address.
    ConnectionRefused,
    /// The host name does not resolve.
    UnknownHost,
    /// Another failure to connect.
    Connect,
    /// The exchange broke off.
    Io,
    /// The egress guard refused the address.
    Blocked,
    /// The callback is misconfigured (a bad URL, a bad secret).
    Config,
    /// The receiver answered a status that means failure.
    Status,
    /// A plugin failed.
    Plugin,
    /// A plugin's judge overruled the answer.
    Judged,
    /// The receiver unsubscribed, or the callback or event is gone.
    Gone,
    /// The callback is disabled.
    Disabled,
    /// A plugin chose not to send.
    Skipped,
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

/// A callback as a tenant writes it, for create, replace and patch; also
/// the unrendered body of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"name": "crm-sync", "object_type": "app", "phase": "after",
           "actions": ["created", "updated"], "url": "https://crm.example/hooks/apps"}),
    json!({"name": "naming-policy", "object_type": "app", "phase": "before",
           "url": "https://policy.example/check", "expected_status": 200, "timeout_ms": 2000})
))]
pub struct CallbackInput {
    /// Unique within the tenant; before-callbacks run in name order.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// The object type it listens to.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
    pub object_type: String,
    /// `before` or `after`.
    pub phase: Phase,
    /// Actions it listens to; all three standard ones when absent.
    #[serde(default = "default_actions")]
    #[schema(schema_with = actions_schema)]
    pub actions: Vec<String>,
    /// Where to POST: an absolute http or https URL (in a template, one
    /// that may hold runtime expressions).
    #[serde(default)]
    pub url: Option<String>,
    /// The status a before-callback's URL must answer (default 200).
    #[serde(default)]
    #[schema(minimum = 100, maximum = 599)]
    pub expected_status: Option<u16>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether it runs.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The plugin it runs and its configuration. It must export the hook
    /// the callback calls: `transform` for an after-callback, `decide` for
    /// a before-callback with no URL.
    #[serde(default)]
    pub plugin: Option<PluginInput>,
    /// Request timeout in milliseconds.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60000)]
    pub timeout_ms: Option<u64>,
    /// Retry policy, for after-callbacks.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

/// How `actions` is documented: a list of the identifiers that events
/// name their actions with, which a derived schema cannot say of a list's
/// items.
fn actions_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[A-Za-z0-9_.:-]{1,64}$")),
        )
        .min_items(Some(1))
        .description(Some(
            "Actions it listens to; all three standard ones when absent.",
        ))
        .build()
}

/// A plugin reference as written: config values may be strings, numbers or
/// booleans, and reach the plugin as strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginInput {
    /// A plugin version id.
    pub id: String,
    /// The plugin's configuration.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// Actions a callback listens to when it does not say.
const DEFAULT_ACTIONS: [&str; 3] = ["created", "updated", "deleted"];

/// The three standard actions, which a callback listens to by default.
pub fn default_actions() -> Vec<String> {
    DEFAULT_ACTIONS.map(String::from).to_vec()
}

fn enabled_by_default() -> bool {
    true
}

impl CallbackInput {
    /// The writable fields of a callback, as input.
    pub fn of(callback: &Callback) -> Self {
        CallbackInput {
            name: callback.name.clone(),
            object_type: callback.object_type.clone(),
            phase: callback.phase,
            actions: callback.actions.clone(),
            url: callback.url.clone(),
            expected_status: callback.expected_status,
            headers: callback.headers.clone(),
            enabled: callback.enabled,
            plugin: callback.plugin.as_ref().map(|p| PluginInput {
                id: p.id.clone(),
                config: p.config.clone(),
            }),
            timeout_ms: callback.timeout_ms,
            retry: callback.retry.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(outcome: ActivationOutcome, class: Option<ErrorClass>, sent: bool) -> Activation {
        Activation {
            id: "act_1".into(),
            tenant_id: "ten_1".into(),
            callback_id: "cb_1".into(),
            event_id: "evt_1".into(),
            delivery_id: Some("dlv_1".into()),
            attempt: Some(1),
            at: 3 * HourCount::HOUR_MS + 5,
            outcome,
            status: None,
            duration_ms: 1.0,
            error_class: class,
            error: None,
            request: sent.then(|| HttpRecord {
                url: Some("http://127.0.0.1/".into()),
                status: None,
                headers: BTreeMap::new(),
                body: String::new(),
                truncated: false,
            }),
            response: None,
            next_attempt_at: None,
        }
    }

    #[test]
    fn only_attempts_made_count_into_their_hour() {
        let ok = HourCount::of(&attempt(ActivationOutcome::Succeeded, None, true)).unwrap();
        assert_eq!(
            (ok.at, ok.succeeded, ok.failed),
            (3 * HourCount::HOUR_MS, 1, 0)
        );
        let status = attempt(ActivationOutcome::Failed, Some(ErrorClass::Status), true);
        assert_eq!(HourCount::of(&status).map(|c| c.failed), Some(1));
        let unsubscribed = attempt(ActivationOutcome::Failed, Some(ErrorClass::Gone), true);
        assert_eq!(
            HourCount::of(&unsubscribed).map(|c| c.failed),
            Some(1),
            "a 410 was an answer"
        );
        for never in [
            attempt(ActivationOutcome::Failed, Some(ErrorClass::Disabled), false),
            attempt(ActivationOutcome::Failed, Some(ErrorClass::Gone), false),
            attempt(ActivationOutcome::Skipped, Some(ErrorClass::Skipped), false),
        ] {
            assert_eq!(HourCount::of(&never), None, "{:?}", never.error_class);
        }
    }
}
