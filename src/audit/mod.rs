//! The append-only audit log: what the agent did to which device user, when, and on whose
//! authority.
//!
//! Product requirement B5: every discovery, buffering, mapping, conflict, resolution, restore,
//! backup, lock and admin command is recorded and can be queried by device user id, time range
//! and operation type. Entries live in the store's `audit` tree under a sequence key (see
//! [`crate::store`]), so the log is ordered by when entries were *written* even if the wall
//! clock jumps; the wall time inside each entry is for display and range filters only.
//!
//! Nothing edits an entry after it is written. The only removal is the [retention
//! sweep](Audit::sweep_older_than), which drops the oldest entries once they are past
//! `buffer.audit_retention`; the sync engine's retention task runs it together with the other
//! retention rules (`crate::sync::retention`).
//!
//! Writers that change other trees in the same step (the sync engine: buffer + audit + outbox)
//! take the keys with [`Audit::prepare`] before their transaction, as the store requires, and
//! write the entries inside it with [`append_in`] (or [`insert_in`] for one entry). Writers
//! without a transaction use [`Audit::record`]. This module is the only writer of the `audit`
//! tree; the others reach it through these functions.

mod entry;
mod query;

pub use entry::{AuditEntry, Operation, UnknownOperation};
pub use query::{AuditPage, AuditQuery};

use crate::store::{keys, Prepared, Store, StoreError, TreeName, Tx, TxError};

/// The audit log of one store. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    store: Store,
}

impl Audit {
    /// The audit log kept in `store`.
    pub fn new(store: Store) -> Audit {
        Audit { store }
    }

    /// Appends `entry` and returns its sequence number. Not yet durable: the caller makes it
    /// durable (with whatever else it wrote) before acknowledging anything.
    pub fn record(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let sequence = self.store.next_sequence()?;
        self.store
            .insert(TreeName::Audit, keys::sequence(sequence), entry)?;
        Ok(sequence)
    }

    /// Takes the keys for `entries`, in order, before the caller's transaction writes them with
    /// [`append_in`].
    pub fn prepare(&self, entries: Vec<AuditEntry>) -> Result<Prepared<AuditEntry>, StoreError> {
        Prepared::number(&self.store, entries)
    }

