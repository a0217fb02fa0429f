//! The store epoch: a random id minted when a store is created, and again when a damaged
//! store is salvaged (moved aside and replaced by an empty one).
//!
//! Read generations restart at 1 in a new store, so event keys built from a generation alone
//! would repeat after a salvage and the upstream would answer `duplicate` for new facts. Keys
//! of user changes therefore carry the epoch too (see `crate::events::EventKey`). A salvage
//! also loses the replay guard's nonces, so signed commands issued before the salvage are
//! refused ([`StoreEpoch::refuses_signed_at`]).
//!
//! Kept in the meta tree under `store_epoch`, written in the same open that writes the schema
//! version, and made durable before the store is handed out.

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::trees::TreeName;
use super::{Record, Store};

/// The meta key holding the epoch.
const EPOCH_KEY: &[u8] = b"store_epoch";

/// Why the current epoch was minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochCause {
    /// The store was created empty.
    Created,
    /// A damaged store was moved aside and this empty one replaced it.
    Salvaged,
    /// The store predates epochs; minted at the first open by a build that has them.
    Upgraded,
}

/// The store's current epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEpoch {
    /// 16 lowercase hex digits, random.
    pub id: String,
    /// When it was minted (UTC ms).
    pub minted_at_ms: i64,
    /// Why.
    pub cause: EpochCause,
}

impl Record for StoreEpoch {
    const KIND: &'static str = "store_epoch";
    const VERSION: u32 = 1;
}

impl StoreEpoch {
    /// Whether a signed command issued at `issued_at_unix_s` must be refused because the store
    /// that would have remembered its nonce was lost after it was signed: true only for an
    /// epoch minted by a salvage, for commands signed in a whole second before it (the
    /// signature's time has second resolution, and a command signed in the salvage's own
    /// second cannot have reached the agent that ran before it).
    pub fn refuses_signed_at(&self, issued_at_unix_s: i64) -> bool {
        self.cause == EpochCause::Salvaged && issued_at_unix_s < self.minted_at_ms.div_euclid(1000)
    }
}

impl Store {
    /// The store's current epoch.
    pub fn epoch(&self) -> Result<StoreEpoch, StoreError> {
        self.get::<StoreEpoch>(TreeName::Meta, EPOCH_KEY)?
            .ok_or_else(|| StoreError::MissingEpoch {
                path: self.path().to_path_buf(),
            })
    }
}

/// Mints a new epoch for `cause` and writes it (not yet durable; the open makes it so).
pub(crate) fn mint(store: &Store, cause: EpochCause) -> Result<StoreEpoch, StoreError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| StoreError::Random(error.to_string()))?;
    let epoch = StoreEpoch {
        id: bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        minted_at_ms: chrono::Utc::now().timestamp_millis(),
        cause,
    };
    store.insert(TreeName::Meta, EPOCH_KEY, &epoch)?;
    tracing::info!(epoch = %epoch.id, ?cause, "minted a new store epoch");
    Ok(epoch)
}

/// Mints an epoch for a store that has none (one created before epochs existed).
pub(crate) fn ensure(store: &Store) -> Result<(), StoreError> {
    if store
        .get::<StoreEpoch>(TreeName::Meta, EPOCH_KEY)?
        .is_none()
    {
        mint(store, EpochCause::Upgraded)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn a_new_store_has_an_epoch_that_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::at(dir.path().join("s"));
        let first = Store::open(&options).unwrap().store.epoch().unwrap();
        assert_eq!(first.cause, EpochCause::Created);
        assert_eq!(first.id.len(), 16);
        let again = crate::store::test_support::reopen(&options)
            .epoch()
            .unwrap();
        assert_eq!(again, first);
        let other = Store::open(&StoreOptions::at(dir.path().join("t")))
            .unwrap()
            .store
            .epoch()
            .unwrap();
        assert_ne!(other.id, first.id);
    }

    #[test]
    fn only_a_salvage_refuses_commands_signed_before_it() {
        let epoch = |cause| StoreEpoch {
            id: "00".into(),
            minted_at_ms: 10_500,
            cause,
        };
        assert!(epoch(EpochCause::Salvaged).refuses_signed_at(9));
        assert!(!epoch(EpochCause::Salvaged).refuses_signed_at(10));
        assert!(!epoch(EpochCause::Salvaged).refuses_signed_at(11));
        assert!(!epoch(EpochCause::Created).refuses_signed_at(9));
        assert!(!epoch(EpochCause::Upgraded).refuses_signed_at(9));
    }
}
