//! The sandboxed WebAssembly component runtime.
//!
//! One [`Runtime`] (one wasmtime engine) serves the whole process.
//! [`Runtime::compile`] validates a component and returns a ready
//! [`Plugin`]; it keeps what it compiled in this node's own cache (see
//! `cache`), so identical bytes are compiled once, and never loads native
//! code from anywhere else. Each hook call instantiates the plugin into a
//! fresh store with fuel, memory and deadline limits, so no state survives
//! between events.
//!
//! Layout:
//! - `bindings`: the generated host side of the WIT contract, 0.2.0 and 0.1.0
//!   (the only `bindgen!`);
//! - `sandbox`: per-call store state, WASI lock-down and the `host` imports;
//! - `validate`: upload-time checks;
//! - `compiler`: compiling, in a worker process within memory and time
//!   limits, or in this process;
//! - `cache`: this node's compiled copies, on local disk;
//! - `error`: [`PluginError`].

mod bindings;
mod cache;
mod compiler;
mod error;
mod sandbox;
mod validate;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, HasSelf, InstancePre, Lift, Linker, Lower,
};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};

pub use self::compiler::{Compiler, WorkError, work as compile_worker};
pub use self::error::PluginError;
use self::error::chain;
use self::sandbox::{Sandbox, clamp};
use crate::model::{Event, Phase, Verdict};

/// How often the epoch ticker advances the engine's clock. Deadlines are
/// enforced to within one tick.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Fuel a plugin burns between cooperative yields to the async executor, so
/// that a plugin spinning until its deadline shares the worker thread.
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;
/// Bytes of each pooled linear memory reset in place between calls.
const KEEP_RESIDENT: usize = 2 << 20;
/// Core instances, memories and tables one call may hold: about twice what
/// the largest measured guest needs (see [`Runtime::new`]).
const CORE_INSTANCES_PER_CALL: u32 = 32;
const MEMORIES_PER_CALL: u32 = 2;
const TABLES_PER_CALL: u32 = 8;
/// Bytes of a trapped plugin's stderr quoted in the error.
const MAX_GUEST_MESSAGE: usize = 1024;

/// The WIT package plugins target, as this host was built against it, so
/// that a plugin author with only the binary has the contract too.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// A plugin's key-value configuration, set per callback.
pub type PluginConfig = BTreeMap<String, String>;

/// Resource limits applied to every plugin call, and to compiling one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Maximum linear memory per call, in bytes.
    pub memory_bytes: usize,
    /// Fuel per call: roughly one unit per WebAssembly instruction. It stops
    /// runaway loops deterministically, whatever the machine's speed.
    pub fuel: u64,
    /// Wall-clock deadline per call, including instantiation and host calls.
    pub deadline: Duration,
    /// Maximum bytes in and out of a call (payload, body, headers, reasons).
    pub max_io_bytes: usize,
    /// Maximum size of an uploaded component.
    pub max_component_bytes: usize,
    /// Calls that may run at once; more wait for a slot. Sizes the
    /// pooling allocator, which reserves virtual memory per slot up front.
    pub max_concurrent_calls: u32,
    /// Memory one compilation may use, in bytes, when compiling in a
    /// worker process (see [`Compiler`]).
    pub compile_memory_bytes: usize,
    /// How long one compilation may take.
    pub compile_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            // 100M units is several times what transforming a 1 MiB payload
            // costs, and stops a tight infinite loop in about 50 ms.
            fuel: 100_000_000,
            deadline: Duration::from_millis(100),
            max_io_bytes: 1 << 20,
            max_component_bytes: 64 << 20,
            max_concurrent_calls: 128,
            // Measured peaks: 0.1 GiB for a Rust plugin, 0.6 GiB for the
            // Python and JavaScript examples, in a worker process.
            compile_memory_bytes: 2 << 30,
            // A Python or JavaScript component takes seconds on a small
            // machine; one that takes minutes is refused.
            compile_timeout: Duration::from_secs(120),
        }
    }
}

/// What validation learned about a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Hex SHA-256 of the uploaded component bytes.
    pub sha256: String,
    /// Size of the uploaded component in bytes.
    pub size: usize,
    /// The hooks it exports, of `transform`, `decide` and `judge`.
    pub exports: Vec<String>,
    /// The component's imports, all within the allow-list.
    pub imports: Vec<String>,
}

