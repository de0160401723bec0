//! Compiling a component within this node's memory and time limits.
//!
//! Compiling a large guest takes seconds and hundreds of MiB: measured, the
//! Python and JavaScript examples peak at about 0.6 GiB. A server compiles
//! in a worker process (`hookgate compile-worker`) that it watches and
//! kills past either limit, so that a tenant's upload can neither exhaust
//! the node's memory nor keep a core busy forever. The worker runs at a
//! lower CPU priority, so that plugin calls keep their deadlines while it
//! compiles. It builds the same engine from the same limits and hands back
//! the compiled component serialized, which only this process, having
//! started the worker itself, loads.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::chain;
use super::{Limits, PluginError, engine, runtime_error};

/// How often a worker's memory and time are checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(10);
/// How much a worker lowers its CPU priority. Compiling is background
/// work, while plugin calls on the same node run against deadlines of a
/// few milliseconds: a compilation must not take the cores from them.
#[cfg(unix)]
const WORKER_NICENESS: i32 = 10;
/// Bytes of a failed worker's stderr quoted in the error.
const MAX_WORKER_MESSAGE: usize = 2048;

/// Where components are compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compiler {
    /// On a blocking thread of this process. A compilation over the time
    /// limit is abandoned but runs on, and memory is not bounded: for
    /// `plugin check` and `plugin run`, which compile the author's own
    /// plugin on the author's machine.
    #[default]
    InProcess,
    /// In a worker process: this executable, run as `compile-worker`. It is
    /// killed as soon as its peak resident memory passes
    /// [`Limits::compile_memory_bytes`] or it runs past
    /// [`Limits::compile_timeout`] (memory is read from `/proc`, so only on
    /// Linux).
    Worker(PathBuf),
}

/// A component compiled, with its serialized form when compiling made one.
pub(super) struct Compiled {
    pub(super) component: Component,
    pub(super) serialized: Option<Vec<u8>>,
}

impl Compiler {
    /// Compiles `wasm` for `engine`, within `limits`.
    pub(super) async fn compile(
        &self,
        engine: &Engine,
        limits: &Limits,
        wasm: Vec<u8>,
    ) -> Result<Compiled, PluginError> {
        match self {
            Compiler::InProcess => in_process(engine, limits, wasm).await,
            Compiler::Worker(exe) => {
                let serialized = in_worker(exe, limits, wasm).await?;
                let engine = engine.clone();
                tokio::task::spawn_blocking(move || {
                    let component = load(&engine, &serialized)?;
                    Ok(Compiled {
                        component,
                        serialized: Some(serialized),
                    })
                })
                .await
                .map_err(runtime_error)?
            }
        }
    }
}

async fn in_process(
    engine: &Engine,
    limits: &Limits,
    wasm: Vec<u8>,
) -> Result<Compiled, PluginError> {
    let engine = engine.clone();
    let compiling = tokio::task::spawn_blocking(move || Component::new(&engine, &wasm));
    let compiled = tokio::time::timeout(limits.compile_timeout, compiling)
        .await
        .map_err(|_| timeout(limits))?
        .map_err(runtime_error)?;
    let component = compiled.map_err(|e| PluginError::Invalid { reason: chain(&e) })?;
    Ok(Compiled {
        component,
        serialized: None,
    })
}

