//! Who is calling: the administrator, or a tenant's API key with a role.
//! Both are bearer tokens; tenant keys are looked up by their hash.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::Error;
use crate::ids::token_hash;
use crate::model::Role;

/// A request authenticated with a tenant API key.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant the key belongs to.
    pub tenant_id: String,
    /// The key's name, recorded as `created_by` / `updated_by`.
    pub key_name: String,
    /// What the key may do.
    pub role: Role,
}

impl Principal {
    /// Passes if the key's role is one of `allowed`.
    pub fn require(&self, allowed: &[Role], action: &str) -> Result<(), Error> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "a key with role `{}` cannot {action}",
                serde_json::to_value(self.role)
                    .expect("roles serialize")
                    .as_str()
                    .unwrap_or("?")
            )))
        }
    }
}

/// A request authenticated with the administrator token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

fn bearer(parts: &Parts) -> Result<&str, Error> {
    let header =
        parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(Error::Unauthorized(
                "missing `Authorization: Bearer <key>` header",
            ))?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(Error::Unauthorized(
            "the Authorization header must be `Bearer <key>`",
        ))
}

/// Known keys by hash, so that authenticating a request costs no storage
/// round trip. Revoking a key clears the cache, and the revocation takes
/// effect at once.
///
/// A request that read a key from storage just before its revocation must
/// not put it back afterwards, so the cache counts its clears: a key read
/// during one generation is cached only if no clear came since.
#[derive(Clone, Default)]
pub struct KeyCache(Arc<RwLock<Keys>>);

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
    pub async fn resolve(
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
    pub fn clear(&self) {
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

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        Principal::from_key(state, bearer(parts)?).await
    }
}

impl Principal {
    /// The principal an API key stands for, however the key arrived.
    pub async fn from_key(state: &AppState, key: &str) -> Result<Self, Error> {
        let hash = token_hash(key);
        let lookup = hash.clone();
        let db = state.db.clone();
        state
            .keys
            .resolve(hash, async move {
                let key = db.run(move |s| s.key_by_hash(&lookup)).await?;
                Ok(key.map(|key| Principal {
                    tenant_id: key.tenant_id,
                    key_name: key.name,
                    role: key.role,
                }))
            })
            .await
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let given = Sha256::digest(bearer(parts)?.as_bytes());
        // Comparing digests keeps the comparison's timing independent of
        // how much of the secret token a guess got right.
        if given.as_slice() == state.admin_token_sha256.as_slice() {
            Ok(Admin)
        } else {
            Err(Error::Unauthorized(
                "this endpoint needs the administrator token",
            ))
        }
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
