//! Callbacks: what tenants register, checked field by field, and the
//! queries the gate and delivery use to find the ones an event triggers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use super::error::from_value;
use super::stats::{DeliveryStats, Window};
use super::{Error, Page, Result, input};
use crate::clock::SharedClock;
use crate::model::ids::{new_id, new_signing_secret};
use crate::model::{
    Activation, Callback, CallbackInput, LastRun, Phase, PluginInput, PluginRef, RetryPolicy,
    SubscriptionRef,
};
use crate::store::{ActivationQuery, Change, PageFrom, Store, StoreError};

/// Default expected status of a before-callback's URL.
const DEFAULT_EXPECTED_STATUS: u16 = 200;
/// Longest per-callback timeout, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

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

/// Which callbacks to list.
#[derive(Debug, Clone, Default)]
pub struct CallbackFilter {
    /// Only this object type.
    pub object_type: Option<String>,
    /// Only this phase.
    pub phase: Option<Phase>,
    /// Only enabled, or only disabled, callbacks.
    pub enabled: Option<bool>,
    /// Only names containing this text, ignoring case.
    pub q: Option<String>,
}

/// The callback service.
///
/// Each tenant's callbacks are cached in memory once read, because every
/// event needs them. The store announces every change to a tenant's
/// callbacks, made here or on another node, and the cache forgets that
/// tenant.
#[derive(Clone)]
pub struct Callbacks {
    store: Store,
    clock: SharedClock,
    cache: CallbackCache,
}

