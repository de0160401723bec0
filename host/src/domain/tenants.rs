//! Tenants, their API keys, and who a key stands for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::input;
use super::{Error, Result};
use crate::clock::SharedClock;
use crate::model::ids::{new_id, new_token, token_hash};
use crate::model::{ApiKey, Role, Tenant};
use crate::store::{Change, Store};

/// Prefix of every tenant API key, so leaked keys are easy to recognise.
const KEY_PREFIX: &str = "hg_";

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
}

/// `POST /v1/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "emitter in the API manager", "role": "emit"})))]
pub struct NewKey {
    /// What the key is for.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A key as the API shows it: everything but the hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// `key_…`
    pub id: String,
    /// What the key is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The first characters of the secret.
    pub prefix: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        KeyView {
            id: key.id,
            name: key.name,
            role: key.role,
            prefix: key.prefix,
            created_at: key.created_at,
        }
    }
}

/// Who a request acts as: a tenant's API key, with its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the key belongs to.
    pub tenant_id: String,
    /// The key's name, recorded as `created_by` / `updated_by`.
    pub key_name: String,
    /// What the key may do.
    pub role: Role,
}

/// The tenant service: tenants, keys, and authenticating keys.
#[derive(Clone)]
pub struct Tenants {
    store: Store,
    clock: SharedClock,
    keys: KeyCache,
}

impl Tenants {
    /// A service over `store`, whose key cache forgets every key when any
    /// is revoked, on this node or another.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        let keys = KeyCache::default();
        let cache = keys.clone();
        store.changes().subscribe(move |change| {
            if matches!(change, Change::Keys | Change::Resync) {
                cache.clear();
            }
        });
        Tenants { store, clock, keys }
    }

    /// Creates a tenant with a first `manage` key, returning the key's
    /// secret, which is never shown again.
    pub async fn create_tenant(&self, new: NewTenant) -> Result<(Tenant, String)> {
        input::text("name", &new.name, 200)?;
        let tenant = Tenant {
            id: new_id("ten"),
            name: new.name,
            created_at: self.clock.now_ms(),
        };
        let (key, secret) = self.make_key(&tenant.id, "default".into(), Role::Manage);
        self.store.tenants().insert_tenant(&tenant, &key).await?;
        Ok((tenant, secret))
    }

    /// Every tenant.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self.store.tenants().tenants().await?)
    }

    /// Creates a key for a tenant, returning its secret once.
    pub async fn create_key(&self, tenant: &str, new: NewKey) -> Result<(KeyView, String)> {
        input::text("name", &new.name, 200)?;
        let (key, secret) = self.make_key(tenant, new.name, new.role);
        self.store.tenants().insert_key(&key).await?;
        Ok((key.into(), secret))
    }

    /// A tenant's keys, without their secrets.
    pub async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyView>> {
        let keys = self.store.tenants().keys(tenant).await?;
        Ok(keys.into_iter().map(KeyView::from).collect())
    }

    /// Revokes a key at once: its hash is gone, and every cache forgets it.
    pub async fn revoke_key(&self, tenant: &str, id: &str) -> Result<()> {
        if self.store.tenants().delete_key(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::not_found("key", id))
        }
    }

    /// Who an API key stands for.
    pub async fn authenticate(&self, key: &str) -> Result<Principal> {
        let hash = token_hash(key);
        let lookup = hash.clone();
        let store = self.store.clone();
        self.keys
            .resolve(hash, async move {
                let key = store.tenants().key_by_hash(&lookup).await?;
                Ok(key.map(|key| Principal {
                    tenant_id: key.tenant_id,
                    key_name: key.name,
                    role: key.role,
                }))
            })
            .await
    }

    fn make_key(&self, tenant: &str, name: String, role: Role) -> (ApiKey, String) {
        let secret = new_token(KEY_PREFIX);
        let key = ApiKey {
            id: new_id("key"),
            tenant_id: tenant.to_string(),
            name,
            role,
            hash: token_hash(&secret),
            prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
            created_at: self.clock.now_ms(),
        };
        (key, secret)
    }
}

/// Known keys by hash, so that authenticating a request costs no storage
/// round trip. Revoking a key clears the cache, and the revocation takes
/// effect at once.
///
/// A request that read a key from storage just before its revocation must
/// not put it back afterwards, so the cache counts its clears: a key read
/// during one generation is cached only if no clear came since.
#[derive(Clone, Default)]
struct KeyCache(Arc<RwLock<Keys>>);

#[derive(Default)]
struct Keys {
    by_hash: HashMap<String, Principal>,
    generation: u64,
}

impl KeyCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal of a key's hash: from the cache, or else from `lookup`
    /// (storage), cached unless the cache was cleared meanwhile.
    async fn resolve(
        &self,
        hash: String,
        lookup: impl Future<Output = Result<Option<Principal>, Error>>,
    ) -> Result<Principal, Error> {
        let generation = {
            let keys = self.read();
            if let Some(principal) = keys.by_hash.get(&hash) {
                return Ok(principal.clone());
            }
            keys.generation
        };
        let principal = lookup
            .await?
            .ok_or(Error::Unauthorized("unknown or revoked API key"))?;
        let mut keys = self.write();
        if keys.generation == generation {
            keys.by_hash.insert(hash, principal.clone());
        }
        Ok(principal)
    }

    /// Forgets every key; the next request of each goes to storage.
    fn clear(&self) {
        let mut keys = self.write();
        keys.by_hash.clear();
        keys.generation += 1;
    }

    /// Whether a key's hash is cached.
    #[cfg(test)]
    fn holds(&self, hash: &str) -> bool {
        self.read().by_hash.contains_key(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            tenant_id: "ten_1".into(),
            key_name: "default".into(),
            role: Role::Manage,
        }
    }

    #[tokio::test]
    async fn a_key_read_before_its_revocation_is_not_cached_after_it() {
        let cache = KeyCache::default();
        // The revocation lands while the request's storage read is under
        // way: the read still found the key, but it must not be cached.
        let during = cache.clone();
        let found = cache
            .resolve("h".into(), async move {
                during.clear();
                Ok(Some(principal()))
            })
            .await;
        assert!(found.is_ok(), "the request that read it in time passes");
        assert!(!cache.holds("h"), "the revoked key stays out of the cache");

        cache
            .resolve("h".into(), async { Ok(Some(principal())) })
            .await
            .unwrap();
        assert!(cache.holds("h"), "a quiet read is cached");
        cache.clear();
        assert!(!cache.holds("h"));
        let gone = cache.resolve("h".into(), async { Ok(None) }).await;
        assert!(matches!(gone, Err(Error::Unauthorized(_))));
    }
}
