//! The records in sled's trees, read and written synchronously; the
//! backend runs these on its storage threads.
//!
//! Records are JSON in one tree per kind. Tenant-owned keys are
//! `tenant/id`, so a tenant's records are one prefix scan and ids (ULIDs)
//! keep them in time order. Multi-record writes use sled transactions.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};
use sled::{Transactional, Tree};

use super::files::Files;
use crate::model::{
    Activation, ApiKey, Callback, Delivery, DeliveryStatus, EventRecord, Health, HourCount,
    PluginRecord, PluginState, Template, Tenant,
};
use crate::store::{
    ActivationQuery, DeliveryFilter, DeliveryWrite, EventWrite, PageFrom, StoreError, StoreResult,
};

/// sled's trees, one per kind of record.
pub(super) struct Trees {
    db: sled::Db,
    tenants: Tree,
    keys: Tree,
    key_hashes: Tree,
    plugins: Tree,
    plugin_versions: Tree,
    plugin_wasm: Tree,
    callbacks: Tree,
    callback_names: Tree,
    templates: Tree,
    template_names: Tree,
    events: Tree,
    activations: Tree,
    deliveries: Tree,
    /// Keys of pending deliveries: what to resume after a restart.
    pending: Tree,
    health: Tree,
    /// Delivery attempts by callback and hour, at `{callback}/{hour}`.
    hours: Tree,
    files: Files,
}

impl Trees {
    /// Opens (or creates) the trees in `dir`.
    pub(super) fn open(dir: &Path) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", dir.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let trees = Trees {
            tenants: tree("tenants")?,
            keys: tree("keys")?,
            key_hashes: tree("key_hashes")?,
            plugins: tree("plugins")?,
            plugin_versions: tree("plugin_versions")?,
            plugin_wasm: tree("plugin_wasm")?,
            callbacks: tree("callbacks")?,
            callback_names: tree("callback_names")?,
            templates: tree("templates")?,
            template_names: tree("template_names")?,
            events: tree("events")?,
            activations: tree("activations")?,
            deliveries: tree("deliveries")?,
            pending: tree("pending")?,
            health: tree("health")?,
            hours: tree("hours")?,
            files: Files::open(dir)?,
            db,
        };
        // Compiled plugins were once stored here; each node now keeps its
        // own, and the old trees only take space.
        for old in ["artifact_meta", "artifact_bytes"] {
            trees.db.drop_tree(old).map_err(backend)?;
        }
        Ok(trees)
    }
}