/// A validated, compiled plugin version, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pre: InstancePre<Sandbox>,
    hooks: Hooks,
    info: Arc<PluginInfo>,
}

impl Plugin {
    /// What validation learned about this plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Whether it exports `hook`: `transform`, `decide` or `judge`.
    pub fn exports(&self, hook: &str) -> bool {
        self.info.exports.iter().any(|e| e == hook)
    }

    /// Bytes of compiled code it holds in memory: what keeping it loaded
    /// costs.
    pub fn code_bytes(&self) -> usize {
        let image = self.pre.component().image_range();
        image.end as usize - image.start as usize
    }
}

/// Whether an interface export was `found` and, if so, checks that its
/// function `hook` takes `P` and returns `R`.
fn typed<P, R>(
    pre: &InstancePre<Sandbox>,
    found: Option<(&str, ComponentExportIndex)>,
    hook: &str,
) -> wasmtime::Result<bool>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let Some((name, index)) = found else {
        return Ok(false);
    };
    let Some((ComponentItem::ComponentFunc(func), _)) =
        pre.component().get_export(Some(&index), hook)
    else {
        wasmtime::bail!("instance export `{name}` does not have function `{hook}`");
    };
    func.typecheck::<P, R>(&pre.instance_type())
        .map_err(|e| e.context(format!("type-checking `{hook}` of `{name}`")))?;
    Ok(true)
}

/// Where a plugin's hooks are, found once when it is prepared.
#[derive(Clone)]
enum Hooks {
    /// Contract 0.1.0: all three, as functions of the component.
    V0_1(bindings::v0_1::PluginIndices),
    /// Contract 0.2.0: an interface per hook it implements.
    V0_2 {
        transform: Option<bindings::transform::GuestIndices>,
        decide: Option<bindings::decide::GuestIndices>,
        judge: Option<bindings::judge::GuestIndices>,
    },
}

impl Hooks {
    /// Finds the hooks in a linked component and checks their signatures
    /// now, so that a plugin that does not match the contract fails when
    /// it is compiled, not at its first call.
    fn find(pre: &InstancePre<Sandbox>) -> wasmtime::Result<Hooks> {
        use bindings::{Event, Incoming, Outgoing, Transformed, Verdict};
        type Answer<T> = (Result<T, bindings::Failure>,);

        let component = pre.component();
        let interface = |name: &str| component.get_export_index(None, name);
        let [transform, decide, judge] =
            validate::HOOKS.map(|(_, name)| interface(name).map(|i| (name, i)));
        if transform.is_none() && decide.is_none() && judge.is_none() {
            return Ok(Hooks::V0_1(bindings::v0_1::PluginIndices::new(pre)?));
        }
        Ok(Hooks::V0_2 {
            transform: typed::<(Event, Outgoing), Answer<Transformed>>(
                pre,
                transform,
                "transform",
            )?
            .then(|| bindings::transform::GuestIndices::new(pre))
            .transpose()?,
            decide: typed::<(Event,), Answer<Verdict>>(pre, decide, "decide")?
                .then(|| bindings::decide::GuestIndices::new(pre))
                .transpose()?,
            judge: typed::<(Event, Incoming, Verdict), Answer<Verdict>>(pre, judge, "judge")?
                .then(|| bindings::judge::GuestIndices::new(pre))
                .transpose()?,
        })
    }

