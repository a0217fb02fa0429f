//! Errors of the store, worded for the operator who reads them in the journal.

use std::path::PathBuf;

use thiserror::Error;

use super::envelope::EnvelopeError;
use super::keys::KeyError;
use super::trees::TreeName;

/// Everything that can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled's exclusive lock on `<path>/db` is held: another process has the store open.
    #[error(
        "store {path} is already open in another process (is a second edge-agent running?); \
         stop the other instance first. The store was left untouched"
    )]
    AlreadyInUse {
        /// The store directory.
        path: PathBuf,
    },
    /// The file system refused (permissions, missing parent, full disk, read-only mount).
    #[error(
        "cannot open store {path}: {source}. Check that the directory is writable by the \
         agent's user and the disk is not full or read-only. The store was left untouched"
    )]
    OpenIo {
        /// The store directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// sled declined the store's settings file (`conf`): a different sled on-disk version or
    /// a damaged settings file. Not salvaged automatically, because a version mismatch would
    /// otherwise throw away a healthy store.
    #[error(
        "sled refused to open store {path}: {reason}. If this edge-agent build was not changed, \
         the store's `conf` file is probably damaged: stop the agent and move {path} aside so a \
         fresh store is created"
    )]
    Refused {
        /// The store directory.
        path: PathBuf,
        /// sled's explanation.
        reason: String,
    },
    /// The store was written by a newer build; reading it could misinterpret its records.
    #[error(
        "store {path} has schema version {found}, but this edge-agent build only understands up \
         to version {supported}; it was written by a newer edge-agent. Run that newer version \
         (the store was left untouched)"
    )]
    SchemaTooNew {
        /// The store directory.
        path: PathBuf,
        /// The schema version stored in the meta tree.
        found: u32,
        /// The newest schema version this build knows.
        supported: u32,
    },
    /// An older schema for which this build has no migration step.
    #[error(
        "store {path} has schema version {found} and this build has no migration from it to \
         version {current}; this is a bug in edge-agent, please report it"
    )]
    NoMigration {
        /// The store directory.
        path: PathBuf,
        /// The schema version stored in the meta tree.
        found: u32,
        /// The schema version this build writes.
        current: u32,
    },
    /// Salvage could not move the damaged directory out of the way.
    #[error(
        "store {path} is damaged and could not be moved aside to {moved_to}: {source}. Move or \
         remove it by hand, then start the agent again"
    )]
    SalvageFailed {
        /// The damaged store directory.
        path: PathBuf,
        /// Where it should have gone.
        moved_to: PathBuf,
        /// Why the rename failed.
        source: std::io::Error,
    },
    /// Rewriting the store for a changed compression setting failed (see
    /// `store::recompress`). The store itself is left as it was, or, past the point where
    /// the copy became the store, the next start finishes the switch.
    #[error(
        "could not rewrite store {path} for its new compression setting: {reason}. Check free \
         space (the rewrite needs room for a second copy of the store) and permissions on the \
         store's parent directory, then start the agent again; nothing was lost"
    )]
    RewriteFailed {
        /// The store directory.
        path: PathBuf,
        /// Which step failed and why.
        reason: String,
    },
    /// After salvage, even a brand-new store could not be opened.
    #[error(
        "a fresh store at {path} could not be opened after moving the damaged one aside: \
         {reason}. Check the disk (dmesg) and free space"
    )]
    FreshStoreFailed {
        /// The store directory.
        path: PathBuf,
        /// Why the fresh store failed.
        reason: String,
    },
    /// The meta tree has no store epoch, which every open writes: the store was changed by
    /// something other than this agent.
    #[error(
        "store {path} has no store epoch although every open records one; was it modified by \
         another tool? Restart the agent so the open records one"
    )]
    MissingEpoch {
        /// The store directory.
        path: PathBuf,
    },
    /// The operating system gave no random bytes for a new store epoch.
    #[error("cannot mint a store epoch: the system's random source failed: {0}")]
    Random(String),
    /// A credential value file beside sled could not be written, read or removed.
    #[error(
        "value file {path}: {source}. Check that the store directory is writable by the \
         agent's user and the disk is not full or read-only"
    )]
    ValueIo {
        /// The value file (or the values directory).
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A value file's bytes no longer match the digest that names it.
    #[error(
        "value file {path} does not hold the value its name promises (damaged on disk); the \
         next read of the device fetches that credential again"
    )]
    ValueDamaged {
        /// The value file.
        path: PathBuf,
    },
    /// A sled operation failed while the store was running.
    #[error("store operation '{operation}' failed: {source}")]
    Sled {
        /// What the store was doing.
        operation: &'static str,
        /// sled's error.
        source: sled::Error,
    },
    /// A stored value could not be encoded or decoded.
    #[error("value in tree '{tree}' at key {key}: {source}")]
    Value {
        /// The tree holding the value.
        tree: TreeName,
        /// The key, printable (non-ASCII bytes escaped).
        key: String,
        /// The envelope problem.
        source: EnvelopeError,
    },
    /// A stored key does not have the shape its tree's layout prescribes.
    #[error("key {key} in tree '{tree}' does not follow the tree's layout (expected {expected})")]
    BadKey {
        /// The tree holding the key.
        tree: TreeName,
        /// The key, printable.
        key: String,
        /// What the layout expects there.
        expected: &'static str,
    },
    /// A key could not be built from the given ids.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The durability call failed; nothing depending on the writes may be acknowledged.
    #[error(transparent)]
    Durability(#[from] DurabilityError),
    /// A transaction closure aborted; nothing it wrote was kept.
    #[error("transaction aborted, nothing was written: {reason}")]
    TransactionAborted {
        /// Why the closure aborted.
        reason: String,
    },
    /// A transaction closure touched a tree it did not declare.
    #[error(
        "tree '{tree}' was used inside a transaction that did not list it; add it to the \
         transaction's trees (this is a bug in edge-agent)"
    )]
    TreeNotInTransaction {
        /// The undeclared tree.
        tree: TreeName,
    },
}

