//! Mapping pulls (B2, upstream side): the upstream's links from device users to people,
//! fetched incrementally with a cursor on a schedule and right after the upstream comes back.
//!
//! Each page is stored together with the cursor that follows it in one transaction, then made
//! durable, so a crash re-fetches at most the page in progress and never skips one. Mappings
//! land in the `mappings` tree as [`UpstreamMapping`] records, where the sync engine reads
//! them for conflict checks.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Notify;

use crate::events::PersonAttributes;
use crate::lifecycle::StopSignal;
use crate::store::{keys, Record, Store, StoreError, TreeName};

use super::client::{RequestError, UpstreamClient};

/// Key of the stored cursor in the `meta` tree.
pub const CURSOR_KEY: &[u8] = b"upstream_mapping_cursor";
/// Mappings asked for per page.
pub const PAGE_SIZE: u32 = 500;

/// A device user's link to an upstream person, as last pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamMapping {
    /// The person and the attributes to compare with the device user.
    pub person: PersonAttributes,
    /// When it was pulled (UTC ms).
    pub pulled_at_ms: i64,
}

impl Record for UpstreamMapping {
    const KIND: &'static str = "upstream_mapping";
    const VERSION: u32 = 1;
}

/// The position in the upstream's change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MappingCursor {
    cursor: String,
}

impl Record for MappingCursor {
    const KIND: &'static str = "mapping_cursor";
    const VERSION: u32 = 1;
}

/// Why a pull stopped early (what was stored before stays stored).
#[derive(Debug, Error)]
pub enum PullError {
    /// The request failed.
    #[error("mapping pull failed: {0}")]
    Request(#[from] RequestError),
    /// The store failed.
    #[error("cannot store pulled mappings: {0}")]
    Store(#[from] StoreError),
}

/// The cursor the next pull starts from (empty: from the beginning).
pub fn stored_cursor(store: &Store) -> Result<String, StoreError> {
    Ok(store
        .get::<MappingCursor>(TreeName::Meta, CURSOR_KEY)?
        .map(|stored| stored.cursor)
        .unwrap_or_default())
}

/// The stored mapping of one device user, if any.
pub fn mapping(
    store: &Store,
    device_id: &str,
    user_id: &str,
) -> Result<Option<UpstreamMapping>, StoreError> {
    let key = keys::device_user(device_id, user_id).map_err(StoreError::from)?;
    store.get(TreeName::Mappings, key)
}

/// Pulls every page after the stored cursor; returns how many changes were stored.
pub async fn pull(
    client: &UpstreamClient,
    store: &Store,
    agent_id: &str,
) -> Result<usize, PullError> {
    let mut cursor = stored_cursor(store)?;
    let mut stored = 0;
    loop {
        let page = client.pull_mappings(agent_id, &cursor, PAGE_SIZE).await?;
        let pulled_at_ms = chrono::Utc::now().timestamp_millis();
        let mut changes = Vec::with_capacity(page.mappings.len());
        for change in &page.mappings {
            match keys::device_user(&change.device_id, &change.user_id) {
                Ok(key) => changes.push((key, change)),
                Err(error) => tracing::warn!("ignoring a mapping the store cannot key: {error}"),
            }
        }
        let next = MappingCursor {
            cursor: page.next_cursor.clone(),
        };
        store.transaction(&[TreeName::Mappings, TreeName::Meta], |tx| {
            for (key, change) in &changes {
                if change.removed {
                    tx.remove(TreeName::Mappings, key)?;
                } else {
                    let mapping = UpstreamMapping {
                        person: change.person.clone(),
                        pulled_at_ms,
                    };
                    tx.insert(TreeName::Mappings, key, &mapping)?;
                }
            }
            tx.insert(TreeName::Meta, CURSOR_KEY, &next)
        })?;
        store.make_durable().await?;
        stored += changes.len();
        let advanced = page.next_cursor != cursor;
        cursor = page.next_cursor;
        if !page.has_more || !advanced {
            return Ok(stored);
        }
    }
}

/// Pulls at start, every `interval`, and whenever `reconnected` fires, until `stop`.
pub(crate) async fn run_puller(
    client: Arc<UpstreamClient>,
    store: Store,
    agent_id: String,
    interval: Duration,
    reconnected: Arc<Notify>,
    mut stop: StopSignal,
) {
    loop {
        let pulled = tokio::select! {
            pulled = pull(&client, &store, &agent_id) => pulled,
            _ = stop.stopped() => return,
        };
        match pulled {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "pulled mapping changes from the upstream"),
            Err(error) => tracing::warn!("{error}; next try in {interval:?} or on reconnect"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = reconnected.notified() => {}
            _ = stop.stopped() => return,
        }
    }
}
