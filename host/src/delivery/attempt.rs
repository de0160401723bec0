//! One delivery attempt: build the request (envelope, plugin transform),
//! sign the final body, send it, and turn the result into the delivery's
//! next state and an activation for history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use super::retry::{self, Verdict};
use crate::error::Result;
use crate::event::now_ms;
use crate::ids::new_id;
use crate::model::{
    Activation, Callback, Delivery, DeliveryStatus, EventRecord, HttpRecord, RetryPolicy,
};
use crate::outbound::{self, Answer, Request, SendError, signing_secrets};
use crate::plugin::Transformed;

/// An attempt's result.
pub(super) struct Outcome {
    /// The delivery's new state.
    pub(super) delivery: Delivery,
    /// The attempt's history record.
    pub(super) activation: Activation,
    /// `succeeded`, `failed`, `retrying`, `skipped` or `blocked`, for metrics.
    pub(super) label: &'static str,
    /// Set when the receiver unsubscribed: why the callback is disabled.
    pub(super) gone: Option<String>,
}

/// What happened, before it is written down.
struct Result_ {
    status: DeliveryStatus,
    verdict: Option<Verdict>,
    error_class: Option<&'static str>,
    error: Option<String>,
    request: Option<HttpRecord>,
    response: Option<Answer>,
    retry_after: Option<Duration>,
}

impl Result_ {
    fn final_error(status: DeliveryStatus, class: &'static str, error: String) -> Self {
        Result_ {
            status,
            verdict: None,
            error_class: Some(class),
            error: Some(error),
            request: None,
            response: None,
            retry_after: None,
        }
    }
}

