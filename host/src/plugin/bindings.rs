//! The host side of the `hookgate:plugin` contract, generated from `wit/`.
//!
//! This is the only module that runs `bindgen!`; the rest of the crate sees
//! the plain Rust types in [`super`], so the WIT can evolve behind one seam.
//! Two versions are bound: 0.2.0, where each hook is an interface a plugin
//! exports only if it implements it, and the frozen 0.1.0, where every
//! plugin exports all three as functions. Both share 0.2.0's types, which
//! are structurally the same.

wasmtime::component::bindgen!({
    path: "../wit/plugin.wit",
    world: "plugin",
    // Plugin calls yield to the executor while they burn fuel, so a slow
    // plugin never monopolises a worker thread.
    exports: { default: async },
    // Logging can trap, so that a plugin flooding the log is stopped early
    // instead of copying gigabytes of text until its deadline.
    imports: { "hookgate:plugin/host.log": trappable },
});

pub(crate) use self::exports::hookgate::plugin::{decide, judge, transform};
pub(crate) use self::hookgate::plugin::host::Level;
pub(crate) use self::hookgate::plugin::types::{
    Event, Failure, Incoming, Outgoing, Phase, Transformed, Verdict,
};

/// Version 0.1.0 of the contract.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/legacy/plugin-0.1.0.wit",
        world: "plugin",
        exports: { default: async },
        imports: { "hookgate:plugin/host.log": trappable },
        with: { "hookgate:plugin/types@0.1.0": super::hookgate::plugin::types },
    });

    pub(crate) use self::hookgate::plugin::host::Level;
}
