//! How a callback fares: its run of failed deliveries, kept in the store
//! and counted atomically there, so that every node sees one count; and
//! the decision to disable a callback that keeps failing or that its
//! receiver unsubscribed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::Inner;
use crate::domain::Result;
use crate::model::{Delivery, DeliveryStatus};
use crate::store::{Change, Changes};

/// Counts a finished delivery into its callback's health, and disables the
/// callback when the receiver unsubscribed (`gone`, a 410) or it has been
/// failing past a threshold.
pub(super) async fn settle(inner: &Inner, delivery: &Delivery, gone: Option<String>) -> Result<()> {
    if let Some(reason) = gone {
        return inner
            .callbacks
            .disable(&delivery.tenant_id, &delivery.callback_id, &reason)
            .await;
    }
    let failed = match delivery.status {
        DeliveryStatus::Succeeded => false,
        DeliveryStatus::Failed => true,
        _ => return Ok(()),
    };
    // A success on a callback known to have no run of failures changes
    // nothing; most deliveries are such, and skip the store.
    if !failed && inner.healthy.knows(&delivery.callback_id) {
        return Ok(());
    }
    let now = inner.clock.now_ms();
    let health = inner
        .store
        .callbacks()
        .record_health(&delivery.callback_id, failed, now)
        .await?;
    if failed {
        inner.healthy.forget(&delivery.callback_id);
    } else {
        inner.healthy.learn(&delivery.callback_id);
    }
    let hours = health
        .failing_since
        .map_or(0, |since| now.saturating_sub(since) / 3_600_000);
    let reason = if health.consecutive_failures >= inner.config.disable_after_failures {
        format!(
            "disabled after {} failed deliveries in a row",
            health.consecutive_failures
        )
    } else if failed && hours >= inner.config.disable_after_hours {
        format!("disabled after failing for {hours} hours")
    } else {
        return Ok(());
    };
    inner
        .callbacks
        .disable(&delivery.tenant_id, &delivery.callback_id, &reason)
        .await
}

/// The callbacks this node knows to have no run of failures, so that a
/// success on them needs no store write. A failure anywhere (the store
/// announces it) takes a callback out.
#[derive(Clone, Default)]
pub(super) struct Healthy(Arc<Mutex<HashSet<String>>>);

impl Healthy {
    /// A set kept in step with the failures `changes` announces.
    pub(super) fn following(changes: &Changes) -> Self {
        let healthy = Healthy::default();
        let listening = healthy.clone();
        changes.subscribe(move |change| match change {
            Change::Health { callback } => listening.forget(callback),
            Change::Resync => listening.set().clear(),
            _ => {}
        });
        healthy
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn knows(&self, callback: &str) -> bool {
        self.set().contains(callback)
    }

    fn learn(&self, callback: &str) {
        self.set().insert(callback.to_string());
    }

    fn forget(&self, callback: &str) {
        self.set().remove(callback);
    }
}
