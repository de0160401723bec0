//! `hookgate plugin check` and `hookgate plugin run`: try a plugin locally,
//! with the same runtime and limits the server uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::model::{NewEvent, Verdict};
use crate::outbound::Request;
use crate::plugin::{Incoming, Limits, PluginConfig, PluginError, Runtime, Transformed};

/// Which plugin export `plugin run` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookName {
    /// Shape or skip an outgoing request.
    Transform,
    /// Decide a before-event.
    Decide,
    /// Judge a callback's answer.
    Judge,
}

/// What `plugin run` needs besides the plugin itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The hook to call.
    pub hook: HookName,
    /// Path to the event JSON, shaped like the events API takes it.
    pub event: std::path::PathBuf,
    /// The plugin configuration.
    pub config: PluginConfig,
    /// Path to a response JSON, for `judge`.
    pub response: Option<std::path::PathBuf>,
    /// The status the callback is expected to answer, for `judge`.
    pub expected_status: u16,
}

/// A recorded callback answer, as `plugin run --response` reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseFile {
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// JSON to send as the body; a JSON string is sent as raw text.
    #[serde(default)]
    body: Value,
}

/// The ways `plugin run` and `plugin check` fail: the plugin's fault, or
/// the inputs'. Callers map them to different exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The plugin failed validation or the call.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// `plugin check` found these problems, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<PluginError>),
    /// A file could not be read or parsed.
    #[error("{0:#}")]
    Input(#[from] anyhow::Error),
}

/// Validates a plugin and describes it: size, sha256, exports and imports;
/// or lists every problem it has.
///
/// Compiled plugins are kept in `cache`, so that checking or running the
/// same bytes again skips the seconds a large guest takes to compile.
pub async fn check(path: &Path, limits: Limits, cache: Option<PathBuf>) -> Result<Value, CliError> {
    let wasm = read(path)?;
    let runtime = Runtime::new(limits, cache)?;
    let prepared = runtime.check(wasm).await.map_err(CliError::Problems)?;
    let mut report = serde_json::to_value(prepared.plugin.info()).expect("plugin info serializes");
    report["compiled"] = prepared.compiled.into();
    Ok(report)
}

/// Runs one hook of a plugin on an event and reports the result, the
/// duration, the fuel used and whether the plugin had to be compiled.
pub async fn run(
    path: &Path,
    options: RunOptions,
    limits: Limits,
    cache: Option<PathBuf>,
) -> Result<Value, CliError> {
    let wasm = read(path)?;
    let event: NewEvent = parse(&options.event)?;
    let event = event.into_event(SystemClock.now_ms());
    let runtime = Runtime::new(limits, cache)?;
    let prepared = runtime.compile(wasm).await?;
    let plugin = prepared.plugin;
    let config = Arc::new(options.config);

    let (hook, result, fuel_used, duration) = match options.hook {
        HookName::Transform => {
            let request = Request::envelope(&event);
            let out = runtime.transform(&plugin, config, &event, request).await?;
            let result = match out.value {
                // Built as the server builds it, so the headers shown are
                // those a callback URL would get, but for the signature.
                Transformed::Send(transformed) => {
                    let request = Request::build("", transformed, &Default::default(), &event.id);
                    json!({"send": {
                        "headers": request.headers,
                        "body": body_json(&request.body),
                    }})
                }
                Transformed::Skip(reason) => json!({"skip": reason}),
            };
            ("transform", result, out.fuel_used, out.duration)
        }
        HookName::Decide => {
            let out = runtime.decide(&plugin, config, &event).await?;
            (
                "decide",
                verdict_json(&out.value),
                out.fuel_used,
                out.duration,
            )
        }
        HookName::Judge => {
            let path = options
                .response
                .as_deref()
                .context("judge needs the callback's answer: pass --response RESPONSE.json")?;
            let file: ResponseFile = parse(path)?;
            let expected = if file.status == options.expected_status {
                Verdict::Allow
            } else {
                Verdict::Deny(format!(
                    "callback answered {}, expected {}",
                    file.status, options.expected_status
                ))
            };
            let response = Incoming {
                status: file.status,
                headers: file.headers.into_iter().collect(),
                body: match file.body {
                    Value::String(text) => text.into_bytes(),
                    Value::Null => Vec::new(),
                    other => other.to_string().into_bytes(),
                },
            };
            let out = runtime
                .judge(&plugin, config, &event, response, expected)
                .await?;
            (
                "judge",
                verdict_json(&out.value),
                out.fuel_used,
                out.duration,
            )
        }
    };
    Ok(json!({
        "hook": hook,
        "event_id": event.id,
        "result": result,
        "duration_us": duration.as_micros() as u64,
        "fuel_used": fuel_used,
        "compiled": prepared.compiled,
    }))
}

fn verdict_json(verdict: &Verdict) -> Value {
    serde_json::to_value(verdict).expect("verdicts serialize")
}

/// Shows a body as JSON when it is JSON, else as text.
fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}
