//! Plugin fixtures and the `hookgate` binary, built from source on first use.
//!
//! Nothing binary is committed: the first test (or bench) that needs a
//! fixture runs `cargo build --release` in `plugins/`, which cargo keeps
//! incremental, or the Python or JavaScript toolchain for the examples in
//! those languages. Shared with `host/benches` through `#[path]`.

use std::io::Write;
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

/// The same component with a custom section naming `tag` appended: it
/// behaves alike, but its bytes (and so its compiled copy and its metrics)
/// are no other test's.
#[allow(dead_code, reason = "the benches that include this file do not use it")]
pub(crate) fn distinct(mut wasm: Vec<u8>, tag: &str) -> Vec<u8> {
    let name = b"hookgate-test";
    let body: Vec<u8> = [&[name.len() as u8][..], name, tag.as_bytes()].concat();
    assert!(body.len() < 128, "one LEB128 byte holds the section's size");
    wasm.push(0);
    wasm.push(body.len() as u8);
    wasm.extend(body);
    wasm
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

/// A plugin in another language than Rust, built from its source in
/// `plugins/` by that language's component toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    dead_code,
    reason = "each bench that includes this file builds only some of them"
)]
pub(crate) enum Foreign {
    /// `plugins/python-policy`, built with componentize-py.
    Python,
    /// `plugins/js-policy`, built with componentize-js (StarlingMonkey).
    JavaScript,
}

impl Foreign {
    fn name(self) -> &'static str {
        match self {
            Foreign::Python => "python-policy",
            Foreign::JavaScript => "js-policy",
        }
    }
}

/// Bytes of a Python or JavaScript example plugin, or `None` after saying
/// loudly that what needs it is skipped because its toolchain is missing.
/// In CI a missing toolchain fails instead: `.ci/run` installs both.
#[allow(dead_code, reason = "not every bench includes a foreign plugin")]
pub(crate) fn foreign_plugin(lang: Foreign) -> Option<Vec<u8>> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    static JAVASCRIPT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let root = repo_root();
    let plugins = root.join("plugins");
    let out = plugins
        .join("target")
        .join(format!("{}.wasm", lang.name().replace('-', "_")));
    let built = match lang {
        Foreign::Python => PYTHON.get_or_init(|| {
            let tool = plugins.join(".venv/bin/componentize-py");
            let setup = "python3 -m venv plugins/.venv && \
                 plugins/.venv/bin/pip install -r plugins/python-policy/requirements.txt";
            let source = plugins.join("python-policy");
            let wit = source.join("wit");
            let args = [
                "-d".as_ref(),
                wit.as_os_str(),
                "-w".as_ref(),
                "policy".as_ref(),
                "componentize".as_ref(),
                "-p".as_ref(),
                source.as_os_str(),
                "app".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
            ];
            build_foreign(lang, &tool, &args, &source, setup).then(|| out.clone())
        }),
        Foreign::JavaScript => JAVASCRIPT.get_or_init(|| {
            let source = plugins.join("js-policy");
            let tool = source.join("node_modules/.bin/componentize-js");
            let setup = "npm ci --prefix plugins/js-policy";
            let wit = source.join("wit");
            let args = [
                "policy.js".as_ref(),
                "--wit".as_ref(),
                wit.as_os_str(),
                "--world-name".as_ref(),
                "policy".as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ];
            build_foreign(lang, &tool, &args, &source, setup).then(|| out.clone())
        }),
    };
    let path = built.as_ref()?;
    Some(std::fs::read(path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())))
}

/// Runs a language's component build; false if its toolchain is missing.
fn build_foreign(
    lang: Foreign,
    tool: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    setup: &str,
) -> bool {
    if !tool.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: CI builds the {lang:?} example plugin; set it up with `{setup}`",
            tool.display()
        );
        // Straight to stderr: the test harness captures `eprintln!` of
        // tests that pass, and this must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: the tests of the {lang:?} example plugin, because {} is missing. \
             Set it up from the repository root with `{setup}`\n",
            tool.display()
        );
        return false;
    }
    let output = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", tool.display()));
    assert!(
        output.status.success(),
        "building the {lang:?} example failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
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
