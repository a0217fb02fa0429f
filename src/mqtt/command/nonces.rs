//! The replay guard: every accepted signed command's nonce is kept in the store's `nonces`
//! tree until its validity window (plus the clock-skew tolerance) is over, after which the
//! expiry check alone refuses the command. The nonce and the command's audit entry are written
//! in one transaction and made durable *before* the command runs, so a crash can never let a
//! command run twice or run unaudited.
//!
//! A salvaged store has lost its nonces, so a command signed before the salvage (still inside
//! its validity window) could run a second time: such commands are refused, judged by the
//! store epoch's mint time (see [`crate::store::StoreEpoch::refuses_signed_at`]).

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::store::{Record, Store, StoreError, TreeName, TxError};

/// What is kept per nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRecord {
    /// After this Unix time (seconds) the record may be swept.
    pub keep_until_unix_s: i64,
    /// The admin key that used it (for diagnosis).
    pub key: String,
}

impl Record for NonceRecord {
    const KIND: &'static str = "command_nonce";
    const VERSION: u32 = 1;
}

/// Why a nonce could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// It was used before.
    #[error("nonce already used")]
    Replayed,
    /// It was signed before the store was salvaged, which lost the nonces that would tell.
    #[error("signed before the store was salvaged at {salvaged_at_ms} (UTC ms)")]
    SignedBeforeSalvage {
        /// When the salvage minted the current store epoch (UTC ms).
        salvaged_at_ms: i64,
    },
    /// The store failed; the command must not run.
    #[error("cannot record the command's nonce: {0}")]
    Store(#[from] StoreError),
}

/// Records `nonce` and the command's audit entry atomically and durably; refuses a nonce seen
/// before, and any command signed (at `issued_at_unix_s`) before a salvage of the store.
pub async fn claim(
    store: &Store,
    nonce: &str,
    issued_at_unix_s: i64,
    record: &NonceRecord,
    entry: &AuditEntry,
) -> Result<(), ClaimError> {
    const REPLAYED: &str = "nonce already used";
    let epoch = store.epoch()?;
    if epoch.refuses_signed_at(issued_at_unix_s) {
        return Err(ClaimError::SignedBeforeSalvage {
            salvaged_at_ms: epoch.minted_at_ms,
        });
    }
    let sequence = store.next_sequence()?;
    let outcome = store.transaction(&[TreeName::Nonces, TreeName::Audit], |tx| {
        if tx.get::<NonceRecord>(TreeName::Nonces, nonce)?.is_some() {
            return Err(TxError::abort(REPLAYED));
        }
        tx.insert(TreeName::Nonces, nonce, record)?;
        audit::insert_in(tx, sequence, entry)
    });
    match outcome {
        Ok(()) => {}
        Err(StoreError::TransactionAborted { reason }) if reason == REPLAYED => {
            return Err(ClaimError::Replayed)
        }
        Err(err) => return Err(err.into()),
    }
    store.make_durable().await?;
    Ok(())
}

/// Removes nonces whose keep-until time is before `now_unix_s`; returns how many.
pub fn sweep(store: &Store, now_unix_s: i64) -> Result<usize, StoreError> {
    let mut expired = Vec::new();
    for item in store.scan_prefix::<NonceRecord>(TreeName::Nonces, []) {
        let (key, record) = item?;
        if record.keep_until_unix_s < now_unix_s {
            expired.push(key);
        }
    }
    for key in &expired {
        store.remove::<NonceRecord>(TreeName::Nonces, key)?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audit, AuditQuery, Operation};
    use crate::store::{envelope, StoreOptions};

    fn entry() -> AuditEntry {
        AuditEntry {
            at_unix_ms: 1,
            operation: Operation::AdminCommand,
            device_id: None,
            device_user_id: None,
            actor: "ops".into(),
            detail: "log-level".into(),
        }
    }

    #[tokio::test]
    async fn a_nonce_is_claimed_once_with_exactly_one_audit_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("s")))
            .unwrap()
            .store;
        let record = NonceRecord {
            keep_until_unix_s: 100,
            key: "ops".into(),
        };
        claim(&store, "n-000001", 0, &record, &entry())
            .await
            .unwrap();
        let again = claim(&store, "n-000001", 0, &record, &entry()).await;
        assert!(matches!(again, Err(ClaimError::Replayed)), "{again:?}");
        let audit = Audit::new(store.clone())
            .query(&AuditQuery::default())
            .unwrap();
        assert_eq!(audit.entries.len(), 1);

        assert_eq!(sweep(&store, 100).unwrap(), 0);
        assert_eq!(sweep(&store, 101).unwrap(), 1);
        claim(&store, "n-000001", 0, &record, &entry())
            .await
            .unwrap();
    }

    #[test]
    fn golden_bytes_of_nonce_record_version_1() {
        let record = NonceRecord {
            keep_until_unix_s: 1,
            key: "k".into(),
        };
        // version 1 | body: what stores written before the kind was stored hold.
        let untagged = [1, 2, 1, b'k'];
        assert_eq!(envelope::decode::<NonceRecord>(&untagged).unwrap(), record);
        // tag 0 | kind "command_nonce" length-prefixed | the same version and body
        let mut golden = vec![0, 13];
        golden.extend_from_slice(b"command_nonce");
        golden.extend_from_slice(&untagged);
        assert_eq!(envelope::encode(&record).unwrap(), golden);
    }
}
