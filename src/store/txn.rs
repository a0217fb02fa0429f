//! Multi-tree transactions: all of a sync step's writes (buffer, audit, outbox…) land together
//! or not at all.
//!
//! A thin typed layer over sled's `Transactional` for a list of trees. sled may run the
//! closure several times when transactions conflict, so it must not have side effects outside
//! the transaction. Inside the closure never flush, never call
//! [`Store::next_sequence`] and never touch a tree that was not declared: sled can deadlock or
//! block there (sled issues #1134, #1139); take sequence numbers before the transaction and
//! call [`Store::make_durable`] after it.

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
    UnabortableTransactionError,
};

use super::envelope::Record;
use super::error::StoreError;
use super::trees::TreeName;
use super::typed::{decode, encode};
use super::Store;

/// The typed view a transaction closure works with.
pub struct Tx<'a> {
    declared: &'a [TreeName],
    views: &'a [TransactionalTree],
}

/// Why a transaction closure stopped: a conflict sled will retry, a storage error, or an
/// abort (by the closure or by a value that could not be encoded or decoded). Closures return
/// it with `?` from [`Tx`] methods or build one with [`TxError::abort`].
#[derive(Debug)]
pub struct TxError(ConflictableTransactionError<StoreError>);

impl TxError {
    /// Aborts the transaction: nothing it wrote is kept, and [`Store::transaction`] returns
    /// [`StoreError::TransactionAborted`] with `reason`.
    pub fn abort(reason: impl Into<String>) -> TxError {
        TxError(ConflictableTransactionError::Abort(
            StoreError::TransactionAborted {
                reason: reason.into(),
            },
        ))
    }

    fn store(error: StoreError) -> TxError {
        TxError(ConflictableTransactionError::Abort(error))
    }
}

impl From<UnabortableTransactionError> for TxError {
    fn from(error: UnabortableTransactionError) -> Self {
        TxError(error.into())
    }
}

impl Tx<'_> {
    fn view(&self, tree: TreeName) -> Result<&TransactionalTree, TxError> {
        self.declared
            .iter()
            .position(|declared| *declared == tree)
            .map(|index| &self.views[index])
            .ok_or(TxError::store(StoreError::TreeNotInTransaction { tree }))
    }

    /// Reads a value as the transaction sees it (including its own earlier writes).
    pub fn get<R: Record>(
        &self,
        tree: TreeName,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<R>, TxError> {
        let key = key.as_ref();
        match self.view(tree)?.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, key, &bytes).map(Some).map_err(TxError::store),
        }
    }

    /// Writes a value inside the transaction.
    pub fn insert<R: Record>(
        &self,
        tree: TreeName,
        key: impl AsRef<[u8]>,
        value: &R,
    ) -> Result<(), TxError> {
        let key = key.as_ref();
        let bytes = encode(tree, key, value).map_err(TxError::store)?;
        self.view(tree)?.insert(key, bytes)?;
        Ok(())
    }

    /// Removes a value inside the transaction; `true` if there was one.
    pub fn remove(&self, tree: TreeName, key: impl AsRef<[u8]>) -> Result<bool, TxError> {
        Ok(self.view(tree)?.remove(key.as_ref())?.is_some())
    }
}

impl Store {
    /// Runs `body` as one atomic transaction over `trees` (the trees it may touch).
    ///
    /// The writes are atomic but not yet durable: call [`Store::make_durable`] afterwards,
    /// before acknowledging anything.
    pub fn transaction<T, F>(&self, trees: &[TreeName], body: F) -> Result<T, StoreError>
    where
        F: Fn(&Tx<'_>) -> Result<T, TxError>,
    {
        let mut declared = trees.to_vec();
        declared.sort();
        declared.dedup();
        let handles: Vec<sled::Tree> = declared.iter().map(|t| self.tree(*t).clone()).collect();
        let outcome = handles
            .as_slice()
            .transaction(|views: &Vec<TransactionalTree>| {
                let tx = Tx {
                    declared: &declared,
                    views,
                };
                body(&tx).map_err(|TxError(inner)| inner)
            });
        // The node versions this commit replaced are in this thread's bag (see `retired`).
        super::retired::release_retired();
        for tree in &declared {
            self.wrote(*tree);
        }
        outcome.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(source) => StoreError::Sled {
                operation: "transaction",
                source,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{item, temp_store, Item};

    #[test]
    fn writes_to_several_trees_commit_together() {
        let (_dir, store) = temp_store();
        store
            .transaction(&[TreeName::Buffer, TreeName::Outbox], |tx| {
                tx.insert(TreeName::Buffer, b"u", &item("user", 1))?;
                tx.insert(TreeName::Outbox, b"e", &item("event", 2))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.get::<Item>(TreeName::Buffer, b"u").unwrap(),
            Some(item("user", 1))
        );
        assert_eq!(
            store.get::<Item>(TreeName::Outbox, b"e").unwrap(),
            Some(item("event", 2))
        );
    }

    #[test]
    fn an_abort_keeps_none_of_the_writes() {
        let (_dir, store) = temp_store();
        let err = store
            .transaction(&[TreeName::Buffer, TreeName::Outbox], |tx| {
                tx.insert(TreeName::Buffer, b"u", &item("user", 1))?;
                tx.insert(TreeName::Outbox, b"e", &item("event", 2))?;
                Err::<(), _>(TxError::abort("snapshot changed underneath"))
            })
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::TransactionAborted { reason } if reason == "snapshot changed underneath")
        );
        assert_eq!(store.get::<Item>(TreeName::Buffer, b"u").unwrap(), None);
        assert_eq!(store.get::<Item>(TreeName::Outbox, b"e").unwrap(), None);
    }

    #[test]
    fn reads_see_earlier_writes_of_the_same_transaction() {
        let (_dir, store) = temp_store();
        store
            .insert(TreeName::Buffer, b"u", &item("user", 1))
            .unwrap();
        let seen = store
            .transaction(&[TreeName::Buffer], |tx| {
                let mut current: Item = tx.get(TreeName::Buffer, b"u")?.expect("present");
                current.count += 1;
                tx.insert(TreeName::Buffer, b"u", &current)?;
                let removed = tx.remove(TreeName::Buffer, b"missing")?;
                Ok((tx.get::<Item>(TreeName::Buffer, b"u")?, removed))
            })
            .unwrap();
        assert_eq!(seen, (Some(item("user", 2)), false));
    }

    #[test]
    fn touching_an_undeclared_tree_aborts_with_a_clear_error() {
        let (_dir, store) = temp_store();
        let err = store
            .transaction(&[TreeName::Buffer], |tx| {
                tx.insert(TreeName::Buffer, b"u", &item("user", 1))?;
                tx.insert(TreeName::Audit, b"a", &item("audit", 1))
            })
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::TreeNotInTransaction {
                tree: TreeName::Audit
            }
        ));
        assert_eq!(store.get::<Item>(TreeName::Buffer, b"u").unwrap(), None);
    }
}