impl StoreError {
    /// Wraps a sled error with what the store was doing.
    pub(crate) fn sled(operation: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Sled { operation, source }
    }

    /// Wraps an envelope error with where the value lives.
    pub(crate) fn value(tree: TreeName, key: &[u8], source: EnvelopeError) -> StoreError {
        StoreError::Value {
            tree,
            key: printable_key(key),
            source,
        }
    }
}

/// Why a durable flush failed. Cloneable because one failed group commit answers every
/// caller that was waiting on it.
#[derive(Debug, Clone, Error)]
pub enum DurabilityError {
    /// sled's own flush failed.
    #[error(
        "sled could not flush the store: {0}. Writes since the last durable point may be lost; \
         nothing that depends on them may be acknowledged"
    )]
    Flush(String),
    /// The fsync that makes the flush survive a power cut failed.
    #[error(
        "fsync of {path} failed: {message}. Writes since the last durable point may be lost; \
         check the disk (dmesg) and free space"
    )]
    Fsync {
        /// The file or directory being synced.
        path: PathBuf,
        /// What the kernel said.
        message: String,
    },
    /// An earlier flush failed. After a failed fsync the kernel may have dropped the dirty
    /// pages and a retry can report success falsely, so the store stops confirming
    /// durability until the agent is restarted and sled recovers from its log.
    #[error(
        "an earlier durable flush of the store failed ({0}); durability can no longer be \
         confirmed. Restart the agent"
    )]
    Poisoned(Box<DurabilityError>),
    /// The committer thread is gone (store shutting down, or it panicked).
    #[error(
        "the store's group committer has stopped, so the write could not be confirmed durable"
    )]
    CommitterStopped,
}

/// Renders a key for messages: printable ASCII as is, everything else escaped (`\x00`).
pub(crate) fn printable_key(key: &[u8]) -> String {
    key.iter()
        .flat_map(|byte| std::ascii::escape_default(*byte))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_can_cross_threads_and_be_wrapped_by_anyhow() {
        fn assert_thread_safe<T: Send + Sync + 'static>() {}
        assert_thread_safe::<StoreError>();
        assert_thread_safe::<DurabilityError>();
    }

    #[test]
    fn keys_are_printed_with_separators_escaped() {
        assert_eq!(printable_key(b"dev1\x0042"), "dev1\\x0042");
    }
}
