//! Sequence keys taken before a transaction.
//!
//! Time-ordered trees (audit, outbox…) key on [`Store::next_sequence`], but sled may block if
//! a sequence number is taken inside a transaction closure (sled issue #1139). So a writer
//! takes the keys first, as a [`Prepared`], writes the prepared values inside its transaction
//! next to the change they describe, and reports the commit to the owner afterwards.

use super::error::StoreError;
use super::Store;

/// Values with the sequence numbers they will be stored under, taken before the transaction
/// that writes them.
#[must_use = "write the prepared values inside a transaction, then report the commit"]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared<T> {
    /// (sequence number, value), in order.
    pub items: Vec<(u64, T)>,
    /// Encoded size of the values with their keys, for an owner that keeps a byte count (the
    /// outbox's cap); 0 when the owner does not count.
    pub bytes: u64,
}

impl<T> Prepared<T> {
    /// Nothing to write.
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
        }
    }

    /// Takes one sequence number per value from `store`, in order.
    pub fn number(store: &Store, values: Vec<T>) -> Result<Self, StoreError> {
        let items = values
            .into_iter()
            .map(|value| Ok((store.next_sequence()?, value)))
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { items, bytes: 0 })
    }

    /// The values without their keys.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, value)| value)
    }

    /// How many values are prepared.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is prepared.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn numbers_increase_in_the_order_of_the_values() {
        let (_dir, store) = temp_store();
        let prepared = Prepared::number(&store, vec!["a", "b", "c"]).unwrap();
        assert_eq!(
            prepared.values().copied().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(prepared.items.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!((prepared.len(), prepared.bytes), (3, 0));
        assert!(Prepared::<u8>::empty().is_empty());
    }
}
