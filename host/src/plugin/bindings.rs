//! The host side of the `hookgate:plugin` world, generated from `wit/`.
//!
//! This is the only module that runs `bindgen!`; the rest of the crate sees
//! the plain Rust types in [`super`], so the WIT can evolve behind one seam.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Plugin calls yield to the executor while they burn fuel, so a slow
    // plugin never monopolises a worker thread.
    exports: { default: async },
    // Logging can trap, so that a plugin flooding the log is stopped early
    // instead of copying gigabytes of text until its deadline.
    imports: { "hookgate:plugin/host.log": trappable },
});

pub(crate) use self::hookgate::plugin::host::Level;
pub(crate) use self::hookgate::plugin::types::Phase;
