//! Callbacks: what tenants register, checked field by field, and the
//! queries the gate and delivery use to find the ones an event triggers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Phase, now_ms};
use crate::ids::{new_id, new_signing_secret};
use crate::input;
use crate::model::{Activation, Callback, LastRun, PluginRef, RetryPolicy, SubscriptionRef};
use crate::store::{Db, Storage, StoreResult};

/// Actions a callback listens to when it does not say.
const DEFAULT_ACTIONS: [&str; 3] = ["created", "updated", "deleted"];
/// Default expected status of a before-callback's URL.
const DEFAULT_EXPECTED_STATUS: u16 = 200;
/// Longest per-callback timeout, in milliseconds.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// A callback as a tenant writes it, for create, replace and patch.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
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
    #[schema(min_items = 1)]
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
    /// The plugin it runs and its configuration.
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

/// A plugin reference as written: config values may be strings, numbers or
/// booleans, and reach the plugin as strings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginInput {
    /// A plugin version id.
    pub id: String,
    /// The plugin's configuration.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// The three standard actions, which a callback listens to by default.
pub fn default_actions() -> Vec<String> {
    DEFAULT_ACTIONS.map(String::from).to_vec()
}

fn enabled_by_default() -> bool {
    true
}

/// A callback as the API shows it: the record and when it last ran.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallbackView {
    /// The callback.
    #[serde(flatten)]
    pub callback: Callback,
    /// When it last ran.
    #[serde(flatten)]
    pub last: LastRun,
}

/// Filters and paging for listing callbacks.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this object type.
    pub object_type: Option<String>,
    /// Only this phase.
    pub phase: Option<Phase>,
    /// Only enabled, or only disabled, callbacks.
    pub enabled: Option<bool>,
    /// Only names containing this text, ignoring case.
    pub q: Option<String>,
    /// Continue after this callback id.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Page size from a query, clamped to 1..=200.
pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, 200)
}

/// The callback service.
///
/// Each tenant's callbacks are cached in memory once read, because every
/// event needs them. This process is the only writer, and every write
/// through this service drops the tenant's entry.
#[derive(Clone)]
pub struct Callbacks {
    db: Db,
    cache: Arc<RwLock<HashMap<String, Arc<Vec<Callback>>>>>,
}

impl Callbacks {
    /// A service over `db`.
    pub fn new(db: Db) -> Self {
        Callbacks {
            db,
            cache: Arc::default(),
        }
    }

