//! Hookgate is a self-hosted callback runtime: a host system emits events,
//! and Hookgate runs the callbacks tenants registered for them. Before-events
//! get a synchronous allow or deny; after-events become signed, retried
//! webhooks. Tenants extend both with sandboxed WebAssembly plugins.
//!
//! Layout, from the top down; each module uses only those below it:
//! - [`app`]: wiring and lifecycle; [`config`]; [`cli`]: `hookgate plugin`;
//! - [`console`]: the web console, a client of the API;
//! - [`api`]: the HTTP surface; handlers parse, authorize and call services;
//! - [`openapi`]: importing and publishing OpenAPI documents;
//! - [`delivery`]: after-events, claimed from the store's queue and sent;
//! - [`domain`]: validation and services: tenants, plugins, callbacks,
//!   templates, subscriptions, event intake and the before-event gate;
//! - [`outbound`]: the one builder of outgoing requests, signing, the
//!   egress guard and redaction; [`plugin`]: the wasmtime runtime;
//! - [`store`]: persistence behind async repositories (sled);
//! - [`model`]: the records, plain data; [`clock`]: injected time.
//!
//! `docs/architecture.md` describes the flow of an event through these.

/// mimalloc rather than the system allocator: every request allocates from
/// several threads at once, and glibc's arenas spent a tenth of the gate's
/// time in malloc and its locks. Set here, in the library, so that the
/// benches and tests that run the server in-process measure what the
/// binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells the allocator to keep freed memory for ten seconds before handing
/// it back to the kernel, instead of one. sled replaces its 512 KiB write
/// buffer on every flush, many times a second under load; returned to the
/// kernel in between, each new buffer came back through page faults that
/// zeroed fresh huge pages, 7% of the CPU while delivering.
#[expect(unsafe_code, reason = "one FFI call that passes no pointers")]
pub(crate) fn tune_allocator() {
    /// `mi_option_purge_delay` in mimalloc's `mi_option_e`; the binding
    /// crate names the options around it but not this one.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting an option is a plain store mimalloc allows at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000) };
}

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod delivery;
pub mod domain;
pub mod model;
pub mod openapi;
pub mod outbound;
pub mod plugin;
pub mod store;
