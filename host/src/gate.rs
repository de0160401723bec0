//! The before-event gate: run the matching callbacks in name order and
//! answer allow or deny. The first deny ends the gate, and every failure —
//! a plugin error, a timeout, a refused connection, an unexpected status —
//! is a deny whose reason says which.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::event::{Event, Verdict};
use crate::ids::new_id;
use crate::model::{Activation, Callback, Decision};
use crate::outbound::{self, HttpClient, Request, signing_secrets};
use crate::plugin::{Incoming, Transformed};
use crate::registry::Registry;

/// What the gate needs.
#[derive(Clone)]
pub struct Gate {
    registry: Registry,
    http: HttpClient,
    default_timeout: Duration,
}

/// The gate's answer.
#[derive(Debug, Clone)]
pub struct GateOutcome {
    /// True when no callback denied.
    pub allowed: bool,
    /// One decision per callback that ran, in order.
    pub decisions: Vec<Decision>,
    /// The history of each callback that ran.
    pub activations: Vec<Activation>,
}

/// One callback's run: its verdict and what history should keep.
struct Run {
    verdict: Verdict,
    /// Why an allow needs explaining, such as a plugin skipping the request.
    note: Option<String>,
    status: Option<u16>,
    error_class: Option<&'static str>,
    request: Option<crate::model::HttpRecord>,
    response: Option<crate::model::HttpRecord>,
}

impl Run {
    fn new() -> Self {
        Run {
            verdict: Verdict::Allow,
            note: None,
            status: None,
            error_class: None,
            request: None,
            response: None,
        }
    }

    fn deny(mut self, class: &'static str, reason: String) -> Self {
        self.verdict = Verdict::Deny(reason);
        self.error_class = Some(class);
        self
    }
}

impl Gate {
    /// A gate calling plugins from `registry` and URLs with `http`.
    pub fn new(registry: Registry, http: HttpClient, default_timeout: Duration) -> Self {
        Gate {
            registry,
            http,
            default_timeout,
        }
    }

    /// Runs `callbacks` (already in name order) for `event`.
    /// `causation` is the chain of event ids ending with this event's.
    pub async fn run(&self, event: &Event, causation: &str, callbacks: &[Callback]) -> GateOutcome {
        let mut outcome = GateOutcome {
            allowed: true,
            decisions: Vec::new(),
            activations: Vec::new(),
        };
        for callback in callbacks {
            let started_at = crate::event::now_ms();
            let clock = Instant::now();
            let activation_id = new_id("act");
            let span = tracing::info_span!("gate_callback", callback = %callback.id, name = %callback.name);
            let run = self
                .run_one(event, causation, callback, &activation_id)
                .instrument(span)
                .await;
            let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
            let (verdict, reason) = match &run.verdict {
                Verdict::Allow => ("allow", run.note.clone()),
                Verdict::Deny(reason) => ("deny", Some(reason.clone())),
            };
            metrics::counter!("hookgate_gate_decisions_total", "verdict" => verdict).increment(1);
            outcome.decisions.push(Decision {
                callback_id: callback.id.clone(),
                callback_name: callback.name.clone(),
                verdict: verdict.to_string(),
                reason: reason.clone(),
                status: run.status,
                duration_ms,
                activation_id: activation_id.clone(),
            });
            outcome.activations.push(Activation {
                id: activation_id,
                tenant_id: callback.tenant_id.clone(),
                callback_id: callback.id.clone(),
                event_id: event.id.clone(),
                delivery_id: None,
                attempt: None,
                at: started_at,
                outcome: verdict.to_string(),
                status: run.status,
                duration_ms,
                error_class: run.error_class.map(String::from),
                error: reason.filter(|_| verdict == "deny"),
                request: run.request,
                response: run.response,
                next_attempt_at: None,
            });
            if verdict == "deny" {
                outcome.allowed = false;
                break;
            }
        }
        outcome
    }

    /// Runs one callback. Its request is signed like a delivery, with the
    /// activation's id as `webhook-id`, so receivers can verify it.
    async fn run_one(
        &self,
        event: &Event,
        causation: &str,
        callback: &Callback,
        activation_id: &str,
    ) -> Run {
        let run = Run::new();
        let plugin = match &callback.plugin {
            Some(reference) => match self.registry.get(&reference.id) {
                Some(plugin) => Some((plugin, Arc::new(reference.config.clone()))),
                None => {
                    return run.deny(
                        "plugin",
                        format!("plugin `{}` is not available", reference.id),
                    );
                }
            },
            None => None,
        };
        let runtime = self.registry.runtime();

        if let Some((plugin, config)) = &plugin {
            match runtime.decide(plugin, config.clone(), event).await {
                Ok(out) => {
                    record_plugin_call("decide", &out);
                    if let Verdict::Deny(reason) = out.value {
                        return Run {
                            verdict: Verdict::Deny(reason),
                            ..run
                        };
                    }
                }
                Err(err) => return run.deny("plugin", format!("plugin decide failed: {err}")),
            }
        }
        let Some(url) = &callback.url else {
            return run;
        };

        let mut transformed = Request::envelope(event);
        if let Some((plugin, config)) = &plugin {
            match runtime
                .transform(plugin, config.clone(), event, transformed)
                .await
            {
                Ok(out) => {
                    record_plugin_call("transform", &out);
                    match out.value {
                        Transformed::Send(changed) => transformed = changed,
                        Transformed::Skip(reason) => {
                            return Run {
                                note: Some(format!("plugin skipped the request: {reason}")),
                                ..run
                            };
                        }
                    }
                }
                Err(err) => return run.deny("plugin", format!("plugin transform failed: {err}")),
            }
        }
        let mut request = Request::build(url, transformed, &callback.headers, causation);
        let now = crate::event::now_ms();
        if let Err(err) = request.sign(&signing_secrets(callback, now), activation_id, now) {
            return run.deny("config", err.to_string());
        }
        let timeout = callback
            .timeout_ms
            .map_or(self.default_timeout, Duration::from_millis);
        let run = Run {
            request: Some(request.record()),
            ..run
        };

        let answer = match self.http.send(request, timeout).await {
            Ok(answer) => answer,
            Err(err) => return run.deny(err.class, err.message),
        };
        let expected_status = callback.expected_status.unwrap_or(200);
        let expected = if answer.status == expected_status {
            Verdict::Allow
        } else {
            Verdict::Deny(format!(
                "callback answered HTTP {}, expected {expected_status}",
                answer.status
            ))
        };
        let mut run = Run {
            status: Some(answer.status),
            response: Some(outbound::response_record(&answer)),
            error_class: matches!(expected, Verdict::Deny(_)).then_some("status"),
            verdict: expected.clone(),
            ..run
        };
        if let Some((plugin, config)) = &plugin {
            let response = Incoming {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
            };
            match runtime
                .judge(plugin, config.clone(), event, response, expected)
                .await
            {
                Ok(out) => {
                    record_plugin_call("judge", &out);
                    run.error_class = match &out.value {
                        Verdict::Allow => None,
                        Verdict::Deny(_) => Some("judged"),
                    };
                    run.verdict = out.value;
                }
                Err(err) => return run.deny("plugin", format!("plugin judge failed: {err}")),
            }
        }
        run
    }
}

fn record_plugin_call<T>(hook: &'static str, outcome: &crate::plugin::Outcome<T>) {
    metrics::histogram!("hookgate_plugin_call_seconds", "hook" => hook)
        .record(outcome.duration.as_secs_f64());
    metrics::histogram!("hookgate_plugin_fuel_used", "hook" => hook)
        .record(outcome.fuel_used as f64);
}
