//! Tenants and their API keys.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::now_ms;
use crate::ids::{new_id, new_token, token_hash};
use crate::input;
use crate::model::{ApiKey, Role, Tenant};
use crate::store::Db;

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

/// Creates a tenant with a first `manage` key, returning the key's secret,
/// which is never shown again.
pub async fn create_tenant(db: &Db, new: NewTenant) -> Result<(Tenant, String)> {
    input::text("name", &new.name, 200)?;
    let tenant = Tenant {
        id: new_id("ten"),
        name: new.name,
        created_at: now_ms(),
    };
    let (key, secret) = make_key(&tenant.id, "default".into(), Role::Manage);
    let stored = tenant.clone();
    db.write(move |s| s.insert_tenant(&stored, &key)).await?;
    Ok((tenant, secret))
}

/// Every tenant.
pub async fn list_tenants(db: &Db) -> Result<Vec<Tenant>> {
    Ok(db.run(|s| s.tenants()).await?)
}

/// Creates a key for a tenant, returning its secret once.
pub async fn create_key(db: &Db, tenant: &str, new: NewKey) -> Result<(KeyView, String)> {
    input::text("name", &new.name, 200)?;
    let (key, secret) = make_key(tenant, new.name, new.role);
    let stored = key.clone();
    db.write(move |s| s.insert_key(&stored)).await?;
    Ok((key.into(), secret))
}

/// A tenant's keys, without their secrets.
pub async fn list_keys(db: &Db, tenant: &str) -> Result<Vec<KeyView>> {
    let tenant = tenant.to_string();
    let keys = db.run(move |s| s.keys(&tenant)).await?;
    Ok(keys.into_iter().map(KeyView::from).collect())
}

/// Revokes a key at once: its hash is gone, so the next request with it fails.
pub async fn revoke_key(db: &Db, tenant: &str, id: &str) -> Result<()> {
    let (tenant, key_id) = (tenant.to_string(), id.to_string());
    if db.write(move |s| s.delete_key(&tenant, &key_id)).await? {
        Ok(())
    } else {
        Err(Error::not_found("key", id))
    }
}

fn make_key(tenant: &str, name: String, role: Role) -> (ApiKey, String) {
    let secret = new_token(KEY_PREFIX);
    let key = ApiKey {
        id: new_id("key"),
        tenant_id: tenant.to_string(),
        name,
        role,
        hash: token_hash(&secret),
        prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
        created_at: now_ms(),
    };
    (key, secret)
}