    /// Calls one hook of a fresh instance.
    async fn call(
        &self,
        store: &mut Store<Sandbox>,
        instance: &wasmtime::component::Instance,
        hook: Hook,
    ) -> wasmtime::Result<Result<HookOutput, bindings::Failure>> {
        let name = hook.name();
        Ok(match (self, hook) {
            (Hooks::V0_1(indices), hook) => {
                let plugin = indices.load(&mut *store, instance)?;
                match hook {
                    Hook::Transform(event, request) => plugin
                        .call_transform(&mut *store, &event, &request)
                        .await?
                        .map(HookOutput::Transformed),
                    Hook::Decide(event) => plugin
                        .call_decide(&mut *store, &event)
                        .await?
                        .map(HookOutput::Verdict),
                    Hook::Judge(event, response, expected) => plugin
                        .call_judge(&mut *store, &event, &response, &expected)
                        .await?
                        .map(HookOutput::Verdict),
                }
            }
            (
                Hooks::V0_2 {
                    transform: Some(indices),
                    ..
                },
                Hook::Transform(event, request),
            ) => indices
                .load(&mut *store, instance)?
                .call_transform(&mut *store, &event, &request)
                .await?
                .map(HookOutput::Transformed),
            (
                Hooks::V0_2 {
                    decide: Some(indices),
                    ..
                },
                Hook::Decide(event),
            ) => indices
                .load(&mut *store, instance)?
                .call_decide(&mut *store, &event)
                .await?
                .map(HookOutput::Verdict),
            (
                Hooks::V0_2 {
                    judge: Some(indices),
                    ..
                },
                Hook::Judge(event, response, expected),
            ) => indices
                .load(&mut *store, instance)?
                .call_judge(&mut *store, &event, &response, &expected)
                .await?
                .map(HookOutput::Verdict),
            (Hooks::V0_2 { .. }, _) => wasmtime::bail!("plugin does not export `{name}`"),
        })
    }
}

/// A plugin ready to call, and whether it had to be compiled for it.
pub struct Prepared {
    /// The plugin.
    pub plugin: Plugin,
    /// False when this node's cache already held identical bytes compiled.
    pub compiled: bool,
}

/// A request about to be POSTed to a callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Extra or replacement headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A callback URL's answer to a before-event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Response body, possibly truncated.
    pub body: Vec<u8>,
}

/// What `transform` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// Send this request.
    Send(Outgoing),
    /// Send nothing, for this reason.
    Skip(String),
}

/// A hook's result with what the call cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// What the plugin returned.
    pub value: T,
    /// Fuel the call consumed, including instantiation.
    pub fuel_used: u64,
    /// Wall-clock time of the call, including waiting for a slot.
    pub duration: Duration,
}

/// The process-wide plugin engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    engine_hash: String,
    cache: cache::CompileCache,
    linker: Linker<Sandbox>,
    limits: Limits,
    slots: Semaphore,
    compiler: Compiler,
    /// One compilation at a time: wasmtime already compiles a component's
    /// functions on every core, and each compilation's memory adds up.
    compiling: Semaphore,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A hook invocation, in the generated types.
enum Hook {
    Transform(bindings::Event, bindings::Outgoing),
    Decide(bindings::Event),
    Judge(bindings::Event, bindings::Incoming, bindings::Verdict),
}

impl Hook {
    fn name(&self) -> &'static str {
        match self {
            Hook::Transform(..) => "transform",
            Hook::Decide(..) => "decide",
            Hook::Judge(..) => "judge",
        }
    }
}

/// A hook's successful return, in the generated types.
enum HookOutput {
    Transformed(bindings::Transformed),
    Verdict(bindings::Verdict),
}

