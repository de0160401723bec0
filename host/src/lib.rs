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
//! - [`expr`]: OpenAPI runtime expressions;
//! - [`app`]: wiring and lifecycle; [`config`]; [`cli`]: `hookgate plugin`.

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
