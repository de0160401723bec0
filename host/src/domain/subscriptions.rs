//! Subscriptions: a subscribe request, as an OpenAPI 3 API receives it,
//! fills a template's runtime expressions and becomes a real callback.
//! Unsubscribing deletes that callback.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::callbacks::Callbacks;
use super::expr::{self, Exchange, Message};
use super::templates::Templates;
use super::{Error, Result, input};
use crate::model::ids::new_id;
use crate::model::{Callback, SubscriptionRef};

/// A subscribe request, as the tenant's API received it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"template": "order-events",
    "request": {"url": "/subscribe", "headers": {"x-client-id": "client-7"},
                "body": {"callbackUrl": "https://client.example/hooks"}}})))]
pub struct SubscriptionInput {
    /// The template's id or name.
    pub template: String,
    /// The subscribe request.
    pub request: RequestInput,
    /// The API's answer to it, for `$response.…` and `$statusCode`.
    #[serde(default)]
    pub response: Option<ResponseInput>,
}

/// The subscribe request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    /// `$method`; POST when absent.
    #[serde(default = "post")]
    pub method: String,
    /// `$url`: the absolute URL, or only its path (with a query string),
    /// which serves every expression but `$url`. Its query string also
    /// feeds `$request.query.…`.
    #[serde(default)]
    pub url: String,
    /// `$request.header.…`, matched ignoring case.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `$request.query.…`, over any the URL has.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// `$request.path.…`
    #[serde(default)]
    pub path_params: BTreeMap<String, String>,
    /// `$request.body#/…`
    #[serde(default)]
    pub body: Option<Value>,
}

/// The answer to the subscribe request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseInput {
    /// `$statusCode`
    pub status: u16,
    /// `$response.header.…`
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `$response.body#/…`
    #[serde(default)]
    pub body: Option<Value>,
}

fn post() -> String {
    "POST".into()
}

/// A subscription as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    /// `sub_…`
    pub id: String,
    /// The callback it made.
    pub callback_id: String,
    /// The resolved URL.
    pub url: Option<String>,
    /// The template it was made from.
    pub template_id: String,
    /// That template's name when it was made.
    pub template_name: String,
    /// False once the receiver answered 410 Gone, or the callback was
    /// disabled by other means.
    pub enabled: bool,
    /// Why it was disabled, when Hookgate disabled it.
    pub disabled_reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl SubscriptionView {
    fn of(callback: &Callback) -> Option<Self> {
        let sub = callback.subscription.as_ref()?;
        Some(SubscriptionView {
            id: sub.id.clone(),
            callback_id: callback.id.clone(),
            url: callback.url.clone(),
            template_id: sub.template_id.clone(),
            template_name: sub.template_name.clone(),
            enabled: callback.enabled,
            disabled_reason: callback.disabled_reason.clone(),
            created_at: callback.created_at,
        })
    }
}

/// The subscription service.
#[derive(Clone)]
pub struct Subscriptions {
    templates: Templates,
    callbacks: Callbacks,
}

impl Subscriptions {
    /// A service making callbacks from `templates`.
    pub fn new(templates: Templates, callbacks: Callbacks) -> Self {
        Subscriptions {
            templates,
            callbacks,
        }
    }

    /// Fills the template from the request and registers the callback.
    pub async fn subscribe(
        &self,
        tenant: &str,
        by: &str,
        input: SubscriptionInput,
    ) -> Result<SubscriptionView> {
        let template = self.templates.find(tenant, &input.template).await?;
        let exchange = exchange(input.request, input.response)?;
        let mut spec = template.spec.clone();
        if let Some(url) = &template.spec.url {
            let resolved = fill("url", url, &exchange)?;
            input::http_url("url", &resolved).map_err(|e| {
                Error::invalid(
                    "url",
                    format!("`{url}` resolved to `{resolved}`, which is refused: {e}"),
                )
            })?;
            spec.url = Some(resolved);
        }
        for (name, value) in spec.headers.iter_mut() {
            *value = fill(&format!("headers.{name}"), value, &exchange)?;
        }
        let id = new_id("sub");
        spec.name = format!("{}/{id}", template.spec.name);
        spec.enabled = true;
        let subscription = SubscriptionRef {
            id,
            template_id: template.id,
            template_name: template.spec.name,
        };
        let view = self
            .callbacks
            .subscribe(tenant, by, spec, subscription)
            .await?;
        Ok(SubscriptionView::of(&view.callback).expect("made by a subscription"))
    }

    /// Every subscription, oldest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<SubscriptionView>> {
        Ok(self
            .callbacks
            .subscribed(tenant)
            .await?
            .iter()
            .filter_map(SubscriptionView::of)
            .collect())
    }

    /// One subscription.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<SubscriptionView> {
        let callback = self.callbacks.by_subscription(tenant, id).await?;
        Ok(SubscriptionView::of(&callback).expect("found by its subscription"))
    }

    /// Unsubscribes: deletes the callback, so nothing more is delivered.
    /// Its delivery history stays until retention prunes it.
    pub async fn unsubscribe(&self, tenant: &str, id: &str) -> Result<()> {
        let callback = self.callbacks.by_subscription(tenant, id).await?;
        self.callbacks.delete(tenant, &callback.id).await
    }
}

/// Whether a request URL is only a path, with an optional query string.
fn is_path(url: &str) -> bool {
    url.starts_with('/') && !url.starts_with("//")
}

/// Renders one template field, naming the field and expression that fail.
fn fill(field: &str, template: &str, exchange: &Exchange) -> Result<String> {
    expr::render(template, exchange).map_err(|e| Error::invalid(field, e.to_string()))
}

/// The exchange expressions read, from the request as given.
fn exchange(request: RequestInput, response: Option<ResponseInput>) -> Result<Exchange> {
    let mut query = BTreeMap::new();
    if !request.url.is_empty() {
        // Host systems often know only the path they were called on; that
        // serves every expression but `$url`, which says so if used.
        let parsed = if is_path(&request.url) {
            url::Url::parse("http://path.invalid").and_then(|base| base.join(&request.url))
        } else {
            url::Url::parse(&request.url)
        };
        let url = parsed.map_err(|e| {
            Error::invalid(
                "request.url",
                format!(
                    "is neither an absolute URL nor a path starting with `/` ({e}): `{}`",
                    request.url
                ),
            )
        })?;
        query.extend(
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    query.extend(request.query);
    Ok(Exchange {
        url: request.url,
        method: request.method,
        request: Message {
            headers: request.headers,
            query,
            path: request.path_params,
            body: request.body,
        },
        status_code: response.as_ref().map(|r| r.status),
        response: response.map(|r| Message {
            headers: r.headers,
            body: r.body,
            ..Message::default()
        }),
    })
}