/// Runs a worker on `wasm` and returns what it wrote: the component
/// compiled and serialized.
async fn in_worker(exe: &Path, limits: &Limits, wasm: Vec<u8>) -> Result<Vec<u8>, PluginError> {
    let limits_json = serde_json::to_string(limits).expect("limits serialize");
    let mut child = tokio::process::Command::new(exe)
        .args(["compile-worker", "--limits", &limits_json])
        // Its stderr is read as its verdict, not as a log.
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PluginError::Runtime {
            reason: format!("cannot start the compile worker {}: {e}", exe.display()),
        })?;
    let pid = child.id();
    let (mut stdin, mut stdout, mut stderr) = (
        child.stdin.take().expect("stdin is piped"),
        child.stdout.take().expect("stdout is piped"),
        child.stderr.take().expect("stderr is piped"),
    );
    // A worker that dies early closes its stdin; what it says on stderr
    // explains that better than the broken pipe would.
    let feed = async move {
        let _ = stdin.write_all(&wasm).await;
    };
    let output = async move {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).await.map(|_| bytes)
    };
    // Read to the end, so that the worker never blocks writing, but keep
    // only the tail.
    let message = async move {
        let (mut kept, mut chunk) = (Vec::new(), [0; 8192]);
        while let Ok(read @ 1..) = stderr.read(&mut chunk).await {
            kept.extend_from_slice(&chunk[..read]);
            if kept.len() > 2 * MAX_WORKER_MESSAGE {
                kept.drain(..kept.len() - MAX_WORKER_MESSAGE);
            }
        }
        kept
    };
    let started = Instant::now();
    let watch = async {
        let mut peak = 0;
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        let ended = loop {
            tokio::select! {
                status = child.wait() => {
                    break status.map_err(|e| PluginError::Runtime {
                        reason: format!("cannot watch the compile worker: {e}"),
                    });
                }
                _ = tick.tick() => {}
            }
            peak = peak.max(pid.and_then(peak_rss).unwrap_or(0));
            let over = if peak > limits.compile_memory_bytes {
                PluginError::CompileMemory {
                    limit_mib: limits.compile_memory_bytes >> 20,
                }
            } else if started.elapsed() > limits.compile_timeout {
                timeout(limits)
            } else {
                continue;
            };
            let _ = child.kill().await;
            metrics::counter!("hookgate_plugin_compile_refusals_total", "code" => over.code())
                .increment(1);
            break Err(over);
        };
        (ended, peak)
    };
    let ((), output, message, (ended, peak)) = tokio::join!(feed, output, message, watch);
    // Killed workers too: they are the ones that say how much is needed.
    metrics::histogram!("hookgate_plugin_compile_peak_bytes").record(peak as f64);
    tracing::debug!(
        secs = started.elapsed().as_secs_f64(),
        peak_mib = peak >> 20,
        ended = ?ended,
        "compile worker finished"
    );
    let status = ended?;
    let message = tail(&message);
    if !status.success() {
        return Err(match status.code() {
            Some(INVALID) => PluginError::Invalid { reason: message },
            _ => PluginError::Runtime {
                reason: format!("the compile worker failed ({status}): {message}"),
            },
        });
    }
    output.map_err(|e| PluginError::Runtime {
        reason: format!("cannot read the compile worker's output: {e}"),
    })
}

/// Why a worker did not hand back a compiled component.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The component does not compile: the tenant's problem.
    #[error("{0}")]
    Invalid(String),
    /// The worker could not do its job: the node's problem.
    #[error("{0}")]
    Worker(String),
}

impl WorkError {
    /// The worker's exit status, which tells the server which it was.
    pub fn exit_code(&self) -> u8 {
        match self {
            WorkError::Invalid(_) => INVALID as u8,
            WorkError::Worker(_) => WORKER_FAILED,
        }
    }
}

/// Exit statuses of a worker that did not compile the component.
const INVALID: i32 = 1;
const WORKER_FAILED: u8 = 3;

/// The worker's side: reads a component from `input`, compiles it for the
/// engine `limits` describe, and writes it serialized to `output`.
pub fn work(
    limits: &Limits,
    input: &mut impl Read,
    output: &mut impl Write,
) -> Result<(), WorkError> {
    // Before the engine starts its compile threads, which inherit it. A
    // process may always lower its own priority; should it fail, compiling
    // at the server's priority is still correct.
    #[cfg(unix)]
    let _ = rustix::process::nice(WORKER_NICENESS);
    let mut wasm = Vec::new();
    input
        .read_to_end(&mut wasm)
        .map_err(|e| WorkError::Worker(format!("cannot read the component: {e}")))?;
    let engine = engine(limits).map_err(|e| WorkError::Worker(e.to_string()))?;
    let component = Component::new(&engine, &wasm).map_err(|e| WorkError::Invalid(chain(&e)))?;
    let bytes = component
        .serialize()
        .map_err(|e| WorkError::Worker(chain(&e)))?;
    output
        .write_all(&bytes)
        .and_then(|()| output.flush())
        .map_err(|e| WorkError::Worker(format!("cannot write the compiled component: {e}")))
}

#[expect(
    unsafe_code,
    reason = "deserializing is loading native code; only what a worker this \
              process started compiled, for this process's engine, is loaded"
)]
fn load(engine: &Engine, serialized: &[u8]) -> Result<Component, PluginError> {
    // SAFETY: the bytes are what `work` wrote: `Component::serialize` of an
    // engine built by `engine` from this process's own limits, in a child
    // process running this executable, read back over a pipe only this
    // process holds. Wasmtime checks the engine and version header again.
    unsafe { Component::deserialize(engine, serialized) }.map_err(|e| PluginError::Runtime {
        reason: format!(
            "cannot load what the compile worker compiled: {}",
            chain(&e)
        ),
    })
}

/// A process's peak resident memory so far, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

fn timeout(limits: &Limits) -> PluginError {
    PluginError::CompileTimeout {
        limit: limits.compile_timeout,
    }
}

/// The end of what a worker wrote to stderr, trimmed.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.len().saturating_sub(MAX_WORKER_MESSAGE);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}
