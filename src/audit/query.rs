//! Reading the audit log newest first, filtered and paged.
//!
//! Paging is by sequence number, not by offset: the next page starts strictly before the last
//! sequence returned, so entries appended between two page requests neither shift nor repeat
//! what the reader sees.

use super::{AuditEntry, Operation};
use crate::store::{envelope, keys, Store, StoreError, TreeName};

/// Entries examined for one page at most. A filter that matches rarely would otherwise read
/// the whole log inside one command; instead the page comes back short with a cursor to
/// continue from.
const SCAN_BUDGET: usize = 10_000;

/// Which entries to return. Every filter is optional; the default returns the newest 50.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries about this device user.
    pub device_user_id: Option<String>,
    /// Only entries about this device.
    pub device_id: Option<String>,
    /// Only entries of this operation type.
    pub operation: Option<Operation>,
    /// Only entries at or after this wall time (Unix ms).
    pub since_unix_ms: Option<i64>,
    /// Only entries at or before this wall time (Unix ms).
    pub until_unix_ms: Option<i64>,
    /// Continue below this sequence number (the previous page's `next_before`).
    pub before_sequence: Option<u64>,
    /// Entries per page.
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            device_user_id: None,
            device_id: None,
            operation: None,
            since_unix_ms: None,
            until_unix_ms: None,
            before_sequence: None,
            limit: 50,
        }
    }
}

/// One page of results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// Matching entries with their sequence numbers, newest first.
    pub entries: Vec<(u64, AuditEntry)>,
    /// Pass as `before_sequence` to get the next (older) page; `None` when the log has been
    /// read to its beginning.
    pub next_before: Option<u64>,
}

impl AuditQuery {
    fn matches(&self, entry: &AuditEntry) -> bool {
        let same = |wanted: &Option<String>, actual: &Option<String>| {
            wanted.is_none() || wanted.as_deref() == actual.as_deref()
        };
        same(&self.device_user_id, &entry.device_user_id)
            && same(&self.device_id, &entry.device_id)
            && self.operation.is_none_or(|op| op == entry.operation)
            && self.since_unix_ms.is_none_or(|t| entry.at_unix_ms >= t)
            && self.until_unix_ms.is_none_or(|t| entry.at_unix_ms <= t)
    }
}

pub(super) fn run(store: &Store, query: &AuditQuery) -> Result<AuditPage, StoreError> {
    let tree = store.tree(TreeName::Audit);
    let range = match query.before_sequence {
        Some(before) => tree.range(..keys::sequence(before)),
        None => tree.range::<&[u8], _>(..),
    };
    let mut entries = Vec::new();
    let mut last_examined = None;
    for (examined, item) in range.rev().enumerate() {
        if entries.len() >= query.limit || examined >= SCAN_BUDGET {
            return Ok(AuditPage {
                entries,
                next_before: last_examined,
            });
        }
        let (key, bytes) = item.map_err(StoreError::sled("scan the audit log"))?;
        let sequence = keys::parse_sequence(&key).ok_or_else(|| StoreError::BadKey {
            tree: TreeName::Audit,
            key: String::from_utf8_lossy(&key).into_owned(),
            expected: "an 8-byte big-endian sequence number",
        })?;
        let entry: AuditEntry = envelope::decode(&bytes)
            .map_err(|source| StoreError::value(TreeName::Audit, &key, source))?;
        last_examined = Some(sequence);
        if query.matches(&entry) {
            entries.push((sequence, entry));
        }
    }
    Ok(AuditPage {
        entries,
        next_before: None,
    })
}