impl Runtime {
    /// Builds the engine (pooling allocator, fuel, epoch interruption), the
    /// linker with locked-down WASI, and starts the epoch ticker thread.
    /// Compiled plugins are kept in `cache_dir` when one is given. Plugins
    /// compile in this process.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        Self::with_compiler(limits, cache_dir, Compiler::InProcess)
    }

    /// Like [`Runtime::new`], compiling plugins as `compiler` says.
    pub fn with_compiler(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        compiler: Compiler,
    ) -> Result<Self, PluginError> {
        let slots = limits.max_concurrent_calls.max(1);
        let engine = engine(&limits)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(runtime_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(runtime_error)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |sandbox| sandbox)
            .map_err(runtime_error)?;
        bindings::v0_1::hookgate::plugin::host::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |sandbox| sandbox,
        )
        .map_err(runtime_error)?;
        linker
            .instance("hookgate:plugin/types@0.1.0")
            .map_err(runtime_error)?;

        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("hookgate-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Runtime {
                reason: format!("cannot start the epoch ticker: {e}"),
            })?;

        Ok(Runtime {
            inner: Arc::new(Inner {
                cache: cache::CompileCache::new(cache_dir, &engine_hash)?,
                engine,
                engine_hash,
                linker,
                slots: Semaphore::new(slots as usize),
                compiler,
                compiling: Semaphore::new(1),
                limits,
                stop_ticker,
            }),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Identifies the engine build and settings: compiled code is only
    /// ever reused by an engine with the same hash.
    pub fn engine_hash(&self) -> &str {
        &self.inner.engine_hash
    }

    /// Validates a component and makes it ready to call: from this node's
    /// cache when it holds the same bytes compiled by this engine, else by
    /// compiling them (and caching the result), one compilation at a time.
    /// The limits on a compilation's time and memory count from its turn.
    pub async fn compile(&self, wasm: Vec<u8>) -> Result<Prepared, PluginError> {
        let inner = self.inner.clone();
        let (info, wasm) =
            blocking(move || inner.validate(&wasm).map(|info| (info, wasm))).await??;
        self.build(wasm, info).await
    }

    /// The checks of [`Runtime::compile`] that need no compiling: size,
    /// kind, imports, exports and starting memory, in milliseconds. What
    /// they pass may still fail to compile or link.
    pub fn validate(&self, wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        self.inner.validate(wasm)
    }

    /// Like [`Runtime::compile`], but reports every problem with the
    /// component at once, cheapest first, as `plugin check` shows them:
    /// compiling also tells whether the component fits a pool slot, unless
    /// its memory already said that it cannot.
    pub async fn check(&self, wasm: Vec<u8>) -> Result<Prepared, Vec<PluginError>> {
        let inner = self.inner.clone();
        let (mut problems, shape, wasm) = blocking(move || {
            let (problems, shape) = validate::problems(&wasm, &inner.limits);
            (problems, shape, wasm)
        })
        .await
        .map_err(|e| vec![e])?;
        let Some(shape) = shape else {
            return Err(problems);
        };
        if problems.is_empty() {
            let info = info(&wasm, shape);
            return self.build(wasm, info).await.map_err(|e| vec![e]);
        }
        let memory_said = problems
            .iter()
            .any(|p| matches!(p, PluginError::MemoryTooSmall { .. }));
        if !memory_said && let Err(e) = self.compile_component(wasm).await {
            problems.push(e);
        }
        Err(problems)
    }

    /// Loads a component that passed validation from this node's cache, or
    /// compiles it, and links it.
    async fn build(&self, wasm: Vec<u8>, info: PluginInfo) -> Result<Prepared, PluginError> {
        let inner = self.inner.clone();
        let sha256 = info.sha256.clone();
        let cached = blocking(move || inner.cache.load(&inner.engine, &sha256)).await?;
        let (component, compiled) = match cached {
            Some(component) => (component, None),
            None => {
                let compiled = self.compile_component(wasm).await?;
                (compiled.component.clone(), Some(compiled))
            }
        };
        let inner = self.inner.clone();
        blocking(move || {
            let plugin = inner.prepare(&component, info)?;
            let fresh = compiled.is_some();
            if let Some(compiled) = compiled {
                inner.cache.store(&plugin.info.sha256, compiled);
            }
            Ok(Prepared {
                plugin,
                compiled: fresh,
            })
        })
        .await?
    }

    /// Compiles a component, once its turn comes.
    async fn compile_component(&self, wasm: Vec<u8>) -> Result<compiler::Compiled, PluginError> {
        let inner = &self.inner;
        let _turn = inner.compiling.acquire().await.map_err(runtime_error)?;
        inner
            .compiler
            .compile(&inner.engine, &inner.limits, wasm)
            .await
    }

    /// Runs `transform`: shape, or skip, the request for a callback URL.
    ///
    /// A body sent on must be JSON unless the plugin set a non-JSON
    /// `content-type` header.
    pub async fn transform(
        &self,
        plugin: &Plugin,
        config: Arc<PluginConfig>,
        event: &Event,
        request: Outgoing,
    ) -> Result<Outcome<Transformed>, PluginError> {
        let event = wit_event(event);
        let input = event_size(&event) + request_size(&request.headers, &request.body);
        let hook = Hook::Transform(event, wit_outgoing(request));
        let outcome = self.call(plugin, config, input, hook).await?;
        let HookOutput::Transformed(transformed) = outcome.value else {
            unreachable!("transform returns a transformed value")
        };
        let value = match transformed {
            bindings::Transformed::Send(out) => {
                check_json(&out.headers, &out.body)?;
                Transformed::Send(Outgoing {
                    headers: out.headers,
                    body: out.body,
                })
            }
            bindings::Transformed::Skip(reason) => Transformed::Skip(reason),
        };
        Ok(Outcome {
            value,
            fuel_used: outcome.fuel_used,
            duration: outcome.duration,
        })
    }

    /// Runs `decide`: answer a before-event locally.
    pub async fn decide(
        &self,
        plugin: &Plugin,
        config: Arc<PluginConfig>,
        event: &Event,
    ) -> Result<Outcome<Verdict>, PluginError> {
        let event = wit_event(event);
        let input = event_size(&event);
        let outcome = self
            .call(plugin, config, input, Hook::Decide(event))
            .await?;
        Ok(verdict_outcome(outcome))
    }

    /// Runs `judge`: interpret a callback's answer; `expected` is the verdict
    /// from the status code alone.
    pub async fn judge(
        &self,
        plugin: &Plugin,
        config: Arc<PluginConfig>,
        event: &Event,
        response: Incoming,
        expected: Verdict,
    ) -> Result<Outcome<Verdict>, PluginError> {
        let event = wit_event(event);
        let input = event_size(&event) + request_size(&response.headers, &response.body);
        let response = bindings::Incoming {
            status: response.status,
            headers: response.headers,
            body: response.body,
        };
        let expected = match expected {
            Verdict::Allow => bindings::Verdict::Allow,
            Verdict::Deny(reason) => bindings::Verdict::Deny(reason),
        };
        let hook = Hook::Judge(event, response, expected);
        let outcome = self.call(plugin, config, input, hook).await?;
        Ok(verdict_outcome(outcome))
    }

    /// Calls `decide` `times` times on a single instance and returns the
    /// last verdict. Production never reuses an instance; this exists so the
    /// benchmarks can separate the cost of a call from that of a fresh
    /// sandbox.
    #[doc(hidden)]
    pub async fn decide_warm(
        &self,
        plugin: &Plugin,
        config: Arc<PluginConfig>,
        event: &Event,
        times: u64,
    ) -> Result<Verdict, PluginError> {
        let mut store = Store::new(&self.inner.engine, Sandbox::new(config, usize::MAX));
        store.set_fuel(u64::MAX).map_err(runtime_error)?;
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| runtime_error(chain(&e)))?;
        let event = wit_event(event);
        let mut verdict = HookOutput::Verdict(bindings::Verdict::Allow);
        for _ in 0..times {
            let hook = Hook::Decide(event.clone());
            verdict = plugin
                .hooks
                .call(&mut store, &instance, hook)
                .await
                .map_err(|e| runtime_error(chain(&e)))?
                .map_err(|f| PluginError::Failed {
                    code: f.code,
                    message: f.message,
                })?;
        }
        let HookOutput::Verdict(verdict) = verdict else {
            unreachable!("decide returns a verdict")
        };
        Ok(model_verdict(verdict))
    }

    /// Instantiates the plugin into a fresh store and runs one hook under
    /// every limit, turning each way it can fail into a [`PluginError`].
    #[tracing::instrument(name = "plugin_call", skip_all, fields(hook = hook.name(), plugin = %plugin.info.sha256.get(..12).unwrap_or_default()))]
    async fn call(
        &self,
        plugin: &Plugin,
        config: Arc<PluginConfig>,
        input: usize,
        hook: Hook,
    ) -> Result<Outcome<HookOutput>, PluginError> {
        let limits = &self.inner.limits;
        if input > limits.max_io_bytes {
            return Err(PluginError::InputTooLarge {
                size: input,
                limit: limits.max_io_bytes,
            });
        }
        let started = Instant::now();
        let name = hook.name();
        if !plugin.exports(name) {
            return Err(PluginError::NoHook {
                hook: name,
                exports: plugin.info.exports.join(", "),
            });
        }
        let _slot = self.inner.slots.acquire().await.map_err(runtime_error)?;

        let mut store = Store::new(
            &self.inner.engine,
            Sandbox::new(config, limits.memory_bytes),
        );
        store.limiter(|sandbox| &mut sandbox.limiter);
        store.set_fuel(limits.fuel).map_err(runtime_error)?;
        store
            .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
            .map_err(runtime_error)?;
        let ticks = limits.deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64;
        store.set_epoch_deadline(ticks.max(1) + 1);
        store.epoch_deadline_trap();

        // The epoch deadline interrupts running wasm; the timeout also covers
        // time spent waiting in host calls, such as a guest sleeping on a clock.
        let ran = tokio::time::timeout(
            limits.deadline + EPOCH_TICK * 2,
            run(plugin, &mut store, hook),
        )
        .await;
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let sha = plugin.info.sha256.get(..12).unwrap_or_default().to_string();
        metrics::histogram!("hookgate_plugin_call_seconds", "hook" => name, "plugin" => sha.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("hookgate_plugin_fuel_used", "hook" => name, "plugin" => sha)
            .record(fuel_used as f64);
        let sandbox = store.data();
        sandbox.flush_output();
        let output = match ran {
            Err(_elapsed) => Err(PluginError::DeadlineExceeded {
                limit_ms: limits.deadline.as_millis() as u64,
            }),
            Ok(Err(trap)) => Err(self.classify(&trap, sandbox)),
            Ok(Ok(Err(failure))) => Err(PluginError::Failed {
                code: clamp(&failure.code, 64).to_string(),
                message: clamp(&failure.message, 1024).to_string(),
            }),
            Ok(Ok(Ok(output))) => Ok(output),
        }?;
        let size = output_size(&output);
        if size > limits.max_io_bytes {
            return Err(PluginError::OutputTooLarge {
                size,
                limit: limits.max_io_bytes,
            });
        }
        Ok(Outcome {
            value: output,
            fuel_used,
            duration: started.elapsed(),
        })
    }

    /// Names the limit or cause behind a failed call.
    fn classify(&self, err: &wasmtime::Error, sandbox: &Sandbox) -> PluginError {
        let limits = &self.inner.limits;
        // A refused memory.grow usually surfaces as the guest aborting, so
        // the limiter's record wins over whatever trap followed.
        if sandbox.limiter.hit {
            return PluginError::MemoryLimit {
                limit: limits.memory_bytes,
            };
        }
        let guest = guest_message(&sandbox.stderr.text());
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel { limit: limits.fuel },
            Some(Trap::Interrupt) => PluginError::DeadlineExceeded {
                limit_ms: limits.deadline.as_millis() as u64,
            },
            Some(Trap::StackOverflow) => PluginError::StackOverflow,
            Some(trap) => PluginError::Trap {
                message: trap.to_string(),
                guest,
            },
            None => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => PluginError::Trap {
                    message: format!("plugin exited with status {}", exit.0),
                    guest,
                },
                None => PluginError::Trap {
                    message: chain(err),
                    guest,
                },
            },
        }
    }
}

