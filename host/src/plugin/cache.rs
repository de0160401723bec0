//! This node's compiled plugins, on its own disk.
//!
//! Loading compiled code is loading native code, so a node only ever loads
//! what it compiled itself: files in its own data directory, named by the
//! component's sha256 and the engine's compatibility hash. Nothing compiled
//! is kept in the database, which every node shares: a write there could
//! otherwise put native code into every node. Identical bytes, uploaded
//! twice or by two tenants, are compiled once.

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PluginError;
use super::compiler::Compiled;

/// Where compiled components are kept, if anywhere.
pub(super) struct CompileCache {
    dir: Option<PathBuf>,
    engine_hash: String,
}

impl CompileCache {
    /// A cache in `dir`, created if needed; none at all without a `dir`.
    pub(super) fn new(dir: Option<PathBuf>, engine_hash: &str) -> Result<Self, PluginError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| PluginError::Runtime {
                reason: format!("cannot create the plugin cache {}: {e}", dir.display()),
            })?;
        }
        Ok(CompileCache {
            dir,
            engine_hash: engine_hash.to_string(),
        })
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        // Both parts are hex digits: no path can be smuggled in.
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_hash)))
    }

    /// This engine's compiled copy of the component with this sha256, if
    /// this node made one. A copy that does not load is removed.
    #[expect(
        unsafe_code,
        reason = "deserializing is loading native code; only files this node \
                  wrote, for this exact engine, are read"
    )]
    pub(super) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256)?;
        // Read into memory rather than mapped: a mapped file changed under
        // a running plugin would crash the process.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file is in this node's own cache, written by `store`
        // with what this engine, or this node's compile worker building
        // the same engine, serialized (the engine's hash is in the name);
        // wasmtime checks the engine and version header again.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), "recompiling a plugin: {err}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps a compiled component, serialized once more unless compiling
    /// already did it. A failure only costs a compilation later, so it is
    /// logged, not returned.
    pub(super) fn store(&self, sha256: &str, compiled: Compiled) {
        let Some(path) = self.path(sha256) else {
            return;
        };
        let serialized = match compiled.serialized {
            Some(bytes) => Ok(bytes),
            None => compiled.component.serialize().map_err(|e| e.to_string()),
        };
        let written =
            serialized.and_then(|bytes| write_atomically(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), "cannot keep a compiled plugin: {err}");
        }
    }
}

/// Writes a file whole or not at all: a crash mid-write leaves no partial
/// file for a later start to load.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}