impl Callbacks {
    /// A service over `store`.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        let cache = CallbackCache::default();
        let listening = cache.clone();
        store.changes().subscribe(move |change| match change {
            Change::Callbacks { tenant } => listening.forget(tenant),
            Change::Resync => listening.forget_all(),
            _ => {}
        });
        Callbacks {
            store,
            clock,
            cache,
        }
    }

    /// All of a tenant's callbacks, oldest first, from the cache when
    /// possible.
    pub async fn all(&self, tenant: &str) -> Result<Arc<Vec<Callback>>> {
        let generation = match self.cache.get(tenant) {
            Ok(found) => return Ok(found),
            Err(generation) => generation,
        };
        let all = Arc::new(self.store.callbacks().callbacks(tenant).await?);
        self.cache.insert(tenant, all.clone(), generation);
        Ok(all)
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
        let now = self.clock.now_ms();
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
        let last = self.last_run(tenant, &callback.id).await?;
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
        let now = self.clock.now_ms();
        let new = self.build(tenant, by, input, now).await?;
        // A reason Hookgate recorded stays while the callback stays disabled.
        let disabled_reason = if new.enabled {
            None
        } else {
            old.disabled_reason
        };
        if new.enabled && !old.enabled {
            // Whoever enables a callback gives it a fresh start: with its old
            // run of failures, the next failure would disable it again at once.
            // The run is reset before the callback runs again.
            self.store
                .callbacks()
                .record_health(&old.id, false, now)
                .await?;
            tracing::info!(callback = %id, by, "callback enabled, its run of failures reset");
        }
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
        let mut doc = serde_json::to_value(CallbackInput::of(&old)).expect("inputs serialize");
        merge(&mut doc, patch);
        let input: CallbackInput = from_value(doc)?;
        self.replace(tenant, id, by, input).await
    }

    /// Deletes a callback.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        if self.store.callbacks().delete_callback(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::not_found("callback", id))
        }
    }

    /// A filtered page of a tenant's callbacks, in creation order,
    /// continuing after `cursor`.
    pub async fn list(
        &self,
        tenant: &str,
        filter: &CallbackFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<CallbackView>> {
        let all = self.all(tenant).await?;
        let needle = filter.q.as_deref().map(str::to_lowercase);
        let matching: Vec<Callback> = all
            .iter()
            .filter(|c| {
                filter
                    .object_type
                    .as_ref()
                    .is_none_or(|o| *o == c.object_type)
                    && filter.phase.is_none_or(|p| p == c.phase)
                    && filter.enabled.is_none_or(|e| e == c.enabled)
                    && needle
                        .as_ref()
                        .is_none_or(|n| c.name.to_lowercase().contains(n))
                    && cursor.is_none_or(|cursor| c.id.as_str() > cursor)
            })
            .take(limit + 1)
            .cloned()
            .collect();
        let page = Page::of(matching, limit, |c| c.id.clone());
        let mut items = Vec::with_capacity(page.items.len());
        for callback in page.items {
            let last = self.last_run(tenant, &callback.id).await?;
            items.push(CallbackView { callback, last });
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
            prev_cursor: None,
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

    /// A callback's delivery figures over `window`, ending now.
    pub async fn stats(&self, tenant: &str, id: &str, window: Window) -> Result<DeliveryStats> {
        let callback = self.find(tenant, id).await?;
        self.stats_of(&callback, window).await
    }

    /// The figures of a callback the caller already holds, as a page
    /// listing callbacks does: no second read of the callback.
    pub async fn stats_of(&self, callback: &Callback, window: Window) -> Result<DeliveryStats> {
        self.figures(std::slice::from_ref(&callback.id), window)
            .await
    }

    /// The figures of these callbacks together, over `window` ending now.
    async fn figures(&self, callbacks: &[String], window: Window) -> Result<DeliveryStats> {
        let now = self.clock.now_ms();
        let counted = self
            .store
            .callbacks()
            .hour_counts(callbacks, window.since(now))
            .await?;
        Ok(DeliveryStats::of(window, now, &counted))
    }

    /// All a tenant's delivery figures over `window`, ending now: the hours
    /// of every after-callback it has now, added up in one read.
    pub async fn tenant_stats(&self, tenant: &str, window: Window) -> Result<DeliveryStats> {
        let after: Vec<String> = self
            .all(tenant)
            .await?
            .iter()
            .filter(|c| c.phase == Phase::After)
            .map(|c| c.id.clone())
            .collect();
        self.figures(&after, window).await
    }

    /// A page of a callback's activations that `query` selects, newest
    /// first, with cursors for the older page and the newer one.
    pub async fn activations(
        &self,
        tenant: &str,
        id: &str,
        query: ActivationQuery,
        limit: usize,
    ) -> Result<Page<Activation>> {
        self.find(tenant, id).await?;
        let mut items = self
            .store
            .deliveries()
            .activations(tenant, id, &query, limit + 1)
            .await?;
        let cursor = |a: &Activation| a.id.clone();
        Ok(match query.from {
            PageFrom::Newest => Page::of(items, limit, cursor),
            PageFrom::Before(_) => Page {
                prev_cursor: items.first().map(cursor),
                ..Page::of(items, limit, cursor)
            },
            // The nearest `limit + 1` newer ones: one too many says that
            // still newer ones follow. The cursor's own is older.
            PageFrom::After(_) => {
                let newer = items.len() > limit;
                if newer {
                    items.remove(0);
                }
                Page {
                    prev_cursor: newer.then(|| items.first().map(cursor)).flatten(),
                    next_cursor: items.last().map(cursor),
                    items,
                }
            }
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
        callback.updated_at = self.clock.now_ms();
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
        let now = self.clock.now_ms();
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
            callback.updated_at = self.clock.now_ms();
            self.store.callbacks().put_callback(&callback).await?;
        }
        Ok(())
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Callback> {
        self.store
            .callbacks()
            .callback(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("callback", id))
    }

    /// When a callback last ran, from its newest activation.
    async fn last_run(&self, tenant: &str, id: &str) -> Result<LastRun> {
        let newest = self
            .store
            .deliveries()
            .activations(tenant, id, &ActivationQuery::default(), 1)
            .await?;
        Ok(LastRun::from_latest(newest.first()))
    }

    async fn save(&self, callback: Callback) -> Result<CallbackView> {
        match self.store.callbacks().put_callback(&callback).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(Error::Conflict {
                    code: "name_taken",
                    message: format!("a callback named `{}` already exists", callback.name),
                });
            }
            Err(other) => return Err(other.into()),
        }
        let last = self.last_run(&callback.tenant_id, &callback.id).await?;
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
        check_matching(&input)?;
        check_target(&input)?;
        check_retry(&input)?;
        let headers = checked_headers(&input.headers)?;
        let before = input.phase == Phase::Before;
        // What the callback will ask of its plugin: an after-callback only
        // transforms, a before-callback with no URL only decides.
        let needs = match (before, &input.url) {
            (false, _) => Some("transform"),
            (true, None) => Some("decide"),
            (true, Some(_)) => None,
        };
        let plugin = match input.plugin {
            Some(p) => Some(self.plugin_ref(tenant, p, needs).await?),
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

    /// Checks a callback's plugin: it exists, exports the hook the callback
    /// `needs`, if any, and its configuration is flat.
    async fn plugin_ref(
        &self,
        tenant: &str,
        input: PluginInput,
        needs: Option<&str>,
    ) -> Result<PluginRef> {
        let Some(record) = self.store.plugins().plugin(tenant, &input.id).await? else {
            return Err(Error::invalid(
                "plugin.id",
                format!("no plugin `{}` in this tenant", input.id),
            ));
        };
        if let Some(hook) = needs
            && !record.exports.iter().any(|e| e == hook)
        {
            let runs = match hook {
                "transform" => "an after-callback runs only a plugin's `transform`",
                _ => "a before-callback with no URL runs only a plugin's `decide`",
            };
            return Err(Error::invalid(
                "plugin.id",
                format!(
                    "plugin `{}` ({} v{}) does not export `{hook}`: {runs}, and this one \
                     exports only {}",
                    input.id,
                    record.name,
                    record.version,
                    record.exports.join(", ")
                ),
            ));
        }
        for (key, value) in &input.config {
            if !matches!(
                value,
                serde_json::Value::String(_)
                    | serde_json::Value::Number(_)
                    | serde_json::Value::Bool(_)
            ) {
                return Err(Error::invalid(
                    format!("plugin.config.{key}"),
                    "must be a string, number or boolean",
                ));
            }
        }
        Ok(PluginRef {
            id: input.id,
            config: input.config,
        })
    }
}

/// What a callback listens to: its name, object type and actions.
fn check_matching(input: &CallbackInput) -> Result<()> {
    input::text("name", &input.name, 128)?;
    input::identifier("object_type", &input.object_type, 64)?;
    if input.actions.is_empty() {
        return Err(Error::invalid("actions", "must list at least one action"));
    }
    for (i, action) in input.actions.iter().enumerate() {
        input::identifier(&format!("actions[{i}]"), action, 64)?;
    }
    Ok(())
}

/// Where a callback goes and what answer it expects.
fn check_target(input: &CallbackInput) -> Result<()> {
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
    if let Some(ms) = input.timeout_ms
        && !(1..=MAX_TIMEOUT_MS).contains(&ms)
    {
        return Err(Error::invalid(
            "timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(())
}

/// A retry policy, which only after-callbacks have.
fn check_retry(input: &CallbackInput) -> Result<()> {
    let Some(retry) = &input.retry else {
        return Ok(());
    };
    if input.phase == Phase::Before {
        return Err(Error::invalid(
            "retry",
            "only after-callbacks are retried; a before-event is answered once",
        ));
    }
    check_policy(retry)
}

fn check_policy(retry: &RetryPolicy) -> Result<()> {
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
    Ok(())
}

/// A callback's own headers, names in lower case; none that Hookgate sets.
fn checked_headers(headers: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut checked = BTreeMap::new();
    for (name, value) in headers {
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
        if HeaderValue::from_str(value).is_err() {
            return Err(Error::invalid(field, "is not a valid header value"));
        }
        checked.insert(lower, value.clone());
    }
    Ok(checked)
}

/// Tenants' callbacks as last read, and how many times the cache was told
/// of a change. A read that began before a change must not put what it
/// read back after the change emptied its tenant's entry, so a read is
/// cached only if no change came while it was under way.
#[derive(Clone, Default)]
struct CallbackCache(Arc<RwLock<Cached>>);

#[derive(Default)]
struct Cached {
    by_tenant: HashMap<String, Arc<Vec<Callback>>>,
    generation: u64,
}

impl CallbackCache {
    /// The tenant's callbacks, or the generation to read them under.
    fn get(&self, tenant: &str) -> std::result::Result<Arc<Vec<Callback>>, u64> {
        let cached = self.0.read().unwrap_or_else(|p| p.into_inner());
        cached
            .by_tenant
            .get(tenant)
            .cloned()
            .ok_or(cached.generation)
    }

    fn insert(&self, tenant: &str, callbacks: Arc<Vec<Callback>>, generation: u64) {
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        if cached.generation == generation {
            cached.by_tenant.insert(tenant.to_string(), callbacks);
        }
    }

    fn forget(&self, tenant: &str) {
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        cached.by_tenant.remove(tenant);
        cached.generation += 1;
    }

    fn forget_all(&self) {
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        cached.by_tenant.clear();
        cached.generation += 1;
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