impl Inner {
    /// The checks that need no compiling, failing on the first problem.
    fn validate(&self, wasm: &[u8]) -> Result<PluginInfo, PluginError> {
        match validate::problems(wasm, &self.limits) {
            (problems, Some(shape)) if problems.is_empty() => Ok(info(wasm, shape)),
            (mut problems, _) => Err(problems.remove(0)),
        }
    }

    /// Links the component against the sandbox and type-checks its exports.
    fn prepare(&self, component: &Component, info: PluginInfo) -> Result<Plugin, PluginError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| PluginError::ImportMismatch { reason: chain(&e) })?;
        let hooks =
            Hooks::find(&pre).map_err(|e| PluginError::ExportMismatch { reason: chain(&e) })?;
        Ok(Plugin {
            pre,
            hooks,
            info: Arc::new(info),
        })
    }
}

/// What validation learned about a component.
fn info(wasm: &[u8], shape: validate::Shape) -> PluginInfo {
    PluginInfo {
        sha256: hex::encode(Sha256::digest(wasm)),
        size: wasm.len(),
        exports: shape.hooks().into_iter().map(String::from).collect(),
        imports: shape.imports,
    }
}

/// Instantiates and calls one hook; the store is fresh, so is the instance.
async fn run(
    plugin: &Plugin,
    store: &mut Store<Sandbox>,
    hook: Hook,
) -> wasmtime::Result<Result<HookOutput, bindings::Failure>> {
    let instance = plugin.pre.instantiate_async(&mut *store).await?;
    plugin.hooks.call(store, &instance, hook).await
}

