//! Write Hookgate plugins in Rust.
//!
//! A Hookgate plugin is a WebAssembly component that targets the
//! `hookgate:plugin` WIT world. Hookgate calls one of its three exports per
//! invocation, each time in a fresh sandbox:
//!
//! - [`Plugin::transform`] shapes the request sent to a callback URL, or skips
//!   the delivery;
//! - [`Plugin::decide`] answers a before-event locally, with no URL involved;
//! - [`Plugin::judge`] interprets a before-callback's HTTP answer.
//!
//! Implement [`Plugin`] with only the functions you need (the others have
//! harmless defaults) and hand the type to [`export!`]. Build the crate as a
//! `cdylib` for `wasm32-wasip2` and the result is a component Hookgate accepts.
//!
//! # A whole plugin
//!
//! This plugin refuses to delete anything that belongs to the `admin` group:
//!
//! ```
//! use hookgate_sdk::{Event, Failure, Plugin, Verdict};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Object {
//!     group: Option<String>,
//! }
//!
//! struct ProtectAdmins;
//!
//! impl Plugin for ProtectAdmins {
//!     fn decide(event: Event) -> Result<Verdict, Failure> {
//!         if event.action != "deleted" {
//!             return Ok(Verdict::allow());
//!         }
//!         let object: Object = event.data()?;
//!         Ok(match object.group.as_deref() {
//!             Some("admin") => Verdict::deny("objects of the admin group cannot be deleted"),
//!             _ => Verdict::allow(),
//!         })
//!     }
//! }
//!
//! hookgate_sdk::export!(ProtectAdmins);
//! # fn main() {}
//! ```
//!
//! with this `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "protect-admins"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! hookgate-sdk = { path = "../hookgate/sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! and `cargo build --release --target wasm32-wasip2`.
//!
//! # Talking to the host
//!
//! A plugin sees no files, network or environment. What it can reach is the
//! configuration of the callback being run ([`config`], [`config_or`],
//! [`config_parse`]) and the host's log ([`info!`] and its siblings). Both are
//! imports of the component, so they only work inside Hookgate; calling them in
//! a native unit test aborts.

mod host;
mod message;
mod outcome;
mod plugin;

pub use host::{Level, config, config_or, config_parse, log};
pub use message::{Event, Incoming, Outgoing, Phase};
pub use outcome::{Failure, Transformed, Verdict};
pub use plugin::Plugin;

/// Bindings generated from `wit/plugin.wit`. Plugins use the types above
/// instead; [`export!`] is the only user of this module.
#[doc(hidden)]
#[expect(
    clippy::too_many_arguments,
    reason = "the generated export glue takes an event's fields as flat arguments"
)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        // `export!` expands in the plugin crate, so the generated macros it
        // calls must be public and find these bindings by absolute path.
        pub_export_macro: true,
        default_bindings_module: "hookgate_sdk::wit",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{decide, judge, transform};
}
