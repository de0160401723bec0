//! Write Hookgate plugins in Rust.
//!
//! A Hookgate plugin is a WebAssembly component that exports the hooks it
//! implements, of the three in the `hookgate:plugin` WIT package. Hookgate
//! calls one hook per invocation, each time in a fresh sandbox:
//!
//! - [`Transform`] shapes the request sent to a callback URL, or skips the
//!   delivery;
//! - [`Decide`] answers a before-event locally, with no URL involved;
//! - [`Judge`] interprets a before-callback's HTTP answer.
//!
//! Implement the traits of the hooks you need and hand the type to
//! [`export!`] with their names. The component exports those hooks and no
//! others, so Hookgate knows what the plugin does: it refuses to attach a
//! plugin to a callback that needs a hook the plugin lacks. Build the crate
//! as a `cdylib` for `wasm32-wasip2` and the result is a component Hookgate
//! accepts.
//!
//! # A whole plugin
//!
//! This plugin refuses to delete anything that belongs to the `admin` group:
//!
//! ```
//! use hookgate_sdk::{Decide, Event, Failure, Verdict};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Object {
//!     group: Option<String>,
//! }
//!
//! struct ProtectAdmins;
//!
//! impl Decide for ProtectAdmins {
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
//! hookgate_sdk::export!(ProtectAdmins: Decide);
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
pub use plugin::{Decide, Judge, Transform};

/// Bindings generated from `wit/plugin.wit`, one module per hook's world so
/// that [`export!`] exports only the hooks a plugin implements. Plugins use
/// the types above instead; [`export!`] is the only user of this module.
#[doc(hidden)]
pub mod wit {
    // `export!` expands in the plugin crate, so the generated macros it
    // calls must be public and find these bindings by absolute path.
    pub mod transform {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "transform-plugin",
            pub_export_macro: true,
            default_bindings_module: "hookgate_sdk::wit::transform",
        });
    }

    // The other hooks share the first one's types and host imports.
    pub mod decide {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "decide-plugin",
            pub_export_macro: true,
            default_bindings_module: "hookgate_sdk::wit::decide",
            with: {
                "hookgate:plugin/types@0.2.0": crate::wit::transform::hookgate::plugin::types,
                "hookgate:plugin/host@0.2.0": crate::wit::transform::hookgate::plugin::host,
            },
        });
    }

    pub mod judge {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "judge-plugin",
            pub_export_macro: true,
            default_bindings_module: "hookgate_sdk::wit::judge",
            with: {
                "hookgate:plugin/types@0.2.0": crate::wit::transform::hookgate::plugin::types,
                "hookgate:plugin/host@0.2.0": crate::wit::transform::hookgate::plugin::host,
            },
        });
    }

    pub use transform::hookgate::plugin::host;
    pub use transform::hookgate::plugin::types::{
        Event, Failure, Incoming, Outgoing, Phase, Transformed, Verdict,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{decide, judge, transform};
}