fn wit_event(event: &Event) -> bindings::Event {
    bindings::Event {
        id: event.id.clone(),
        object_type: event.object_type.clone(),
        action: event.action.clone(),
        phase: match event.phase {
            Phase::Before => bindings::Phase::Before,
            Phase::After => bindings::Phase::After,
        },
        actor: event.actor.clone(),
        timestamp_ms: event.timestamp_ms,
        data: event.data.to_string(),
    }
}

fn wit_outgoing(request: Outgoing) -> bindings::Outgoing {
    bindings::Outgoing {
        headers: request.headers,
        body: request.body,
    }
}

fn verdict_outcome(outcome: Outcome<HookOutput>) -> Outcome<Verdict> {
    let HookOutput::Verdict(verdict) = outcome.value else {
        unreachable!("decide and judge return verdicts")
    };
    Outcome {
        value: model_verdict(verdict),
        fuel_used: outcome.fuel_used,
        duration: outcome.duration,
    }
}

fn model_verdict(verdict: bindings::Verdict) -> Verdict {
    match verdict {
        bindings::Verdict::Allow => Verdict::Allow,
        bindings::Verdict::Deny(reason) => Verdict::Deny(reason),
    }
}

/// The text the guest is handed, measured on what it is handed: `data` is
/// serialized once per call, not again to be measured.
fn event_size(event: &bindings::Event) -> usize {
    event.data.len()
        + event.id.len()
        + event.object_type.len()
        + event.action.len()
        + event.actor.as_ref().map_or(0, String::len)
}

