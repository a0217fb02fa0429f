//! The ownership ledger (`esl_owned`): every AIMS article the agent created or adopted, written
//! and made durable *before* the write that creates or adopts it is sent, so a crash can never
//! leave an article the agent wrote without a record of it.
//!
//! The ledger is the only authority on ownership (a marker in `data` could be copied by
//! anyone). [`OwnedArticleId`] can only be obtained here, and the AIMS client only writes
//! [`OwnedArticleId`]s, so an article missing from the ledger cannot be written at all.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::article::{Data, DesiredArticle, RemoteArticle};
use crate::store::{Record, Store, StoreError, TreeName};

/// Mismatches of one key found by verification before the agent stops writing it.
pub const FIGHTS_BEFORE_CONTESTED: u32 = 3;

/// An article id the ledger holds. Only this module makes one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnedArticleId(String);

impl OwnedArticleId {
    /// The id as AIMS spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the agent came to own an article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// The agent created it: released by blanking the keys it owns (never deleted).
    Created,
    /// It existed before; the agent writes its keys and, on release, restores these values.
    Adopted {
        /// The owned keys' values before the agent first wrote them.
        previous: Data,
    },
}

/// Where the last write of an article stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteState {
    /// Recorded; the write may or may not have been sent.
    Pending,
    /// Read back matching.
    Confirmed,
    /// Not seen matching within `esl.confirm_timeout`; verification retries it.
    Unconfirmed,
}

/// One owned article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Created or adopted.
    pub origin: Origin,
    /// The data keys the agent writes.
    pub owned_keys: BTreeSet<String>,
    /// The entity it last showed (empty when released).
    pub entity: String,
    /// Hash of the last article written.
    pub last_pushed_hash: String,
    /// Where that write stands.
    pub state: WriteState,
    /// When first recorded (UTC ms).
    pub first_pushed_at_ms: i64,
    /// When last confirmed (UTC ms).
    pub last_confirmed_at_ms: Option<i64>,
    /// Per owned key, how often verification found another writer's value there.
    pub fights: BTreeMap<String, u32>,
    /// Keys another writer owns: the agent stopped writing them (alarmed once).
    pub contested: BTreeSet<String>,
}

impl Record for LedgerEntry {
    const KIND: &'static str = "esl_owned";
    const VERSION: u32 = 1;
}

/// The entry of `article_id` with its owned id, if the agent owns it.
pub fn owned(
    store: &Store,
    article_id: &str,
) -> Result<Option<(OwnedArticleId, LedgerEntry)>, StoreError> {
    Ok(store
        .get::<LedgerEntry>(TreeName::EslOwned, article_id)?
        .map(|entry| (OwnedArticleId(article_id.to_string()), entry)))
}

/// How many articles the agent owns (no record decoded: status asks every few seconds).
pub fn count(store: &Store) -> usize {
    store.tree(TreeName::EslOwned).len()
}

/// Every owned article, by id.
pub fn all(store: &Store) -> Result<BTreeMap<String, LedgerEntry>, StoreError> {
    store
        .scan_prefix::<LedgerEntry>(TreeName::EslOwned, b"")
        .map(|item| item.map(|(key, entry)| (String::from_utf8_lossy(&key).into_owned(), entry)))
        .collect()
}

/// Records that the agent is about to write `desired` over `remote` (absent: it creates the
/// article; present and unknown: it adopts it, keeping the previous values of its keys).
/// Not durable yet: the caller makes the store durable before sending.
pub fn record_before_write(
    store: &Store,
    remote: Option<&RemoteArticle>,
    desired: &DesiredArticle,
    hash: &str,
) -> Result<OwnedArticleId, StoreError> {
    let id = desired.article_id.as_str();
    let now = chrono::Utc::now().timestamp_millis();
    let entry = match store.get::<LedgerEntry>(TreeName::EslOwned, id)? {
        Some(mut entry) => {
            if let (Origin::Adopted { previous }, Some(remote)) = (&mut entry.origin, remote) {
                for key in desired.data.keys() {
                    if !entry.owned_keys.contains(key) {
                        previous.insert(
                            key.clone(),
                            remote.data.get(key).cloned().unwrap_or_default(),
                        );
                    }
                }
            }
            entry.owned_keys.extend(desired.data.keys().cloned());
            entry.entity = desired.entity.clone();
            entry.last_pushed_hash = hash.to_string();
            entry.state = WriteState::Pending;
            entry
        }
        None => LedgerEntry {
            origin: match remote {
                None => Origin::Created,
                Some(remote) => Origin::Adopted {
                    previous: desired
                        .data
                        .keys()
                        .map(|key| {
                            (
                                key.clone(),
                                remote.data.get(key).cloned().unwrap_or_default(),
                            )
                        })
                        .collect(),
                },
            },
            owned_keys: desired.data.keys().cloned().collect(),
            entity: desired.entity.clone(),
            last_pushed_hash: hash.to_string(),
            state: WriteState::Pending,
            first_pushed_at_ms: now,
            last_confirmed_at_ms: None,
            fights: BTreeMap::new(),
            contested: BTreeSet::new(),
        },
    };
    store.insert(TreeName::EslOwned, id, &entry)?;
    Ok(OwnedArticleId(id.to_string()))
}

/// Marks the write of `id` read back matching (`true`) or given up on (`false`).
pub fn settle(store: &Store, id: &str, confirmed: bool) -> Result<(), StoreError> {
    if let Some(mut entry) = store.get::<LedgerEntry>(TreeName::EslOwned, id)? {
        if confirmed {
            entry.state = WriteState::Confirmed;
            entry.last_confirmed_at_ms = Some(chrono::Utc::now().timestamp_millis());
        } else {
            entry.state = WriteState::Unconfirmed;
        }
        store.insert(TreeName::EslOwned, id, &entry)?;
    }
    Ok(())
}

/// Counts one more fight over `keys` of `id`; returns the keys that just became contested
/// (the agent stops writing them).
pub fn record_fights(store: &Store, id: &str, keys: &[String]) -> Result<Vec<String>, StoreError> {
    let Some(mut entry) = store.get::<LedgerEntry>(TreeName::EslOwned, id)? else {
        return Ok(Vec::new());
    };
    let mut newly = Vec::new();
    for key in keys {
        let count = entry.fights.entry(key.clone()).or_default();
        *count += 1;
        if *count >= FIGHTS_BEFORE_CONTESTED && entry.contested.insert(key.clone()) {
            newly.push(key.clone());
        }
    }
    store.insert(TreeName::EslOwned, id, &entry)?;
    Ok(newly)
}
