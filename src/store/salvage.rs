//! Salvage: what happens when the store directory cannot be opened because it is damaged.
//!
//! Crash-looping on a damaged store helps nobody: everything in it can be rebuilt from the
//! devices (that is the agent's job). So a damaged directory is renamed to
//! `<path>.corrupt-<UTC yyyymmddThhmmssZ>` (kept, never deleted, for diagnosis), the agent
//! starts with an empty store, logs an error naming both paths and raises an alarm so the
//! operator learns about it from `status` too.
//!
//! What counts as damage was found by experiment with sled 0.34.7 (see the store's tests):
//! - a garbage `snap.*` or `snap.*.generating` file: `open` returns `Error::Corruption`;
//! - garbage at the start of a multi-MiB `db` file: sled *panics* while writing its
//!   start-up snapshot ("tried to serialize Uninitialized");
//! - a `db` file truncated or garbled from the start: sled opens *silently empty*. The store
//!   catches this case itself: a directory that already had a `db` file but no schema version
//!   in the meta tree lost its contents (the schema version is the first thing a new store
//!   writes and makes durable). The one false alarm: an agent killed during the very first
//!   open of a new store, after sled created `db` but before the version was durable; that
//!   salvage moves aside an empty store, which costs nothing.
//! - a garbled `conf` file gives `Error::Unsupported`, which is *not* salvaged, because the
//!   same error means "written by another sled version", where moving the store aside would
//!   throw away good data. Lock conflicts and file-system errors are not salvaged either.
//!
//! Not detectable: damage in the middle of the log; sled stops reading there and silently
//! drops what follows.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::alarm::{Alarm, AlarmKind};
use super::error::StoreError;

/// What a salvage did, returned by [`crate::store::Store::open`] so the caller can report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageReport {
    /// The store directory that could not be opened (now a fresh, empty store).
    pub original: PathBuf,
    /// Where the damaged directory was moved.
    pub moved_to: PathBuf,
    /// Why it was judged damaged.
    pub reason: String,
    /// When it was moved.
    pub at: DateTime<Utc>,
}

impl SalvageReport {
    /// The alarm that tells the operator about this salvage.
    pub fn alarm(&self) -> Alarm {
        Alarm {
            raised_at_unix_ms: self.at.timestamp_millis(),
            kind: AlarmKind::StoreSalvaged {
                moved_to: self.moved_to.display().to_string(),
                reason: self.reason.clone(),
            },
            message: format!(
                "the store at {} was damaged ({}) and was moved to {}; the agent started with an \
                 empty store and rebuilds it from the devices. Keep the moved directory for \
                 diagnosis and delete it once it is no longer needed",
                self.original.display(),
                self.reason,
                self.moved_to.display()
            ),
        }
    }
}

/// Renames the damaged `path` to an unused `<path>.corrupt-<UTC time>` sibling and makes the
/// rename durable.
pub(crate) fn move_aside(path: &Path, reason: String) -> Result<SalvageReport, StoreError> {
    let at = Utc::now();
    let moved_to = unused_sibling(path, &at);
    std::fs::rename(path, &moved_to).map_err(|source| StoreError::SalvageFailed {
        path: path.to_path_buf(),
        moved_to: moved_to.clone(),
        source,
    })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Best effort: the rename already happened, and a lost rename after a power cut
        // only means the salvage runs again.
        if let Err(error) = std::fs::File::open(parent).and_then(|dir| dir.sync_all()) {
            tracing::warn!(%error, dir = %parent.display(), "could not fsync after moving the damaged store aside");
        }
    }
    Ok(SalvageReport {
        original: path.to_path_buf(),
        moved_to,
        reason,
        at,
    })
}

/// `<path>.corrupt-<time>`, with `-2`, `-3`, … appended if an earlier salvage in the same
/// second already took the name.
fn unused_sibling(path: &Path, at: &DateTime<Utc>) -> PathBuf {
    let base = format!("{}.corrupt-{}", path.display(), at.format("%Y%m%dT%H%M%SZ"));
    let mut candidate = PathBuf::from(&base);
    let mut attempt = 2;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{attempt}"));
        attempt += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_name_carries_the_utc_time_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let at = DateTime::parse_from_rfc3339("2026-11-22T10:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = unused_sibling(&store, &at);
        assert_eq!(first.file_name().unwrap(), "store.corrupt-20261122T100509Z");
        std::fs::create_dir(&first).unwrap();
        assert_eq!(
            unused_sibling(&store, &at).file_name().unwrap(),
            "store.corrupt-20261122T100509Z-2"
        );
    }
}