fn request_size(headers: &[(String, String)], body: &[u8]) -> usize {
    body.len()
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn output_size(output: &HookOutput) -> usize {
    match output {
        HookOutput::Transformed(bindings::Transformed::Send(out)) => {
            request_size(&out.headers, &out.body)
        }
        HookOutput::Transformed(bindings::Transformed::Skip(reason))
        | HookOutput::Verdict(bindings::Verdict::Deny(reason)) => reason.len(),
        HookOutput::Verdict(bindings::Verdict::Allow) => 0,
    }
}

/// A body sent on is JSON unless the plugin declared another content type.
fn check_json(headers: &[(String, String)], body: &[u8]) -> Result<(), PluginError> {
    let declared_other = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type") && !value.to_ascii_lowercase().contains("json")
    });
    if declared_other {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| PluginError::InvalidJson {
            reason: e.to_string(),
        })
}

/// The end of what a trapped guest wrote to stderr, on one line.
fn guest_message(stderr: &str) -> Option<String> {
    let text = stderr.trim();
    if text.is_empty() {
        return None;
    }
    let mut start = text.len().saturating_sub(MAX_GUEST_MESSAGE);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    Some(
        text[start..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The engine every plugin of this process compiles and runs on: a pooling
/// allocator sized by `limits`, fuel and epoch interruption. A compile
/// worker builds the same one, so that what it compiles loads here.
fn engine(limits: &Limits) -> Result<Engine, PluginError> {
    let slots = limits.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // Every slot fits the largest guest we know of, so a burst of calls
    // to one plugin never runs the pool dry: measured, a Rust component
    // holds 3 core instances, StarlingMonkey (JavaScript) 4 and
    // componentize-py 14, each with 1 memory and 2 tables. A component
    // over the per-component limits fails to compile, naming the limit.
    pool.total_component_instances(slots)
        .total_core_instances(slots * CORE_INSTANCES_PER_CALL)
        .total_memories(slots * MEMORIES_PER_CALL)
        .total_tables(slots * TABLES_PER_CALL)
        .total_stacks(slots)
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .max_memories_per_component(MEMORIES_PER_CALL)
        .max_tables_per_component(TABLES_PER_CALL)
        .max_memory_size(limits.memory_bytes)
        // Resetting a slot with memset instead of madvise avoids a
        // TLB shootdown on every core per call, which otherwise halves
        // throughput as soon as two threads run plugins. 2 MiB covers a
        // typical Rust plugin's memory (1 MiB of it is its stack).
        .linear_memory_keep_resident(KEEP_RESIDENT.min(limits.memory_bytes))
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10)
        // Where the kernel can say which pages a call dirtied (Linux
        // 6.7+), reset only those: a call touches a few pages of its
        // 1 MiB stack, and clearing all of it was the largest single
        // cost of a gate decision.
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .consume_fuel(true)
        .epoch_interruption(true);
    Engine::new(&config).map_err(runtime_error)
}

/// Runs `work` on a blocking thread, off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PluginError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PluginError::Runtime {
            reason: format!("a blocking task failed: {e}"),
        })
}

fn runtime_error(err: impl std::fmt::Display) -> PluginError {
    PluginError::Runtime {
        reason: err.to_string(),
    }
}
