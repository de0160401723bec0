//! Hookgate is a self-hosted callback runtime: a host system emits events,
//! and Hookgate runs the callbacks tenants registered for them. Before-events
//! get a synchronous allow or deny; after-events become signed, retried
//! webhooks. Tenants extend both with sandboxed WebAssembly plugins.
//!
//! Layout:
//! - [`event`]: events and verdicts, the shared vocabulary;
//! - [`plugin`]: the wasmtime component runtime that runs plugins;
//! - [`cli`]: the `hookgate plugin` commands.

pub mod cli;
pub mod event;
pub mod plugin;
