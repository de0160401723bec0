//! Who is calling, as extractors: the administrator, or a tenant's API key
//! whose role the endpoint allows. Both are bearer tokens. A handler names
//! the roles it allows in its argument's type, `Caller<Manage>` say, and
//! never checks a role itself.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::state::AppState;
use crate::domain::Error;
use crate::domain::tenants::Principal;
use crate::model::Role;

/// The roles an endpoint allows.
pub(crate) trait Roles: Send + Sync + 'static {
    /// Which.
    const ALLOWED: &'static [Role];
}

/// Only `manage` keys: changes to the tenant's set-up.
pub(crate) struct Manage;
/// `manage` and `read` keys: history.
pub(crate) struct ManageOrRead;
/// `manage` and `emit` keys: events and subscriptions, as a host system
/// sends them.
pub(crate) struct ManageOrEmit;

impl Roles for Manage {
    const ALLOWED: &'static [Role] = &[Role::Manage];
}
impl Roles for ManageOrRead {
    const ALLOWED: &'static [Role] = &[Role::Manage, Role::Read];
}
impl Roles for ManageOrEmit {
    const ALLOWED: &'static [Role] = &[Role::Manage, Role::Emit];
}

/// A request made with a tenant key whose role is one of `R::ALLOWED`.
pub(crate) struct Caller<R> {
    principal: Principal,
    roles: PhantomData<R>,
}

impl<R> std::ops::Deref for Caller<R> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<R: Roles> FromRequestParts<AppState> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = state.tenants.authenticate(bearer(parts)?).await?;
        if !R::ALLOWED.contains(&principal.role) {
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
            let allowed: Vec<String> = R::ALLOWED
                .iter()
                .map(|r| format!("`{}`", r.as_str()))
                .collect();
            return Err(ApiError::Forbidden(format!(
                "a key with role `{}` cannot use {} {route}; it needs {}",
                principal.role.as_str(),
                parts.method,
                allowed.join(" or ")
            )));
        }
        Ok(Caller {
            principal,
            roles: PhantomData,
        })
    }
}

/// A request authenticated with the administrator token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = Sha256::digest(bearer(parts)?.as_bytes());
        // Comparing digests keeps the comparison's timing independent of
        // how much of the secret token a guess got right.
        if given.as_slice() == state.admin_token_sha256.as_slice() {
            Ok(Admin)
        } else {
            Err(Error::Unauthorized("this endpoint needs the administrator token").into())
        }
    }
}

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
