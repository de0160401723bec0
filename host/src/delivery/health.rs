//! How a callback fares: its run of failed deliveries, kept in the store
//! and counted atomically there, so that every node sees one count; and
//! the decision to disable a callback that keeps failing or that its
//! receiver unsubscribed.

use super::Inner;
use crate::domain::Result;
use crate::model::{Delivery, DeliveryStatus};

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
    let now = inner.clock.now_ms();
    let health = inner
        .store
        .callbacks()
        .record_health(&delivery.callback_id, failed, now)
        .await?;
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