/// Makes one attempt, and hands back the event for the next one. `manual`
/// attempts are never rescheduled.
pub(super) async fn make(
    inner: &Arc<Inner>,
    mut delivery: Delivery,
    record: Option<Arc<EventRecord>>,
    manual: bool,
) -> Result<(Outcome, Option<Arc<EventRecord>>)> {
    let started_at = now_ms();
    let clock = Instant::now();
    delivery.attempts += 1;
    let record = match record {
        Some(record) => Some(record),
        None => {
            let (tenant, event_id) = (delivery.tenant_id.clone(), delivery.event_id.clone());
            inner
                .db
                .run(move |s| s.event(&tenant, &event_id))
                .await?
                .map(Arc::new)
        }
    };
    let callback = inner
        .callbacks
        .cached(&delivery.tenant_id, &delivery.callback_id)
        .await?;
    let policy = callback.as_ref().and_then(|c| c.retry.clone());
    let result = match (record.as_deref(), callback) {
        (None, _) => Result_::final_error(
            DeliveryStatus::Failed,
            "gone",
            "the event is no longer stored (pruned by retention)".into(),
        ),
        (_, None) => Result_::final_error(
            DeliveryStatus::Failed,
            "gone",
            "the callback was deleted".into(),
        ),
        (Some(_), Some(callback)) if !callback.enabled && !manual => Result_::final_error(
            DeliveryStatus::Failed,
            "disabled",
            format!(
                "the callback is disabled{}",
                callback
                    .disabled_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
        (Some(event), Some(callback)) => send(inner, &delivery, event, &callback).await,
    };
    let outcome = conclude(
        inner,
        delivery,
        result,
        policy,
        started_at,
        clock.elapsed(),
        manual,
    );
    Ok((outcome, record))
}

/// Builds, signs and sends the request.
async fn send(
    inner: &Inner,
    delivery: &Delivery,
    record: &EventRecord,
    callback: &Callback,
) -> Result_ {
    let Some(url) = callback.url.clone() else {
        return Result_::final_error(
            DeliveryStatus::Failed,
            "config",
            "the callback has no URL".into(),
        );
    };
    let event = &record.event;
    let mut transformed = Request::envelope(event);
    if let Some(reference) = &callback.plugin {
        let Some(plugin) = inner.registry.get(&reference.id) else {
            return Result_::final_error(
                DeliveryStatus::Failed,
                "plugin",
                format!("plugin `{}` is not available", reference.id),
            );
        };
        let config = Arc::new(reference.config.clone());
        match inner
            .registry
            .runtime()
            .transform(&plugin, config, event, transformed)
            .await
        {
            Ok(out) => match out.value {
                Transformed::Send(changed) => transformed = changed,
                Transformed::Skip(reason) => {
                    return Result_::final_error(
                        DeliveryStatus::Skipped,
                        "skipped",
                        format!("skipped by the plugin: {reason}"),
                    );
                }
            },
            Err(err) => {
                return Result_::final_error(
                    DeliveryStatus::Failed,
                    "plugin",
                    format!("plugin transform failed: {err}"),
                );
            }
        }
    }

    let mut chain = record.causation.clone();
    chain.push(event.id.clone());
    let mut request = Request::build(&url, transformed, &callback.headers, &chain.join(","));
    let now = now_ms();
    if let Err(err) = request.sign(&signing_secrets(callback, now), &delivery.id, now) {
        return Result_::final_error(DeliveryStatus::Failed, "config", err.to_string());
    }
    let timeout = Duration::from_millis(callback.timeout_ms.unwrap_or(inner.config.timeout_ms));
    let request_record = request.record();
    match inner.http.send(request, timeout).await {
        Ok(answer) => {
            let verdict = retry::classify_status(answer.status);
            let cap = Duration::from_secs(inner.config.max_retry_after_secs);
            let retry_after = answer
                .headers
                .iter()
                .find(|(name, _)| name == "retry-after")
                .and_then(|(_, value)| {
                    retry::retry_after(value, cap, std::time::SystemTime::now())
                });
            let (status, class, error) = match verdict {
                Verdict::Delivered => (DeliveryStatus::Succeeded, None, None),
                Verdict::Gone => (
                    DeliveryStatus::Failed,
                    Some("gone"),
                    Some("the receiver answered 410 Gone: it unsubscribed".to_string()),
                ),
                Verdict::Retry | Verdict::Final => (
                    DeliveryStatus::Failed,
                    Some("status"),
                    Some(format!("the receiver answered HTTP {}", answer.status)),
                ),
            };
            Result_ {
                status,
                verdict: Some(verdict),
                error_class: class,
                error,
                request: Some(request_record),
                response: Some(answer),
                retry_after,
            }
        }
        Err(SendError { class, message }) => Result_ {
            status: if class == "blocked" {
                DeliveryStatus::Blocked
            } else {
                DeliveryStatus::Failed
            },
            verdict: (class != "blocked").then_some(Verdict::Retry),
            error_class: Some(class),
            error: Some(message),
            request: Some(request_record),
            response: None,
            retry_after: None,
        },
    }
}

/// Turns what happened into the delivery's next state and its activation.
fn conclude(
    inner: &Inner,
    mut delivery: Delivery,
    result: Result_,
    policy: Option<RetryPolicy>,
    started_at: u64,
    took: Duration,
    manual: bool,
) -> Outcome {
    let now = now_ms();
    let (max_attempts, schedule) = match &policy {
        Some(p) if !p.schedule_secs.is_empty() => (p.max_attempts, p.schedule_secs.as_slice()),
        Some(p) => (p.max_attempts, inner.config.schedule_secs.as_slice()),
        None => (
            inner.config.max_attempts,
            inner.config.schedule_secs.as_slice(),
        ),
    };
    let round = delivery.attempts - delivery.round_start;
    let retry = result.verdict == Some(Verdict::Retry) && !manual && round < max_attempts;
    let next_attempt_at = retry.then(|| {
        let wait = result
            .retry_after
            .unwrap_or_else(|| retry::backoff(schedule, round));
        now + wait.as_millis() as u64
    });
    let status = if retry {
        DeliveryStatus::Pending
    } else {
        result.status
    };
    let label = match status {
        DeliveryStatus::Pending => "retrying",
        other => other.as_str(),
    };
    let gone = (result.verdict == Some(Verdict::Gone)).then(|| {
        format!(
            "the receiver answered 410 Gone to delivery {} at {}: unsubscribed",
            delivery.id,
            crate::event::rfc3339(now)
        )
    });
    let activation = Activation {
        id: new_id("act"),
        tenant_id: delivery.tenant_id.clone(),
        callback_id: delivery.callback_id.clone(),
        event_id: delivery.event_id.clone(),
        delivery_id: Some(delivery.id.clone()),
        attempt: Some(delivery.attempts),
        at: started_at,
        outcome: result.status.as_str().to_string(),
        status: result.response.as_ref().map(|a| a.status),
        duration_ms: took.as_secs_f64() * 1000.0,
        error_class: result.error_class.map(String::from),
        error: result.error.clone(),
        request: result.request,
        response: result.response.as_ref().map(outbound::response_record),
        next_attempt_at,
    };
    if status == DeliveryStatus::Succeeded {
        metrics::histogram!("hookgate_delivery_latency_seconds")
            .record(now.saturating_sub(delivery.created_at) as f64 / 1000.0);
    }
    delivery.status = status;
    delivery.next_attempt_at = next_attempt_at;
    delivery.updated_at = now;
    delivery.last_error = result.error;
    delivery.attempt_ids.push(activation.id.clone());
    Outcome {
        delivery,
        activation,
        label,
        gone,
    }
}
