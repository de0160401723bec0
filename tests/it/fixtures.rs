//! Plugin fixtures and the `hookgate` binary, built from source on first use.
//!
//! Nothing binary is committed: the first test (or bench) that needs a
//! fixture runs `cargo build --release` in `plugins/`, which cargo keeps
//! incremental. Shared with `host/benches` through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root: every crate that includes this file sits one below it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives inside the repository")
        .to_path_buf()
}

/// Bytes of a plugin component from `plugins/`, by crate name (`rate-policy`).
pub(crate) fn plugin(name: &str) -> Vec<u8> {
    let path = plugin_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Path of a plugin component from `plugins/`, built if needed.
pub(crate) fn plugin_path(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let plugins = repo_root().join("plugins");
        // rust-toolchain.toml asks for the wasm target, but a toolchain
        // installed before it was read lacks it; adding it is a no-op if
        // it is there, and where rustup is missing the build says why.
        let _ = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .current_dir(&plugins)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        cargo(&plugins, &["build", "--release"]);
        plugins.join("target/wasm32-wasip2/release")
    });
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Path of the `hookgate` binary, built in the profile the tests use.
#[allow(
    dead_code,
    reason = "the gate and plugin benches include this file but run no binary"
)]
pub(crate) fn hookgate_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = repo_root();
        let release = !cfg!(debug_assertions);
        let mut args = vec!["build", "-p", "hookgate", "--bin", "hookgate"];
        if release {
            args.push("--release");
        }
        cargo(&root, &args);
        // The test executable lives in target/<profile>/deps.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        profile_dir.join(format!("hookgate{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        // Settings meant for the outer build must not leak into this one.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "`cargo {}` failed in {}",
        args.join(" "),
        dir.display()
    );
}