    /// All of a tenant's callbacks, oldest first, from the cache when
    /// possible.
    pub async fn all(&self, tenant: &str) -> Result<Arc<Vec<Callback>>> {
        if let Some(found) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return Ok(found.clone());
        }
        let t = tenant.to_string();
        let all = Arc::new(self.db.run(move |s| s.callbacks(&t)).await?);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), all.clone());
        Ok(all)
    }

    fn forget(&self, tenant: &str) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }

    /// Registers a callback with a fresh signing secret.
    pub async fn create(
        &self,
        tenant: &str,
        by: &str,
        input: CallbackInput,
    ) -> Result<CallbackView> {
        self.insert(tenant, by, input, None).await
    }

    /// Registers the callback a subscription made; unsubscribing deletes it.
    pub async fn subscribe(
        &self,
        tenant: &str,
        by: &str,
        input: CallbackInput,
        subscription: SubscriptionRef,
    ) -> Result<CallbackView> {
        self.insert(tenant, by, input, Some(subscription)).await
    }

    async fn insert(
        &self,
        tenant: &str,
        by: &str,
        input: CallbackInput,
        subscription: Option<SubscriptionRef>,
    ) -> Result<CallbackView> {
        let now = now_ms();
        let callback = Callback {
            id: new_id("cb"),
            tenant_id: tenant.to_string(),
            secret: new_signing_secret(),
            created_at: now,
            created_by: by.to_string(),
            subscription,
            ..self.build(tenant, by, input, now).await?
        };
        self.save(callback).await
    }

    /// Checks an input as [`Callbacks::create`] would, without storing it.
    pub async fn check(&self, tenant: &str, input: CallbackInput) -> Result<()> {
        self.build(tenant, "", input, 0).await.map(drop)
    }

    /// The callbacks subscriptions made, oldest first.
    pub async fn subscribed(&self, tenant: &str) -> Result<Vec<Callback>> {
        Ok(self
            .all(tenant)
            .await?
            .iter()
            .filter(|c| c.subscription.is_some())
            .cloned()
            .collect())
    }

    /// The callback a subscription made.
    pub async fn by_subscription(&self, tenant: &str, subscription_id: &str) -> Result<Callback> {
        self.all(tenant)
            .await?
            .iter()
            .find(|c| {
                c.subscription
                    .as_ref()
                    .is_some_and(|s| s.id == subscription_id)
            })
            .cloned()
            .ok_or_else(|| Error::not_found("subscription", subscription_id))
    }

    /// A callback from the in-memory cache, without its last run: what the
    /// delivery engine needs on its hot path.
    pub async fn cached(&self, tenant: &str, id: &str) -> Result<Option<Callback>> {
        Ok(self.all(tenant).await?.iter().find(|c| c.id == id).cloned())
    }

    /// One callback.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<CallbackView> {
        let callback = self.find(tenant, id).await?;
        let key = callback.id.clone();
        let t = tenant.to_string();
        let last = self.db.run(move |s| last_run(s, &t, &key)).await?;
        Ok(CallbackView { callback, last })
    }

    /// Replaces every writable field.
    pub async fn replace(
        &self,
        tenant: &str,
        id: &str,
        by: &str,
        input: CallbackInput,
    ) -> Result<CallbackView> {
        let old = self.find(tenant, id).await?;
        let new = self.build(tenant, by, input, now_ms()).await?;
        // A reason Hookgate recorded stays while the callback stays disabled.
        let disabled_reason = if new.enabled {
            None
        } else {
            old.disabled_reason
        };
        self.save(Callback {
            disabled_reason,
            id: old.id,
            secret: old.secret,
            previous_secret: old.previous_secret,
            previous_secret_expires_at: old.previous_secret_expires_at,
            created_at: old.created_at,
            created_by: old.created_by,
            subscription: old.subscription,
            ..new
        })
        .await
    }

    /// Applies a JSON merge patch (RFC 7386) to the callback's writable
    /// fields, then checks the result like a replace.
    pub async fn patch(
        &self,
        tenant: &str,
        id: &str,
        by: &str,
        patch: serde_json::Value,
    ) -> Result<CallbackView> {
        let serde_json::Value::Object(_) = patch else {
            return Err(Error::invalid("", "a patch must be a JSON object"));
        };
        let old = self.find(tenant, id).await?;
        let mut doc = serde_json::to_value(input_of(&old)).expect("inputs serialize");
        merge(&mut doc, patch);
        let input: CallbackInput = crate::api::from_value(doc)?;
        self.replace(tenant, id, by, input).await
    }

    /// Deletes a callback.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        let (t, key) = (tenant.to_string(), id.to_string());
        let deleted = self.db.write(move |s| s.delete_callback(&t, &key)).await?;
        self.forget(tenant);
        if deleted {
            Ok(())
        } else {
            Err(Error::not_found("callback", id))
        }
    }

    /// A filtered page of a tenant's callbacks, in creation order.
    pub async fn list(&self, tenant: &str, query: ListQuery) -> Result<Page<CallbackView>> {
        let all = self.all(tenant).await?;
        let needle = query.q.as_deref().map(str::to_lowercase);
        let limit = page_size(query.limit);
        let mut matching = all.iter().filter(|c| {
            query
                .object_type
                .as_ref()
                .is_none_or(|o| *o == c.object_type)
                && query.phase.is_none_or(|p| p == c.phase)
                && query.enabled.is_none_or(|e| e == c.enabled)
                && needle
                    .as_ref()
                    .is_none_or(|n| c.name.to_lowercase().contains(n))
                && query.cursor.as_ref().is_none_or(|cursor| c.id > *cursor)
        });
        let items: Vec<Callback> = matching.by_ref().take(limit).cloned().collect();
        let next_cursor = match matching.next() {
            Some(_) => items.last().map(|c| c.id.clone()),
            None => None,
        };
        let ids: Vec<String> = items.iter().map(|c| c.id.clone()).collect();
        let t = tenant.to_string();
        let lasts = self
            .db
            .run(move |s| {
                ids.iter()
                    .map(|id| last_run(s, &t, id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(Page {
            items: items
                .into_iter()
                .zip(lasts)
                .map(|(callback, last)| CallbackView { callback, last })
                .collect(),
            next_cursor,
        })
    }

    /// The enabled callbacks an event triggers; before-callbacks in name order.
    pub async fn matching(
        &self,
        tenant: &str,
        phase: Phase,
        object_type: &str,
        action: &str,
    ) -> Result<Vec<Callback>> {
        let mut found: Vec<Callback> = self
            .all(tenant)
            .await?
            .iter()
            .filter(|c| {
                c.enabled
                    && c.phase == phase
                    && c.object_type == object_type
                    && c.actions.iter().any(|a| a == action)
            })
            .cloned()
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// A callback's activations, newest first, continuing before `cursor`.
    pub async fn activations(
        &self,
        tenant: &str,
        id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<Activation>> {
        self.find(tenant, id).await?;
        let (t, key) = (tenant.to_string(), id.to_string());
        let mut items = self
            .db
            .run(move |s| s.activations(&t, &key, cursor.as_deref(), limit + 1))
            .await?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|a| a.id.clone())
        });
        Ok(Page {
            items,
            next_cursor: next_cursor.flatten(),
        })
    }

    /// Disables a callback, recording why; Hookgate does this when a
    /// receiver unsubscribes or deliveries keep failing.
    pub async fn disable(&self, tenant: &str, id: &str, reason: &str) -> Result<()> {
        let mut callback = self.find(tenant, id).await?;
        if !callback.enabled {
            return Ok(());
        }
        tracing::warn!(callback = %id, "disabling callback: {reason}");
        callback.enabled = false;
        callback.disabled_reason = Some(reason.to_string());
        callback.updated_at = now_ms();
        callback.updated_by = "hookgate".into();
        self.save(callback).await.map(drop)
    }

    /// Replaces the signing secret. The previous one keeps signing (both
    /// signatures are sent) for `overlap`, so receivers can switch over.
    pub async fn rotate_secret(
        &self,
        tenant: &str,
        id: &str,
        by: &str,
        overlap: std::time::Duration,
    ) -> Result<CallbackView> {
        let mut callback = self.find(tenant, id).await?;
        let now = now_ms();
        callback.previous_secret = Some(std::mem::replace(
            &mut callback.secret,
            new_signing_secret(),
        ));
        callback.previous_secret_expires_at = Some(now + overlap.as_millis() as u64);
        callback.updated_at = now;
        callback.updated_by = by.to_string();
        self.save(callback).await
    }

    /// Refuses to let a plugin in use be deleted, unless `force`; then the
    /// callbacks using it are disabled, with the reason recorded.
    pub async fn release_plugin(&self, tenant: &str, plugin_id: &str, force: bool) -> Result<()> {
        let users: Vec<Callback> = self
            .all(tenant)
            .await?
            .iter()
            .filter(|c| c.plugin.as_ref().is_some_and(|p| p.id == plugin_id))
            .cloned()
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        if !force {
            let names: Vec<&str> = users.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::Conflict {
                code: "plugin_in_use",
                message: format!(
                    "plugin `{plugin_id}` is used by callbacks {}; remove it from them first, or delete with ?force=true to disable them",
                    names.join(", ")
                ),
            });
        }
        for mut callback in users {
            callback.enabled = false;
            callback.disabled_reason = Some(format!("its plugin `{plugin_id}` was deleted"));
            callback.updated_at = now_ms();
            self.db.write(move |s| s.put_callback(&callback)).await?;
        }
        self.forget(tenant);
        Ok(())
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Callback> {
        let (t, key) = (tenant.to_string(), id.to_string());
        self.db
            .run(move |s| s.callback(&t, &key))
            .await?
            .ok_or_else(|| Error::not_found("callback", id))
    }

    async fn save(&self, callback: Callback) -> Result<CallbackView> {
        let stored = callback.clone();
        let saved = self.db.write(move |s| s.put_callback(&stored)).await;
        self.forget(&callback.tenant_id);
        saved.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => Error::Conflict {
                code: "name_taken",
                message: format!("a callback named `{}` already exists", callback.name),
            },
            other => other.into(),
        })?;
        let (t, key) = (callback.tenant_id.clone(), callback.id.clone());
        let last = self.db.run(move |s| last_run(s, &t, &key)).await?;
        Ok(CallbackView { callback, last })
    }

    /// Checks an input and turns it into the writable part of a callback.
    async fn build(
        &self,
        tenant: &str,
        by: &str,
        input: CallbackInput,
        now: u64,
    ) -> Result<Callback> {
        input::text("name", &input.name, 128)?;
        input::identifier("object_type", &input.object_type, 64)?;
        if input.actions.is_empty() {
            return Err(Error::invalid("actions", "must list at least one action"));
        }
        for (i, action) in input.actions.iter().enumerate() {
            input::identifier(&format!("actions[{i}]"), action, 64)?;
        }
        let before = input.phase == Phase::Before;
        match &input.url {
            Some(url) => {
                input::http_url("url", url)?;
            }
            None if before && input.plugin.is_some() => {}
            None => {
                return Err(Error::invalid(
                    "url",
                    "is required, except for a before-callback that has a plugin",
                ));
            }
        }
        if !before && input.expected_status.is_some() {
            return Err(Error::invalid(
                "expected_status",
                "only before-callbacks compare the answer's status; after-callbacks succeed on any 2xx",
            ));
        }
        if let Some(status) = input.expected_status
            && !(100..=599).contains(&status)
        {
            return Err(Error::invalid(
                "expected_status",
                format!("{status} is not an HTTP status"),
            ));
        }
        if before && input.retry.is_some() {
            return Err(Error::invalid(
                "retry",
                "only after-callbacks are retried; a before-event is answered once",
            ));
        }
        if let Some(retry) = &input.retry {
            if !(1..=50).contains(&retry.max_attempts) {
                return Err(Error::invalid(
                    "retry.max_attempts",
                    "must be between 1 and 50",
                ));
            }
            if let Some(i) = retry
                .schedule_secs
                .iter()
                .position(|s| !(1..=86_400).contains(s))
            {
                return Err(Error::invalid(
                    format!("retry.schedule_secs[{i}]"),
                    "must be between 1 and 86400 seconds",
                ));
            }
        }
        if let Some(ms) = input.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&ms)
        {
            return Err(Error::invalid(
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        let mut headers = BTreeMap::new();
        for (name, value) in input.headers {
            let field = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            if HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(Error::invalid(field, "is not a valid header name"));
            }
            if crate::outbound::is_reserved(&lower) {
                return Err(Error::invalid(
                    field,
                    "is set by Hookgate and cannot be overridden",
                ));
            }
            if HeaderValue::from_str(&value).is_err() {
                return Err(Error::invalid(field, "is not a valid header value"));
            }
            headers.insert(lower, value);
        }
        let plugin = match input.plugin {
            Some(p) => Some(self.plugin_ref(tenant, p).await?),
            None => None,
        };
        let mut actions = input.actions;
        actions.dedup();
        Ok(Callback {
            id: String::new(),
            tenant_id: tenant.to_string(),
            name: input.name,
            object_type: input.object_type,
            phase: input.phase,
            actions,
            url: input.url,
            expected_status: before
                .then(|| input.expected_status.unwrap_or(DEFAULT_EXPECTED_STATUS)),
            headers,
            enabled: input.enabled,
            disabled_reason: None,
            plugin,
            timeout_ms: input.timeout_ms,
            retry: input.retry,
            secret: String::new(),
            previous_secret: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
            created_by: by.to_string(),
            updated_by: by.to_string(),
            subscription: None,
        })
    }

    async fn plugin_ref(&self, tenant: &str, input: PluginInput) -> Result<PluginRef> {
        let (t, key) = (tenant.to_string(), input.id.clone());
        if self.db.run(move |s| s.plugin(&t, &key)).await?.is_none() {
            return Err(Error::invalid(
                "plugin.id",
                format!("no plugin `{}` in this tenant", input.id),
            ));
        }
        let mut config = BTreeMap::new();
        for (key, value) in input.config {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(Error::invalid(
                        format!("plugin.config.{key}"),
                        "must be a string, number or boolean",
                    ));
                }
            };
            config.insert(key, text);
        }
        Ok(PluginRef {
            id: input.id,
            config,
        })
    }
}

/// When a callback last ran, from its newest activation.
fn last_run(s: &dyn Storage, tenant: &str, id: &str) -> StoreResult<LastRun> {
    Ok(LastRun::from_latest(
        s.activations(tenant, id, None, 1)?.first(),
    ))
}

/// The writable fields of a callback, as input.
fn input_of(callback: &Callback) -> CallbackInput {
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
            config: p
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        }),
        timeout_ms: callback.timeout_ms,
        retry: callback.retry.clone(),
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(Default::default());
    }
    let map = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(&key);
        } else {
            merge(map.entry(key).or_insert(serde_json::Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut doc, json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    }
}