    /// One page of entries matching `query`, newest first; see [`AuditQuery`] for paging.
    pub fn query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        query::run(&self.store, query)
    }

    /// Removes entries written before `cutoff_unix_ms`, oldest first, and returns how many.
    ///
    /// The sweep walks in write order and stops at the first entry that is not old enough, so
    /// it never has to read the whole log. An entry stamped by a clock that was far behind
    /// (a box booting without RTC) therefore lives until the entries written before it have
    /// expired too: the log errs on keeping, never on dropping too early.
    pub fn sweep_older_than(&self, cutoff_unix_ms: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.store.scan_prefix::<AuditEntry>(TreeName::Audit, []) {
            let (key, entry) = item?;
            if entry.at_unix_ms >= cutoff_unix_ms {
                break;
            }
            self.store.remove::<AuditEntry>(TreeName::Audit, key)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Appends `entry` at `sequence` inside a transaction that declared [`TreeName::Audit`]; for
/// writers whose audit entry must land atomically with other changes. Take `sequence` from
/// [`Store::next_sequence`] before starting the transaction.
pub fn insert_in(tx: &Tx<'_>, sequence: u64, entry: &AuditEntry) -> Result<(), TxError> {
    tx.insert(TreeName::Audit, keys::sequence(sequence), entry)
}

/// Appends prepared entries inside a transaction that declared [`TreeName::Audit`]; for
/// writers whose audit entries must land atomically with other changes. Safe to run again when
/// sled retries the closure.
pub fn append_in(tx: &Tx<'_>, entries: &Prepared<AuditEntry>) -> Result<(), TxError> {
    for (sequence, entry) in &entries.items {
        insert_in(tx, *sequence, entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn temp_audit() -> (tempfile::TempDir, Store, Audit) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("store")))
            .unwrap()
            .store;
        let audit = Audit::new(store.clone());
        (dir, store, audit)
    }

    fn entry(at: i64, operation: Operation, user: Option<&str>) -> AuditEntry {
        AuditEntry {
            at_unix_ms: at,
            operation,
            device_id: Some("dev1".into()),
            device_user_id: user.map(Into::into),
            actor: "agent".into(),
            detail: format!("at {at}"),
        }
    }

    #[test]
    fn query_filters_by_user_operation_and_time_newest_first() {
        let (_dir, _store, audit) = temp_audit();
        audit
            .record(&entry(100, Operation::Discovery, Some("7")))
            .unwrap();
        audit
            .record(&entry(200, Operation::Buffering, Some("7")))
            .unwrap();
        audit
            .record(&entry(300, Operation::Discovery, Some("8")))
            .unwrap();
        audit
            .record(&entry(400, Operation::AdminCommand, None))
            .unwrap();

        let user7 = audit
            .query(&AuditQuery {
                device_user_id: Some("7".into()),
                ..AuditQuery::default()
            })
            .unwrap();
        let times: Vec<i64> = user7.entries.iter().map(|(_, e)| e.at_unix_ms).collect();
        assert_eq!(times, [200, 100]);

        let discoveries = audit
            .query(&AuditQuery {
                operation: Some(Operation::Discovery),
                since_unix_ms: Some(150),
                ..AuditQuery::default()
            })
            .unwrap();
        let times: Vec<i64> = discoveries
            .entries
            .iter()
            .map(|(_, e)| e.at_unix_ms)
            .collect();
        assert_eq!(times, [300]);

        let window = audit
            .query(&AuditQuery {
                since_unix_ms: Some(200),
                until_unix_ms: Some(300),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(window.entries.len(), 2);
    }

    #[test]
    fn paging_walks_back_without_gaps_or_repeats() {
        let (_dir, _store, audit) = temp_audit();
        for at in 0..7 {
            audit.record(&entry(at, Operation::Lock, None)).unwrap();
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = audit
                .query(&AuditQuery {
                    limit: 3,
                    before_sequence: before,
                    ..AuditQuery::default()
                })
                .unwrap();
            seen.extend(page.entries.iter().map(|(_, e)| e.at_unix_ms));
            match page.next_before {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, [6, 5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn sweep_removes_only_entries_older_than_the_cutoff() {
        let (_dir, _store, audit) = temp_audit();
        for at in [10, 20, 30, 40] {
            audit.record(&entry(at, Operation::Backup, None)).unwrap();
        }
        assert_eq!(audit.sweep_older_than(30).unwrap(), 2);
        let left = audit.query(&AuditQuery::default()).unwrap();
        let times: Vec<i64> = left.entries.iter().map(|(_, e)| e.at_unix_ms).collect();
        assert_eq!(times, [40, 30]);
    }

    #[test]
    fn an_entry_written_in_a_transaction_is_queryable() {
        let (_dir, store, audit) = temp_audit();
        let sequence = store.next_sequence().unwrap();
        store
            .transaction(&[TreeName::Audit], |tx| {
                insert_in(tx, sequence, &entry(5, Operation::Mapping, Some("9")))
            })
            .unwrap();
        let page = audit.query(&AuditQuery::default()).unwrap();
        assert_eq!(page.entries[0].0, sequence);
        assert_eq!(page.entries[0].1.operation, Operation::Mapping);
    }

    #[test]
    fn prepared_entries_land_in_order_in_one_transaction() {
        let (_dir, store, audit) = temp_audit();
        let prepared = audit
            .prepare(vec![
                entry(1, Operation::Discovery, Some("1")),
                entry(2, Operation::Missing, Some("2")),
            ])
            .unwrap();
        store
            .transaction(&[TreeName::Audit], |tx| append_in(tx, &prepared))
            .unwrap();
        let page = audit.query(&AuditQuery::default()).unwrap();
        let seen: Vec<(u64, Operation)> = page
            .entries
            .iter()
            .map(|(sequence, e)| (*sequence, e.operation))
            .collect();
        assert_eq!(
            seen,
            [
                (prepared.items[1].0, Operation::Missing),
                (prepared.items[0].0, Operation::Discovery)
            ]
        );
    }
}
