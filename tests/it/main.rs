//! End-to-end tests for Hookgate, in one test binary.
//!
//! - `plugins`: every example and hostile plugin through the real runtime;
//! - `cli`: the `hookgate plugin` commands, run as a real process.

mod cli;
mod fixtures;
mod plugins;
