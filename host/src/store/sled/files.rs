//! Making sled's writes durable: `fdatasync` of what it wrote.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::store::{StoreError, StoreResult};

/// The files sled writes, synced to stable storage on every flush.
///
/// sled's own flush ends in `sync_file_range`, which reaches the disk but
/// neither its write cache nor the file's metadata, and writes large
/// values to blob files without syncing them at all. A write survives a
/// power loss only once `fdatasync` has returned, so every flush ends in
/// one: for the log, and for each blob file not synced before.
pub(super) struct Files {
    log: std::fs::File,
    blobs: PathBuf,
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl Files {
    pub(super) fn open(dir: &Path) -> StoreResult<Self> {
        let log = std::fs::File::open(dir.join("db"))
            .map_err(|e| StoreError::Backend(format!("cannot open sled's log: {e}")))?;
        Ok(Files {
            log,
            blobs: dir.join("blobs"),
            synced_blobs: Default::default(),
        })
    }

    pub(super) fn sync(&self) -> StoreResult<()> {
        let failed = |what: &str, e: std::io::Error| {
            StoreError::Backend(format!("cannot sync {what} to disk: {e}"))
        };
        self.log.sync_data().map_err(|e| failed("the log", e))?;
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = HashSet::new();
        let mut new_files = false;
        let listing =
            std::fs::read_dir(&self.blobs).map_err(|e| failed("the blob directory", e))?;
        for entry in listing {
            let entry = entry.map_err(|e| failed("the blob directory", e))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match std::fs::File::open(entry.path()) {
                    Ok(file) => file.sync_data().map_err(|e| failed("a blob", e))?,
                    // sled removes blobs it no longer needs at any time.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(failed("a blob", e)),
                }
                new_files = true;
            }
            present.insert(name);
        }
        if new_files {
            // New directory entries are durable only once the directory is.
            std::fs::File::open(&self.blobs)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| failed("the blob directory", e))?;
        }
        *synced = present;
        Ok(())
    }
}
