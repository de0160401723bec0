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
/// round trip. This process is the only writer of keys, so revoking a key
/// clears the cache and the revocation still takes effect at once.
#[derive(Clone, Default)]
pub struct KeyCache(Arc<RwLock<HashMap<String, Principal>>>);

impl KeyCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn insert(&self, hash: String, principal: Principal) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, principal);
    }

    /// Forgets every key; the next request of each goes to storage.
    pub fn clear(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
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
        if let Some(principal) = state.keys.get(&hash) {
            return Ok(principal);
        }
        let lookup = hash.clone();
        let key = state
            .db
            .run(move |s| s.key_by_hash(&lookup))
            .await?
            .ok_or(Error::Unauthorized("unknown or revoked API key"))?;
        let principal = Principal {
            tenant_id: key.tenant_id,
            key_name: key.name,
            role: key.role,
        };
        state.keys.insert(hash, principal.clone());
        Ok(principal)
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
