//! The before-event gate: run the matching callbacks in name order and
//! answer allow or deny. The first deny ends the gate, and every failure —
//! a plugin error, a timeout, a refused connection, an unexpected status —
//! is a deny whose reason says which.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::plugins::Plugins;
use crate::clock::SharedClock;
use crate::model::ids::new_id;
use crate::model::{
    Activation, ActivationOutcome, Callback, Decision, ErrorClass, Event, HttpRecord, Ruling,
    Verdict,
};
use crate::outbound::{self, Answer, HttpClient, Request, signing_secrets};
use crate::plugin::{Incoming, Plugin, PluginConfig, Transformed};

/// What the gate needs.
#[derive(Clone)]
pub struct Gate {
    plugins: Plugins,
    http: HttpClient,
    default_timeout: Duration,
    clock: SharedClock,
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
    error_class: Option<ErrorClass>,
    request: Option<HttpRecord>,
    response: Option<HttpRecord>,
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

    fn deny(mut self, class: ErrorClass, reason: String) -> Self {
        self.verdict = Verdict::Deny(reason);
        self.error_class = Some(class);
        self
    }
}

/// A callback's plugin, ready to call, with the callback's configuration.
type Bound = (Plugin, Arc<PluginConfig>);

/// What a callback's transform left to do.
enum Prepared {
    /// Send this request.
    Send(Request),
    /// Send nothing, for this reason.
    Skipped(String),
}

impl Gate {
    /// A gate calling plugins from `plugins` and URLs with `http`.
    pub fn new(
        plugins: Plugins,
        http: HttpClient,
        default_timeout: Duration,
        clock: SharedClock,
    ) -> Self {
        Gate {
            plugins,
            http,
            default_timeout,
            clock,
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
            let started_at = self.clock.now_ms();
            let clock = Instant::now();
            let activation_id = new_id("act");
            let span = tracing::info_span!("gate_callback", callback = %callback.id, name = %callback.name);
            let run = self
                .run_one(event, causation, callback, &activation_id)
                .instrument(span)
                .await;
            let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
            let (ruling, reason) = match &run.verdict {
                Verdict::Allow => (Ruling::Allow, run.note.clone()),
                Verdict::Deny(reason) => (Ruling::Deny, Some(reason.clone())),
            };
            let label = match ruling {
                Ruling::Allow => "allow",
                Ruling::Deny => "deny",
            };
            metrics::counter!("hookgate_gate_decisions_total", "verdict" => label).increment(1);
            outcome.decisions.push(Decision {
                callback_id: callback.id.clone(),
                callback_name: callback.name.clone(),
                verdict: ruling,
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
                outcome: match ruling {
                    Ruling::Allow => ActivationOutcome::Allow,
                    Ruling::Deny => ActivationOutcome::Deny,
                },
                status: run.status,
                duration_ms,
                error_class: run.error_class,
                error: reason.filter(|_| ruling == Ruling::Deny),
                request: run.request,
                response: run.response,
                next_attempt_at: None,
            });
            if ruling == Ruling::Deny {
                outcome.allowed = false;
                break;
            }
        }
        outcome
    }

