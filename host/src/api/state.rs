//! What every handler can reach: the services, behind one `Arc`.

use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::delivery::Deliverer;
use crate::domain::callbacks::Callbacks;
use crate::domain::events::Events;
use crate::domain::plugins::Plugins;
use crate::domain::subscriptions::Subscriptions;
use crate::domain::templates::Templates;
use crate::domain::tenants::Tenants;
use crate::store::Store;

/// The state handlers share. Handlers get their own copy on every request,
/// and one reference count costs far less under load than one per service.
#[derive(Clone)]
pub struct AppState(pub Arc<Services>);

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// Tenants and keys.
    pub tenants: Tenants,
    /// Plugins.
    pub plugins: Plugins,
    /// Callbacks.
    pub callbacks: Callbacks,
    /// Callback templates.
    pub templates: Templates,
    /// Subscriptions made from templates.
    pub subscriptions: Subscriptions,
    /// Event intake.
    pub events: Events,
    /// After-event delivery.
    pub deliverer: Deliverer,
    /// The loaded configuration.
    pub config: Arc<Config>,
    /// SHA-256 of the administrator token.
    pub admin_token_sha256: [u8; 32],
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Storage itself, for `/healthz` only: it says whether storage answers.
    pub store: Store,
}
