//! The compiled plugins a node keeps in memory, by sha256, under a memory
//! budget: past it, the least recently used are dropped. A dropped plugin
//! is loaded again on its next use from the node's compile cache, which
//! costs a read from disk, not a compilation. Calls that hold a plugin
//! keep it alive until they end.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::plugin::Plugin;

/// Compiled plugins in memory, least recently used dropped past a budget.
pub(super) struct Resident {
    inner: Mutex<Inner>,
}

struct Inner {
    by_sha: HashMap<String, Entry>,
    /// Bytes of compiled code held.
    bytes: usize,
    budget: usize,
    /// Counts uses: the lowest stamp is the least recently used.
    tick: u64,
}

struct Entry {
    plugin: Plugin,
    bytes: usize,
    used: u64,
}

impl Resident {
    /// Keeps at most `budget` bytes of compiled code, and always the plugin
    /// used last, however large.
    pub(super) fn new(budget: usize) -> Self {
        Resident {
            inner: Mutex::new(Inner {
                by_sha: HashMap::new(),
                bytes: 0,
                budget,
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plugin compiled from these bytes, if held, marked as just used.
    pub(super) fn get(&self, sha256: &str) -> Option<Plugin> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.by_sha.get_mut(sha256)?;
        entry.used = tick;
        Some(entry.plugin.clone())
    }

    /// Holds a plugin just compiled or loaded, dropping the least recently
    /// used others while the budget is exceeded.
    pub(super) fn insert(&self, sha256: &str, plugin: Plugin) {
        let bytes = plugin.code_bytes();
        let mut inner = self.lock();
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.by_sha.insert(
            sha256.to_string(),
            Entry {
                plugin,
                bytes,
                used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > inner.budget && inner.by_sha.len() > 1 {
            let Some(oldest) = inner
                .by_sha
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(sha, _)| sha.clone())
            else {
                break;
            };
            if let Some(gone) = inner.by_sha.remove(&oldest) {
                inner.bytes -= gone.bytes;
                metrics::counter!("hookgate_plugin_evictions_total").increment(1);
            }
        }
        metrics::gauge!("hookgate_plugin_resident_bytes").set(inner.bytes as f64);
    }

    /// Forgets every plugin, as after a resync.
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.by_sha.clear();
        inner.bytes = 0;
        metrics::gauge!("hookgate_plugin_resident_bytes").set(0.0);
    }
}
