//! Hookgate is a self-hosted callback runtime: a host system emits events,
//! and Hookgate runs the callbacks tenants registered for them. Before-events
//! get a synchronous allow or deny; after-events become signed, retried
//! webhooks. Tenants extend both with sandboxed WebAssembly plugins.
//!
//! Layout, in the direction data flows:
//! - [`api`]: the HTTP surface; handlers parse, authorize and call services;
//! - services: [`tenants`], [`registry`] (plugins), [`callbacks`], [`events`]
//!   (intake), [`gate`] (before-events) and [`delivery`] (after-events);
//! - [`store`]: persistence behind the [`store::Storage`] trait (sled);
//! - [`plugin`]: the wasmtime component runtime; [`outbound`]: HTTP to
//!   callback URLs, behind the [`egress`] guard and [`signing`];
//! - [`expr`]: OpenAPI runtime expressions; [`subscriptions`] and
//!   [`templates`] use them, and [`openapi`] imports and publishes documents;
//! - [`console`]: the web console, a client of the API;
//! - [`app`]: wiring and lifecycle; [`config`]; [`cli`]: `hookgate plugin`.

/// mimalloc rather than the system allocator: every request allocates from
/// several threads at once, and glibc's arenas spent a tenth of the gate's
/// time in malloc and its locks. Set here, in the library, so that the
/// benches and tests that run the server in-process measure what the
/// binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod app;
pub mod auth;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod console;
pub mod delivery;
pub mod egress;
pub mod error;
pub mod event;
pub mod events;
pub mod expr;
pub mod gate;
pub mod ids;
pub mod input;
pub mod model;
pub mod openapi;
pub mod outbound;
pub mod plugin;
pub mod registry;
pub mod signing;
pub mod store;
pub mod subscriptions;
pub mod templates;
pub mod tenants;