/// A record's key in its tree, and a delivery's place in the queue.
pub(super) fn key(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// Decodes a stored record. serde_json stops at 128 levels by default; the
/// limit is lifted here because every record was encoded by this process
/// from input checked against the intake nesting limit, so whatever was
/// stored can be read back, including records stored before that check.
fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    T::deserialize(&mut deserializer).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn get<T: DeserializeOwned>(tree: &Tree, key: &str) -> StoreResult<Option<T>> {
    match tree.get(key).map_err(backend)? {
        Some(bytes) => decode(key.as_bytes(), &bytes).map(Some),
        None => Ok(None),
    }
}

/// Every record under `prefix/`, in key order.
fn scan<T: DeserializeOwned>(tree: &Tree, prefix: &str) -> StoreResult<Vec<T>> {
    decode_all(tree.scan_prefix(format!("{prefix}/")))
}

/// Every record in `tree`, in key order.
fn all<T: DeserializeOwned>(tree: &Tree) -> StoreResult<Vec<T>> {
    decode_all(tree.iter())
}

fn decode_all<T: DeserializeOwned>(items: sled::Iter) -> StoreResult<Vec<T>> {
    items
        .map(|item| {
            let (k, v) = item.map_err(backend)?;
            decode(&k, &v)
        })
        .collect()
}

/// Records under `prefix/`, newest (highest key) first, strictly before
/// `prefix/before` when given, keeping those `keep` accepts, up to `limit`.
fn scan_back<T: DeserializeOwned>(
    tree: &Tree,
    prefix: &str,
    before: Option<&str>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> StoreResult<Vec<T>> {
    let start = format!("{prefix}/");
    // '0' is the byte after '/', so this bounds the whole prefix.
    let end = match before {
        Some(id) => format!("{prefix}/{id}"),
        None => format!("{prefix}0"),
    };
    let mut out = Vec::new();
    for item in tree.range(start..end).rev() {
        let (k, v) = item.map_err(backend)?;
        let record: T = decode(&k, &v)?;
        if keep(&record) {
            out.push(record);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Removes up to `limit` records of `tree` that `old` selects.
fn prune_tree<T: DeserializeOwned>(
    tree: &Tree,
    limit: usize,
    old: impl Fn(&T) -> bool,
) -> StoreResult<usize> {
    let mut batch = sled::Batch::default();
    let mut count = 0;
    for item in tree.iter() {
        if count == limit {
            break;
        }
        let (k, v) = item.map_err(backend)?;
        match decode(&k, &v) {
            Ok(record) if old(&record) => {
                batch.remove(k);
                count += 1;
            }
            Ok(_) => {}
            // One unreadable record must not stop pruning for good.
            Err(err) => tracing::error!("pruning skips a record: {err}"),
        }
    }
    tree.apply_batch(batch).map_err(backend)?;
    Ok(count)
}

/// Unwraps a transaction's result, turning aborts into their error.
/// Stores a record whose name is unique within its tenant, keeping the
/// name index in step: `name_key` gives a record's index key.
fn put_named<T: Serialize + DeserializeOwned>(
    (records, names): (&Tree, &Tree),
    record: &T,
    name_key: impl Fn(&T) -> String,
    k: &str,
    id: &str,
) -> StoreResult<()> {
    let new_name = name_key(record);
    finish((records, names).transaction(|(records, names)| {
        if let Some(owner) = names.get(new_name.as_str())?
            && owner.as_ref() != id.as_bytes()
        {
            return abort(StoreError::Conflict("name"));
        }
        if let Some(old) = tx_get::<T>(records, k)? {
            names.remove(name_key(&old).as_str())?;
        }
        names.insert(new_name.as_str(), id)?;
        records.insert(k, encode(record))?;
        Ok(())
    }))
}

/// Deletes a record stored with [`put_named`], and its name.
fn delete_named<T: DeserializeOwned>(
    (records, names): (&Tree, &Tree),
    k: &str,
    name_key: impl Fn(&T) -> String,
) -> StoreResult<bool> {
    finish((records, names).transaction(|(records, names)| {
        let Some(old) = tx_get::<T>(records, k)? else {
            return Ok(false);
        };
        records.remove(k)?;
        names.remove(name_key(&old).as_str())?;
        Ok(true)
    }))
}

fn finish<T>(result: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    result.map_err(|e| match e {
        TransactionError::Abort(err) => err,
        TransactionError::Storage(err) => backend(err),
    })
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn tx_get<T: DeserializeOwned>(tree: &TransactionalTree, key: &str) -> TxResult<Option<T>> {
    match tree.get(key)? {
        Some(bytes) => match decode(key.as_bytes(), &bytes) {
            Ok(value) => Ok(Some(value)),
            Err(err) => abort(err),
        },
        None => Ok(None),
    }
}

impl Trees {
    pub(super) fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(backend)?;
        self.files.sync()
    }

    pub(super) fn insert_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> StoreResult<()> {
        let trees = (&self.tenants, &self.keys, &self.key_hashes);
        finish(trees.transaction(|(tenants, keys, hashes)| {
            tenants.insert(tenant.id.as_str(), encode(tenant))?;
            let k = key(&first_key.tenant_id, &first_key.id);
            keys.insert(k.as_str(), encode(first_key))?;
            hashes.insert(first_key.hash.as_str(), k.as_str())?;
            Ok(())
        }))
    }

    pub(super) fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        all(&self.tenants)
    }

    pub(super) fn insert_key(&self, api_key: &ApiKey) -> StoreResult<()> {
        let trees = (&self.keys, &self.key_hashes);
        finish(trees.transaction(|(keys, hashes)| {
            let k = key(&api_key.tenant_id, &api_key.id);
            keys.insert(k.as_str(), encode(api_key))?;
            hashes.insert(api_key.hash.as_str(), k.as_str())?;
            Ok(())
        }))
    }

    pub(super) fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        match self.key_hashes.get(hash).map_err(backend)? {
            Some(k) => get(&self.keys, &String::from_utf8_lossy(&k)),
            None => Ok(None),
        }
    }

    pub(super) fn keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>> {
        scan(&self.keys, tenant)
    }

    pub(super) fn delete_key(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let k = key(tenant, id);
        let trees = (&self.keys, &self.key_hashes);
        finish(trees.transaction(|(keys, hashes)| {
            let Some(found) = tx_get::<ApiKey>(keys, &k)? else {
                return Ok(false);
            };
            keys.remove(k.as_str())?;
            hashes.remove(found.hash.as_str())?;
            Ok(true)
        }))
    }

    pub(super) fn insert_plugin(
        &self,
        record: PluginRecord,
        wasm: &[u8],
    ) -> StoreResult<PluginRecord> {
        let trees = (&self.plugins, &self.plugin_versions, &self.plugin_wasm);
        finish(trees.transaction(|(plugins, versions, wasm_tree)| {
            let name_key = key(&record.tenant_id, &record.name);
            let last: u32 = tx_get(versions, &name_key)?.unwrap_or(0);
            let record = PluginRecord {
                version: last + 1,
                ..record.clone()
            };
            versions.insert(name_key.as_str(), encode(&record.version))?;
            plugins.insert(key(&record.tenant_id, &record.id).as_str(), encode(&record))?;
            wasm_tree.insert(record.id.as_str(), wasm)?;
            Ok(record)
        }))
    }

    pub(super) fn plugin(&self, tenant: &str, id: &str) -> StoreResult<Option<PluginRecord>> {
        get(&self.plugins, &key(tenant, id))
    }

    pub(super) fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        scan(&self.plugins, tenant)
    }

    pub(super) fn all_plugins(&self) -> StoreResult<Vec<PluginRecord>> {
        all(&self.plugins)
    }

    pub(super) fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .plugin_wasm
            .get(id)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    pub(super) fn delete_plugin(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let trees = (&self.plugins, &self.plugin_wasm);
        let k = key(tenant, id);
        finish(trees.transaction(|(plugins, wasm)| {
            if plugins.remove(k.as_str())?.is_none() {
                return Ok(false);
            }
            wasm.remove(id)?;
            Ok(true)
        }))
    }

    pub(super) fn update_plugin(&self, record: &PluginRecord) -> StoreResult<bool> {
        let k = key(&record.tenant_id, &record.id);
        finish(self.plugins.transaction(|plugins| {
            let stored: Option<PluginRecord> = tx_get(plugins, &k)?;
            if stored.is_none_or(|stored| stored.state != PluginState::Compiling) {
                return Ok(false);
            }
            plugins.insert(k.as_str(), encode(record))?;
            Ok(true)
        }))
    }

    pub(super) fn put_callback(&self, callback: &Callback) -> StoreResult<()> {
        put_named(
            (&self.callbacks, &self.callback_names),
            callback,
            |c: &Callback| key(&c.tenant_id, &c.name),
            &key(&callback.tenant_id, &callback.id),
            &callback.id,
        )
    }

    pub(super) fn callback(&self, tenant: &str, id: &str) -> StoreResult<Option<Callback>> {
        get(&self.callbacks, &key(tenant, id))
    }

    pub(super) fn callbacks(&self, tenant: &str) -> StoreResult<Vec<Callback>> {
        scan(&self.callbacks, tenant)
    }

    pub(super) fn delete_callback(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        delete_named(
            (&self.callbacks, &self.callback_names),
            &key(tenant, id),
            |c: &Callback| key(&c.tenant_id, &c.name),
        )
    }

    pub(super) fn put_template(&self, template: &Template) -> StoreResult<()> {
        put_named(
            (&self.templates, &self.template_names),
            template,
            |t: &Template| key(&t.tenant_id, &t.spec.name),
            &key(&template.tenant_id, &template.id),
            &template.id,
        )
    }

    pub(super) fn template(&self, tenant: &str, id: &str) -> StoreResult<Option<Template>> {
        get(&self.templates, &key(tenant, id))
    }

    pub(super) fn template_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> StoreResult<Option<Template>> {
        match self
            .template_names
            .get(key(tenant, name).as_bytes())
            .map_err(backend)?
        {
            Some(id) => self.template(tenant, &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub(super) fn templates(&self, tenant: &str) -> StoreResult<Vec<Template>> {
        scan(&self.templates, tenant)
    }

    pub(super) fn delete_template(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        delete_named(
            (&self.templates, &self.template_names),
            &key(tenant, id),
            |t: &Template| key(&t.tenant_id, &t.spec.name),
        )
    }

    pub(super) fn event(&self, tenant: &str, id: &str) -> StoreResult<Option<EventRecord>> {
        get(&self.events, &key(tenant, id))
    }

    pub(super) fn insert_events(
        &self,
        batch: &[EventWrite],
    ) -> StoreResult<Vec<Option<EventRecord>>> {
        let trees = (
            &self.events,
            &self.deliveries,
            &self.activations,
            &self.pending,
        );
        finish(trees.transaction(|(events, delivery_tree, acts, pending)| {
            let mut answers = Vec::with_capacity(batch.len());
            for write in batch {
                let tenant = write.record.tenant_id.as_str();
                let event_key = key(tenant, &write.record.event.id);
                if write.client_id
                    && let Some(existing) = tx_get::<EventRecord>(events, &event_key)?
                {
                    answers.push(Some(existing));
                    continue;
                }
                events.insert(event_key.as_str(), encode(&*write.record))?;
                for delivery in &write.deliveries {
                    let k = key(tenant, &delivery.id);
                    delivery_tree.insert(k.as_str(), encode(delivery))?;
                    pending.insert(k.as_str(), &[])?;
                }
                for act in &write.activations {
                    let act_key = format!("{tenant}/{}/{}", act.callback_id, act.id);
                    acts.insert(act_key.as_str(), encode(act))?;
                }
                answers.push(None);
            }
            Ok(answers)
        }))
    }

    pub(super) fn activations(
        &self,
        tenant: &str,
        callback_id: &str,
        query: &ActivationQuery,
        limit: usize,
    ) -> StoreResult<Vec<Activation>> {
        let prefix = key(tenant, callback_id);
        // '0' is the byte after '/', so it bounds the whole prefix.
        let (start, end) = match &query.from {
            PageFrom::Newest => (format!("{prefix}/"), format!("{prefix}0")),
            PageFrom::Before(id) => (format!("{prefix}/"), format!("{prefix}/{id}")),
            PageFrom::After(id) => (format!("{prefix}/{id}\u{0}"), format!("{prefix}0")),
        };
        let range = self.activations.range(start..end);
        let items: Box<dyn Iterator<Item = _>> = match query.from {
            PageFrom::After(_) => Box::new(range),
            _ => Box::new(range.rev()),
        };
        let mut out = Vec::new();
        for item in items {
            let (k, v) = item.map_err(backend)?;
            let act: Activation = decode(&k, &v)?;
            // Ids follow the time an attempt ended, `at` the time it
            // started: well past the window's edge, nothing further can
            // match.
            let too_old = query.since.is_some_and(|since| act.at < since);
            let too_new = query.until.is_some_and(|until| act.at >= until);
            let past = |edge: Option<u64>, beyond: bool| {
                beyond && edge.is_some_and(|edge| act.at.abs_diff(edge) > ATTEMPT_SPAN_MS)
            };
            match query.from {
                PageFrom::After(_) if past(query.until, too_new) => break,
                PageFrom::Newest | PageFrom::Before(_) if past(query.since, too_old) => break,
                _ => {}
            }
            if too_old || too_new || query.outcome.is_some_and(|o| o != act.outcome) {
                continue;
            }
            out.push(act);
            if out.len() == limit {
                break;
            }
        }
        if matches!(query.from, PageFrom::After(_)) {
            out.reverse();
        }
        Ok(out)
    }

    pub(super) fn activation(
        &self,
        tenant: &str,
        callback_id: &str,
        id: &str,
    ) -> StoreResult<Option<Activation>> {
        get(&self.activations, &format!("{tenant}/{callback_id}/{id}"))
    }

    pub(super) fn insert_activation(&self, act: &Activation) -> StoreResult<()> {
        let k = format!("{}/{}/{}", act.tenant_id, act.callback_id, act.id);
        self.activations
            .insert(k.as_str(), encode(act))
            .map(|_| ())
            .map_err(backend)
    }

    pub(super) fn delivery(&self, tenant: &str, id: &str) -> StoreResult<Option<Delivery>> {
        get(&self.deliveries, &key(tenant, id))
    }

    pub(super) fn pending_deliveries(&self) -> StoreResult<Vec<Delivery>> {
        let mut out = Vec::new();
        for item in self.pending.iter() {
            let (k, _) = item.map_err(backend)?;
            match get(&self.deliveries, &String::from_utf8_lossy(&k)) {
                Ok(Some(delivery)) => out.push(delivery),
                Ok(None) => {}
                // One unreadable delivery must not stop the others resuming.
                Err(err) => tracing::error!("cannot resume a pending delivery: {err}"),
            }
        }
        Ok(out)
    }

    pub(super) fn update_deliveries(&self, batch: &[DeliveryWrite]) -> StoreResult<()> {
        // The batch's attempts summed per callback and hour first: one
        // read-modify-write each, however many attempts share it.
        let counted = HourCount::tally(
            batch
                .iter()
                .filter_map(|(_, attempt)| attempt.as_ref())
                .filter_map(|act| Some((act, HourCount::of(act)?)))
                .map(|(act, add)| (hour_key(&act.callback_id, add.at), add)),
        );
        let trees = (
            &self.deliveries,
            &self.pending,
            &self.activations,
            &self.hours,
        );
        finish(trees.transaction(|(deliveries, pending, acts, hours)| {
            for (k, add) in &counted {
                let mut sum = *add;
                // An unreadable count starts over rather than stop deliveries.
                if let Some(old) = hours.get(k.as_str())?
                    && let Ok(old) = decode::<HourCount>(k.as_bytes(), &old)
                {
                    sum.add(&old);
                }
                hours.insert(k.as_str(), encode(&sum))?;
            }
            for (delivery, attempt) in batch {
                let k = key(&delivery.tenant_id, &delivery.id);
                deliveries.insert(k.as_str(), encode(delivery))?;
                if delivery.status == DeliveryStatus::Pending {
                    pending.insert(k.as_str(), &[])?;
                } else {
                    pending.remove(k.as_str())?;
                }
                if let Some(act) = attempt {
                    let act_key = format!("{}/{}/{}", act.tenant_id, act.callback_id, act.id);
                    acts.insert(act_key.as_str(), encode(act))?;
                }
            }
            Ok(())
        }))
    }

    pub(super) fn prune(&self, cutoff: u64, limit: usize) -> StoreResult<usize> {
        let mut removed = 0;
        let old_event = |r: &EventRecord| r.event.timestamp_ms < cutoff;
        let old_delivery =
            |d: &Delivery| d.created_at < cutoff && d.status != DeliveryStatus::Pending;
        let old_activation = |a: &Activation| a.at < cutoff;
        removed += prune_tree(&self.events, limit - removed, old_event)?;
        removed += prune_tree(&self.deliveries, limit - removed, old_delivery)?;
        removed += prune_tree(&self.activations, limit - removed, old_activation)?;
        removed += prune_tree(&self.hours, limit - removed, |h: &HourCount| {
            h.at + HourCount::HOUR_MS <= cutoff
        })?;
        Ok(removed)
    }

    /// Callbacks' counted hours from `since` on, added up, oldest first.
    pub(super) fn hour_counts(
        &self,
        callbacks: &[String],
        since: u64,
    ) -> StoreResult<Vec<HourCount>> {
        let mut counted = Vec::new();
        for callback in callbacks {
            let from = hour_key(callback, since - since % HourCount::HOUR_MS);
            let end = format!("{callback}0"); // '0' follows '/'
            for item in self.hours.range(from.as_str()..end.as_str()) {
                let (k, v) = item.map_err(backend)?;
                let hour: HourCount = decode(&k, &v)?;
                counted.push((hour.at, hour));
            }
        }
        Ok(HourCount::tally(counted).into_values().collect())
    }

    /// Counts a finished delivery into a callback's run of failures in one
    /// atomic read-modify-write, and returns the run as it now stands.
    pub(super) fn record_health(
        &self,
        callback_id: &str,
        failed: bool,
        at: u64,
    ) -> StoreResult<Health> {
        // Most callbacks never fail, and a success on a callback with no
        // run of failures changes nothing: no write for it.
        if !failed && !self.health.contains_key(callback_id).map_err(backend)? {
            return Ok(Health::default());
        }
        let mut decode_error = None;
        let updated = self
            .health
            .update_and_fetch(callback_id, |old| {
                let mut health: Health =
                    match old.map(|bytes| decode(callback_id.as_bytes(), bytes)) {
                        Some(Ok(health)) => health,
                        Some(Err(err)) => {
                            decode_error = Some(err);
                            Health::default()
                        }
                        None => Health::default(),
                    };
                if failed {
                    health.consecutive_failures += 1;
                    health.failing_since.get_or_insert(at);
                } else {
                    health = Health::default();
                }
                // A healthy callback keeps no record: most never fail.
                (health != Health::default()).then(|| encode(&health))
            })
            .map_err(backend)?;
        if let Some(err) = decode_error {
            tracing::error!("a callback's health was unreadable and starts over: {err}");
        }
        match updated {
            Some(bytes) => decode(callback_id.as_bytes(), &bytes),
            None => Ok(Health::default()),
        }
    }

    pub(super) fn deliveries(
        &self,
        tenant: &str,
        filter: &DeliveryFilter,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        scan_back(&self.deliveries, tenant, before, limit, |d: &Delivery| {
            filter
                .callback_id
                .as_ref()
                .is_none_or(|c| *c == d.callback_id)
                && filter.status.is_none_or(|s| s == d.status)
        })
    }
}

/// Longest time from an attempt's start (its `at`) to its end, when its id
/// is made, with room to spare: a request's longest timeout and a plugin's
/// deadline are far shorter.
const ATTEMPT_SPAN_MS: u64 = 10 * 60_000;

/// Where a callback's hour is counted: keys sort by callback, then time.
fn hour_key(callback_id: &str, hour: u64) -> String {
    format!("{callback_id}/{hour:020}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::model::{Event, Phase};

    fn delivery(id: &str, created_at: u64, status: DeliveryStatus) -> Delivery {
        Delivery {
            id: id.into(),
            tenant_id: "ten".into(),
            callback_id: "cb".into(),
            event_id: "evt".into(),
            status,
            attempts: 0,
            round_start: 0,
            attempt_ids: Vec::new(),
            next_attempt_at: None,
            created_at,
            updated_at: created_at,
            last_error: None,
        }
    }

    #[test]
    fn pruning_removes_old_history_but_never_a_pending_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let store = Trees::open(dir.path()).unwrap();
        let event = |id: &str, at: u64| EventRecord {
            tenant_id: "ten".into(),
            event: Event {
                id: id.into(),
                object_type: "app".into(),
                action: "created".into(),
                phase: Phase::After,
                actor: None,
                timestamp_ms: at,
                data: serde_json::Value::Null,
            },
            causation: Vec::new(),
            decisions: Vec::new(),
            deliveries: Vec::new(),
        };
        let write = |record: EventRecord, deliveries: Vec<Delivery>| EventWrite {
            record: Arc::new(record),
            deliveries,
            activations: Vec::new(),
            client_id: true,
        };
        let answers = store
            .insert_events(&[
                write(
                    event("old", 10),
                    vec![
                        delivery("dlv_old_done", 10, DeliveryStatus::Succeeded),
                        delivery("dlv_old_pending", 10, DeliveryStatus::Pending),
                    ],
                ),
                write(
                    event("new", 1000),
                    vec![delivery("dlv_new", 1000, DeliveryStatus::Failed)],
                ),
                write(event("new", 2000), Vec::new()),
            ])
            .unwrap();
        assert_eq!(answers[..2], [None, None]);
        assert_eq!(
            answers[2].as_ref().map(|r| r.event.timestamp_ms),
            Some(1000),
            "a repeated id in one batch answers the first, and writes nothing"
        );

        assert_eq!(store.prune(500, 1).unwrap(), 1, "the limit holds");
        assert_eq!(store.prune(500, 100).unwrap(), 1);
        assert!(store.event("ten", "old").unwrap().is_none());
        assert!(store.event("ten", "new").unwrap().is_some());
        assert!(store.delivery("ten", "dlv_old_done").unwrap().is_none());
        assert!(
            store.delivery("ten", "dlv_old_pending").unwrap().is_some(),
            "pending is kept"
        );
        assert!(store.delivery("ten", "dlv_new").unwrap().is_some());
        assert_eq!(store.prune(500, 100).unwrap(), 0, "nothing old is left");
    }

    #[test]
    fn an_unreadable_record_stops_neither_pruning_nor_resuming() {
        let dir = tempfile::tempdir().unwrap();
        let store = Trees::open(dir.path()).unwrap();
        store
            .update_deliveries(&[(delivery("dlv_ok", 10, DeliveryStatus::Pending), None)])
            .unwrap();
        store
            .update_deliveries(&[(delivery("dlv_old", 10, DeliveryStatus::Failed), None)])
            .unwrap();
        store.deliveries.insert("ten/dlv_0bad", b"{broken").unwrap();
        store.pending.insert("ten/dlv_0bad", &[]).unwrap();

        let resumed = store.pending_deliveries().unwrap();
        assert_eq!(resumed.len(), 1, "the readable one resumes");
        assert_eq!(resumed[0].id, "dlv_ok");
        assert_eq!(
            store.prune(500, 100).unwrap(),
            1,
            "pruning goes past the unreadable record"
        );
        assert!(store.delivery("ten", "dlv_old").unwrap().is_none());
    }

    #[test]
    fn records_nested_as_deep_as_accepted_input_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Trees::open(dir.path()).unwrap();
        let mut data = serde_json::json!("leaf");
        for _ in 0..126 {
            data = serde_json::json!([data]);
        }
        let record = EventRecord {
            tenant_id: "ten".into(),
            event: Event {
                id: "deep".into(),
                object_type: "app".into(),
                action: "created".into(),
                phase: Phase::After,
                actor: None,
                timestamp_ms: 1,
                data,
            },
            causation: Vec::new(),
            decisions: Vec::new(),
            deliveries: Vec::new(),
        };
        let write = EventWrite {
            record: Arc::new(record.clone()),
            deliveries: Vec::new(),
            activations: Vec::new(),
            client_id: false,
        };
        store.insert_events(&[write]).unwrap();
        assert_eq!(store.event("ten", "deep").unwrap(), Some(record));
    }
}