    /// Runs one callback: its plugin decides first; then, if it has a URL,
    /// the request is built and sent, and the answer judged. Each plugin
    /// step runs only if the plugin exports that hook.
    async fn run_one(
        &self,
        event: &Event,
        causation: &str,
        callback: &Callback,
        activation_id: &str,
    ) -> Run {
        let run = Run::new();
        let plugin = match &callback.plugin {
            Some(reference) => match self.plugins.get(&callback.tenant_id, &reference.id).await {
                Ok(plugin) => Some((plugin, Arc::new(reference.config_text()))),
                Err(unavailable) => return run.deny(ErrorClass::Plugin, unavailable.to_string()),
            },
            None => None,
        };
        if let Some(bound) = &plugin {
            if bound.0.exports("decide") {
                match self.decide(bound, event).await {
                    Ok(Verdict::Allow) => {}
                    Ok(deny) => {
                        return Run {
                            verdict: deny,
                            ..run
                        };
                    }
                    Err(reason) => return run.deny(ErrorClass::Plugin, reason),
                }
            } else if callback.url.is_none() {
                // Attaching refuses this; a callback stored by a node that
                // predates the check must still not allow by default.
                return run.deny(
                    ErrorClass::Config,
                    "its plugin does not export `decide`, the only hook a before-callback \
                     with no URL runs"
                        .to_string(),
                );
            }
        }
        let Some(url) = &callback.url else {
            return run;
        };
        let request = match self
            .request(
                event,
                causation,
                callback,
                url,
                plugin.as_ref(),
                activation_id,
            )
            .await
        {
            Ok(Prepared::Send(request)) => request,
            Ok(Prepared::Skipped(reason)) => {
                return Run {
                    note: Some(format!("plugin skipped the request: {reason}")),
                    ..run
                };
            }
            Err((class, reason)) => return run.deny(class, reason),
        };
        self.send(event, callback, request, plugin.as_ref(), run)
            .await
    }

    async fn decide(&self, (plugin, config): &Bound, event: &Event) -> Result<Verdict, String> {
        let runtime = self.plugins.runtime();
        match runtime.decide(plugin, config.clone(), event).await {
            Ok(out) => Ok(out.value),
            Err(err) => Err(format!("plugin decide failed: {err}")),
        }
    }

    /// The signed request for the callback's URL, shaped by its plugin's
    /// transform, unless the plugin skipped it.
    async fn request(
        &self,
        event: &Event,
        causation: &str,
        callback: &Callback,
        url: &str,
        plugin: Option<&Bound>,
        activation_id: &str,
    ) -> Result<Prepared, (ErrorClass, String)> {
        let mut transformed = Request::envelope(event);
        if let Some((plugin, config)) = plugin.filter(|(p, _)| p.exports("transform")) {
            let runtime = self.plugins.runtime();
            match runtime
                .transform(plugin, config.clone(), event, transformed)
                .await
            {
                Ok(out) => match out.value {
                    Transformed::Send(changed) => transformed = changed,
                    Transformed::Skip(reason) => return Ok(Prepared::Skipped(reason)),
                },
                Err(err) => {
                    return Err((
                        ErrorClass::Plugin,
                        format!("plugin transform failed: {err}"),
                    ));
                }
            }
        }
        let mut request = Request::build(url, transformed, &callback.headers, causation);
        let now = self.clock.now_ms();
        request
            .sign(&signing_secrets(callback, now), activation_id, now)
            .map_err(|err| (ErrorClass::Config, err.to_string()))?;
        Ok(Prepared::Send(request))
    }

    /// Sends the request and turns the answer into a verdict: the expected
    /// status allows, and the plugin's judge, if any, has the last word.
    async fn send(
        &self,
        event: &Event,
        callback: &Callback,
        request: Request,
        plugin: Option<&Bound>,
        run: Run,
    ) -> Run {
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
            error_class: matches!(expected, Verdict::Deny(_)).then_some(ErrorClass::Status),
            verdict: expected.clone(),
            ..run
        };
        if let Some(bound) = plugin.filter(|(p, _)| p.exports("judge")) {
            match self.judge(bound, event, answer, expected).await {
                Ok(verdict) => {
                    run.error_class = match &verdict {
                        Verdict::Allow => None,
                        Verdict::Deny(_) => Some(ErrorClass::Judged),
                    };
                    run.verdict = verdict;
                }
                Err(reason) => return run.deny(ErrorClass::Plugin, reason),
            }
        }
        run
    }

    async fn judge(
        &self,
        (plugin, config): &Bound,
        event: &Event,
        answer: Answer,
        expected: Verdict,
    ) -> Result<Verdict, String> {
        let response = Incoming {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        };
        let runtime = self.plugins.runtime();
        match runtime
            .judge(plugin, config.clone(), event, response, expected)
            .await
        {
            Ok(out) => Ok(out.value),
            Err(err) => Err(format!("plugin judge failed: {err}")),
        }
    }
}
