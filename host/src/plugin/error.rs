//! Everything that can go wrong with a plugin, in the plugin author's terms.

/// A plugin failed validation, loading or a call.
///
/// Each case names its cause or the limit that was hit, because this text is
/// what a tenant sees in an upload error, a deny reason or a delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The upload is larger than the configured component size cap.
    #[error("plugin is {size} bytes, over the {limit}-byte component size limit")]
    TooLarge {
        /// Size of the upload.
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary: {reason}")]
    NotWasm {
        /// What was found instead.
        reason: String,
    },
    /// A core module was uploaded where a component is needed.
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin with \
         `cargo build --target wasm32-wasip2` (or another component-model toolchain)"
    )]
    NotAComponent,
    /// Wasmtime refused to compile the component.
    #[error("component does not compile: {reason}")]
    Invalid {
        /// Wasmtime's explanation.
        reason: String,
    },
    /// Compiling needed more memory than this node gives a compilation.
    #[error(
        "compiling the component needed more than {limit_mib} MiB of memory, this node's \
         limit (plugin.compile_memory_mib)"
    )]
    CompileMemory {
        /// The limit, in MiB.
        limit_mib: usize,
    },
    /// Compiling took longer than this node gives a compilation.
    #[error(
        "compiling the component took longer than {}, this node's limit \
         (plugin.compile_timeout_secs)",
        humantime::format_duration(*.limit)
    )]
    CompileTimeout {
        /// The limit.
        limit: std::time::Duration,
    },
    /// A core module's initial memory is over the per-call memory limit, so
    /// the plugin could not even start.
    #[error(
        "plugin needs {needed} bytes of memory to start, over its memory limit of {limit} \
         bytes (plugin.memory_mib)"
    )]
    MemoryTooSmall {
        /// The largest initial memory of its modules, in bytes.
        needed: u64,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The component imports something outside the sandbox's allow-list.
    #[error(
        "component imports `{import}`, which plugins may not use; allowed imports are \
         hookgate:plugin/host and hookgate:plugin/types (0.2.0 or 0.1.0) and, from WASI 0.2, \
         wasi:io, wasi:cli, wasi:clocks, wasi:random, wasi:filesystem (which sees no \
         files), wasi:sockets (which reaches no address) and wasi:http/types and \
         wasi:http/outgoing-handler (which send nothing)"
    )]
    ForbiddenImport {
        /// The import's full name.
        import: String,
    },
    /// An allowed import whose type does not match what the host provides.
    #[error("component import does not match this host: {reason}")]
    ImportMismatch {
        /// Wasmtime's explanation, naming the import.
        reason: String,
    },
    /// The component exports no hook at all.
    #[error(
        "component exports no hook; a plugin exports at least one of the interfaces \
         hookgate:plugin/transform@0.2.0, hookgate:plugin/decide@0.2.0 and \
         hookgate:plugin/judge@0.2.0 (see `hookgate plugin wit`), or, built against \
         hookgate:plugin@0.1.0, the functions transform, decide and judge"
    )]
    NoHooks,
    /// A plugin built against contract 0.1.0 lacks one of its three
    /// functions.
    #[error(
        "component does not export `{export}`; a plugin built against \
         hookgate:plugin@0.1.0 exports transform, decide and judge (with 0.2.0 it \
         exports only the hooks it implements)"
    )]
    MissingExport {
        /// The missing export.
        export: &'static str,
    },
    /// An export exists but has the wrong signature.
    #[error("component exports do not match the hookgate:plugin contract: {reason}")]
    ExportMismatch {
        /// Wasmtime's explanation, naming the export.
        reason: String,
    },
    /// A hook was called that the plugin does not export.
    #[error("plugin does not export the `{hook}` hook; it exports {exports}")]
    NoHook {
        /// The hook's name.
        hook: &'static str,
        /// The hooks it does export, comma separated.
        exports: String,
    },
    /// The event and request handed to the plugin are over the input cap.
    #[error("plugin input is {size} bytes, over the {limit}-byte input limit")]
    InputTooLarge {
        /// Bytes of input.
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// The plugin returned more than the output cap.
    #[error("plugin output is {size} bytes, over the {limit}-byte output limit")]
    OutputTooLarge {
        /// Bytes of output.
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// The plugin executed more instructions than its fuel allows.
    #[error("plugin ran out of fuel after {limit} units (an infinite loop, or too much work)")]
    OutOfFuel {
        /// Fuel granted per call.
        limit: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error("plugin exceeded its {limit_ms} ms deadline")]
    DeadlineExceeded {
        /// The deadline in milliseconds.
        limit_ms: u64,
    },
    /// The plugin asked for more linear memory than allowed.
    #[error("plugin exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// The plugin's call stack overflowed, usually from runaway recursion.
    #[error("plugin overflowed its call stack (runaway recursion?)")]
    StackOverflow,
    /// The plugin trapped: a panic, an abort, or an invalid operation.
    #[error("plugin trapped: {message}{}", guest.as_deref().map(|g| format!("; the plugin said: {g}")).unwrap_or_default())]
    Trap {
        /// What the engine reported.
        message: String,
        /// The tail of what the plugin wrote to stderr, such as a panic message.
        guest: Option<String>,
    },
    /// `transform` returned a body that should be JSON but is not.
    #[error("plugin transform returned a body that is not valid JSON: {reason}")]
    InvalidJson {
        /// The parser's complaint.
        reason: String,
    },
    /// The plugin itself reported a failure.
    #[error("plugin failed ({code}): {message}")]
    Failed {
        /// The plugin's failure code.
        code: String,
        /// The plugin's message.
        message: String,
    },
    /// The host could not set up the sandbox; not the plugin's fault.
    #[error("plugin runtime error: {reason}")]
    Runtime {
        /// What went wrong.
        reason: String,
    },
}

impl PluginError {
    /// A stable, machine-readable name for the error's kind, used in API
    /// responses, history records and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::TooLarge { .. } => "too_large",
            PluginError::NotWasm { .. } => "not_wasm",
            PluginError::NotAComponent => "not_a_component",
            PluginError::Invalid { .. } => "invalid",
            PluginError::CompileMemory { .. } => "compile_memory",
            PluginError::CompileTimeout { .. } => "compile_timeout",
            PluginError::MemoryTooSmall { .. } => "memory_too_small",
            PluginError::ForbiddenImport { .. } => "forbidden_import",
            PluginError::ImportMismatch { .. } => "import_mismatch",
            PluginError::NoHooks | PluginError::MissingExport { .. } => "missing_export",
            PluginError::NoHook { .. } => "missing_hook",
            PluginError::ExportMismatch { .. } => "export_mismatch",
            PluginError::InputTooLarge { .. } => "input_too_large",
            PluginError::OutputTooLarge { .. } => "output_too_large",
            PluginError::OutOfFuel { .. } => "out_of_fuel",
            PluginError::DeadlineExceeded { .. } => "deadline_exceeded",
            PluginError::MemoryLimit { .. } => "memory_limit",
            PluginError::StackOverflow => "stack_overflow",
            PluginError::Trap { .. } => "trap",
            PluginError::InvalidJson { .. } => "invalid_json",
            PluginError::Failed { .. } => "plugin_failure",
            PluginError::Runtime { .. } => "runtime",
        }
    }
}

/// Renders a wasmtime error with its whole cause chain on one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
