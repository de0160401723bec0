//! Callback templates: callbacks whose URL and header values hold OpenAPI
//! runtime expressions, waiting for a subscription request to fill them.

use super::callbacks::Callbacks;
use super::{Error, Result, expr, input};
use crate::clock::SharedClock;
use crate::model::ids::new_id;
use crate::model::{CallbackInput, Template};
use crate::store::{Store, StoreError};

/// Longest template name: a subscription's callback is named
/// `TEMPLATE/SUBSCRIPTION-ID`, and callback names stop at 128 characters.
pub const MAX_NAME: usize = 96;

/// Stands in for a URL that only a subscription can fill, so the rest of a
/// template can be checked like a callback.
const PLACEHOLDER_URL: &str = "https://template.invalid/";

/// The template service.
#[derive(Clone)]
pub struct Templates {
    store: Store,
    callbacks: Callbacks,
    clock: SharedClock,
}

impl Templates {
    /// A service over `store`, checking templates with `callbacks`' rules.
    pub fn new(store: Store, callbacks: Callbacks, clock: SharedClock) -> Self {
        Templates {
            store,
            callbacks,
            clock,
        }
    }

    /// Stores a new template.
    pub async fn create(&self, tenant: &str, by: &str, spec: CallbackInput) -> Result<Template> {
        self.check(tenant, &spec).await?;
        let now = self.clock.now_ms();
        let template = Template {
            id: new_id("tpl"),
            tenant_id: tenant.to_string(),
            spec,
            created_at: now,
            updated_at: now,
            created_by: by.to_string(),
            updated_by: by.to_string(),
        };
        self.save(template).await
    }

    /// One template.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Template> {
        self.store
            .callbacks()
            .template(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("template", id))
    }

    /// A template by id, or else by name: how a subscription names it.
    pub async fn find(&self, tenant: &str, id_or_name: &str) -> Result<Template> {
        let repo = self.store.callbacks();
        let found = match repo.template(tenant, id_or_name).await? {
            Some(found) => Some(found),
            None => repo.template_by_name(tenant, id_or_name).await?,
        };
        found.ok_or_else(|| {
            Error::invalid(
                "template",
                format!("no template with id or name `{id_or_name}` in this tenant"),
            )
        })
    }

    /// Every template, oldest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<Template>> {
        Ok(self.store.callbacks().templates(tenant).await?)
    }

    /// Replaces a template. Callbacks already made from it keep what they
    /// were made with.
    pub async fn replace(
        &self,
        tenant: &str,
        id: &str,
        by: &str,
        spec: CallbackInput,
    ) -> Result<Template> {
        let old = self.get(tenant, id).await?;
        self.check(tenant, &spec).await?;
        self.save(Template {
            spec,
            updated_at: self.clock.now_ms(),
            updated_by: by.to_string(),
            ..old
        })
        .await
    }

    /// Deletes a template; its subscriptions stay until unsubscribed.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<()> {
        if self.store.callbacks().delete_template(tenant, id).await? {
            Ok(())
        } else {
            Err(Error::not_found("template", id))
        }
    }

    async fn save(&self, template: Template) -> Result<Template> {
        match self.store.callbacks().put_template(&template).await {
            Ok(()) => Ok(template),
            Err(StoreError::Conflict(_)) => Err(Error::Conflict {
                code: "name_taken",
                message: format!("a template named `{}` already exists", template.spec.name),
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// Checks a template: its expressions must parse, and with them filled
    /// in, it must make a valid callback.
    async fn check(&self, tenant: &str, spec: &CallbackInput) -> Result<()> {
        input::text("name", &spec.name, MAX_NAME)?;
        let mut probe = spec.clone();
        if let Some(url) = &spec.url
            && expr::has_expressions(url)
        {
            expr::check(url).map_err(|e| Error::invalid("url", e.to_string()))?;
            probe.url = Some(PLACEHOLDER_URL.into());
        }
        for (name, value) in probe.headers.iter_mut() {
            if expr::has_expressions(value) {
                expr::check(value)
                    .map_err(|e| Error::invalid(format!("headers.{name}"), e.to_string()))?;
                *value = "filled-by-subscription".into();
            }
        }
        self.callbacks.check(tenant, probe).await
    }
}
