//! One delivery attempt: build the request (envelope, plugin transform),
//! sign the final body, send it, and turn the result into the delivery's
//! next state and an activation for history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use super::retry::{self, Disposition};
use crate::domain::Result;
use crate::model::ids::new_id;
use crate::model::{
    Activation, Callback, Delivery, DeliveryStatus, ErrorClass, EventRecord, HttpRecord,
    RetryPolicy,
};
use crate::outbound::{self, Answer, Request, SendError, signing_secrets};
use crate::plugin::{Outgoing, Transformed};

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
    disposition: Option<Disposition>,
    error_class: Option<ErrorClass>,
    error: Option<String>,
    request: Option<HttpRecord>,
    response: Option<Answer>,
    retry_after: Option<Duration>,
}

impl Result_ {
    fn final_error(status: DeliveryStatus, class: ErrorClass, error: String) -> Self {
        Result_ {
            status,
            disposition: None,
            error_class: Some(class),
            error: Some(error),
            request: None,
            response: None,
            retry_after: None,
        }
    }
}

/// Makes one attempt of a delivery whose lease this node holds, to its
/// `callback` (`None` once deleted). `manual` attempts are never
/// rescheduled. `record` is the delivery's event, when at hand.
pub(super) async fn make(
    inner: &Inner,
    mut delivery: Delivery,
    record: Option<Arc<EventRecord>>,
    callback: Option<Callback>,
    manual: bool,
) -> Result<Outcome> {
    let started_at = inner.clock.now_ms();
    let clock = Instant::now();
    delivery.attempts += 1;
    let record = match record {
        Some(record) => Some(record),
        None => inner
            .store
            .events()
            .event(&delivery.tenant_id, &delivery.event_id)
            .await?
            .map(Arc::new),
    };
    let policy = callback.as_ref().and_then(|c| c.retry.clone());
    let result = match (record.as_deref(), callback) {
        (None, _) => Result_::final_error(
            DeliveryStatus::Failed,
            ErrorClass::Gone,
            "the event is no longer stored (pruned by retention)".into(),
        ),
        (_, None) => Result_::final_error(
            DeliveryStatus::Failed,
            ErrorClass::Gone,
            "the callback was deleted".into(),
        ),
        (Some(_), Some(callback)) if !callback.enabled && !manual => Result_::final_error(
            DeliveryStatus::Failed,
            ErrorClass::Disabled,
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
    Ok(conclude(
        inner,
        delivery,
        result,
        policy,
        started_at,
        clock.elapsed(),
        manual,
    ))
}

/// Builds, signs and sends the request, and reads what the answer means.
async fn send(
    inner: &Inner,
    delivery: &Delivery,
    record: &EventRecord,
    callback: &Callback,
) -> Result_ {
    let Some(url) = callback.url.clone() else {
        return Result_::final_error(
            DeliveryStatus::Failed,
            ErrorClass::Config,
            "the callback has no URL".into(),
        );
    };
    let transformed = match transform(inner, record, callback).await {
        Ok(transformed) => transformed,
        Err(result) => return result,
    };
    let mut chain = record.causation.clone();
    chain.push(record.event.id.clone());
    let mut request = Request::build(&url, transformed, &callback.headers, &chain.join(","));
    let now = inner.clock.now_ms();
    if let Err(err) = request.sign(&signing_secrets(callback, now), &delivery.id, now) {
        return Result_::final_error(DeliveryStatus::Failed, ErrorClass::Config, err.to_string());
    }
    let timeout = Duration::from_millis(callback.timeout_ms.unwrap_or(inner.config.timeout_ms));
    let request_record = request.record();
    match inner.http.send(request, timeout).await {
        Ok(answer) => answered(inner, answer, request_record),
        Err(SendError { class, message }) => Result_ {
            status: if class == ErrorClass::Blocked {
                DeliveryStatus::Blocked
            } else {
                DeliveryStatus::Failed
            },
            disposition: (class != ErrorClass::Blocked).then_some(Disposition::Retry),
            error_class: Some(class),
            error: Some(message),
            request: Some(request_record),
            response: None,
            retry_after: None,
        },
    }
}

/// The body and headers to send: the envelope, or what the callback's
/// plugin made of it. A skip or a plugin failure ends the attempt.
async fn transform(
    inner: &Inner,
    record: &EventRecord,
    callback: &Callback,
) -> std::result::Result<Outgoing, Result_> {
    let event = &record.event;
    let envelope = Request::envelope(event);
    let Some(reference) = &callback.plugin else {
        return Ok(envelope);
    };
    let plugin = inner
        .plugins
        .get(&callback.tenant_id, &reference.id)
        .await
        .map_err(|unavailable| Result_ {
            // A plugin still compiling, or a node that could not load it,
            // may do next time; a deleted or broken one will not.
            disposition: unavailable.retryable.then_some(Disposition::Retry),
            ..Result_::final_error(
                DeliveryStatus::Failed,
                ErrorClass::Plugin,
                unavailable.to_string(),
            )
        })?;
    // Attaching refuses this; a callback stored by a node that predates the
    // check must still not send what its plugin was meant to shape.
    if !plugin.exports("transform") {
        return Err(Result_::final_error(
            DeliveryStatus::Failed,
            ErrorClass::Plugin,
            "its plugin does not export `transform`, the only hook an after-callback runs"
                .to_string(),
        ));
    }
    let config = Arc::new(reference.config_text());
    match inner
        .plugins
        .runtime()
        .transform(&plugin, config, event, envelope)
        .await
    {
        Ok(out) => match out.value {
            Transformed::Send(changed) => Ok(changed),
            Transformed::Skip(reason) => Err(Result_::final_error(
                DeliveryStatus::Skipped,
                ErrorClass::Skipped,
                format!("skipped by the plugin: {reason}"),
            )),
        },
        Err(err) => Err(Result_::final_error(
            DeliveryStatus::Failed,
            ErrorClass::Plugin,
            format!("plugin transform failed: {err}"),
        )),
    }
}

/// What a receiver's answer means: delivered, worth a retry (honouring a
/// capped `Retry-After`), final, or an unsubscription.
fn answered(inner: &Inner, answer: Answer, request: HttpRecord) -> Result_ {
    let disposition = retry::classify_status(answer.status);
    let cap = Duration::from_secs(inner.config.max_retry_after_secs);
    let now = std::time::UNIX_EPOCH + Duration::from_millis(inner.clock.now_ms());
    let retry_after = answer
        .headers
        .iter()
        .find(|(name, _)| name == "retry-after")
        .and_then(|(_, value)| retry::retry_after(value, cap, now));
    let (status, class, error) = match disposition {
        Disposition::Delivered => (DeliveryStatus::Succeeded, None, None),
        Disposition::Gone => (
            DeliveryStatus::Failed,
            Some(ErrorClass::Gone),
            Some("the receiver answered 410 Gone: it unsubscribed".to_string()),
        ),
        Disposition::Retry | Disposition::Final => (
            DeliveryStatus::Failed,
            Some(ErrorClass::Status),
            Some(format!("the receiver answered HTTP {}", answer.status)),
        ),
    };
    Result_ {
        status,
        disposition: Some(disposition),
        error_class: class,
        error,
        request: Some(request),
        response: Some(answer),
        retry_after,
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
    let now = inner.clock.now_ms();
    let (max_attempts, schedule) = match &policy {
        Some(p) if !p.schedule_secs.is_empty() => (p.max_attempts, p.schedule_secs.as_slice()),
        Some(p) => (p.max_attempts, inner.config.schedule_secs.as_slice()),
        None => (
            inner.config.max_attempts,
            inner.config.schedule_secs.as_slice(),
        ),
    };
    let round = delivery.attempts - delivery.round_start;
    let retry = result.disposition == Some(Disposition::Retry) && !manual && round < max_attempts;
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
    let gone = (result.disposition == Some(Disposition::Gone)).then(|| {
        format!(
            "the receiver answered 410 Gone to delivery {} at {}: unsubscribed",
            delivery.id,
            crate::model::event::rfc3339(now)
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
        outcome: result.status.into(),
        status: result.response.as_ref().map(|a| a.status),
        duration_ms: took.as_secs_f64() * 1000.0,
        error_class: result.error_class,
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
