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
        outcome.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(source) => StoreError::Sled {
                operation: "transaction",
                source,
            },
        })
    }
}
