//! Mapping pulls (B2, upstream side): the upstream's links from device users to people,
//! fetched incrementally with a cursor on a schedule and right after the upstream comes back.
//!
//! The puller does not store mappings itself: the `mappings` tree belongs to the sync engine
//! (`crate::sync::mapping`), which compares each person with the device user and records
//! conflicts. The puller hands each page to a [`MappingSink`] (the engine) and stores the cursor
//! that follows the page only *after* the sink applied it durably, so a crash re-fetches at most
//! the page in progress and never skips one. (This module cannot name the engine: `sync`
//! depends on `upstream`, not the other way round.)

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Notify;

use crate::events::PersonAttributes;
use crate::lifecycle::StopSignal;
use crate::store::{keys, Record, Store, StoreError};

use super::client::{RequestError, UpstreamClient};
use super::persons::PendingPerson;

/// Key of the stored cursor in the `meta` tree.
pub const CURSOR_KEY: &[u8] = b"upstream_mapping_cursor";
/// Mappings asked for per page.
pub const PAGE_SIZE: u32 = 500;

/// One change of the upstream's mapping feed, as handed to the [`MappingSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledMapping {
    /// The device.
    pub device_id: String,
    /// The device's user id.
    pub user_id: String,
    /// The person the device user is linked to, with the attributes to compare.
    pub person: PersonAttributes,
    /// The upstream removed the link (the person is the one it was linked to).
    pub removed: bool,
}

/// Why the owner of the mappings could not apply a page.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// The owner of the `mappings` tree, which applies what the upstream says. Implemented by the
/// sync engine; the puller only fetches and keeps its place in the feed.
pub trait MappingSink: Send + Sync {
    /// Applies one page of changes, in order, and returns once they are durable. An error
    /// stops the pull before its cursor moves, so the page is fetched again next time.
    fn apply(&self, page: Vec<PulledMapping>) -> BoxFuture<'_, Result<(), SinkError>>;

    /// The administrators' mappings still waiting for `GET /persons/{id}` (see
    /// [`super::persons`]).
    fn pending_persons(&self) -> Result<Vec<PendingPerson>, SinkError>;

    /// Records the upstream's answer about a pending mapping durably: `Some` confirms it with
    /// the person's attributes, `None` (404) refuses it with the reason. A mapping that
    /// changed meanwhile (re-mapped, removed) is left alone.
    fn settle_person(
        &self,
        pending: PendingPerson,
        found: Option<PersonAttributes>,
    ) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Notified whenever a mapping is requested, so the confirmer asks at once.
    fn person_requests(&self) -> Arc<Notify>;
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
    /// The store failed (reading or writing the cursor).
    #[error("cannot keep the mapping cursor: {0}")]
    Store(#[from] StoreError),
    /// The owner of the mappings could not apply a page.
    #[error("cannot apply pulled mappings: {0}")]
    Sink(SinkError),
}

/// The cursor the next pull starts from (empty: from the beginning).
pub fn stored_cursor(store: &Store) -> Result<String, StoreError> {
    Ok(store
        .meta::<MappingCursor>(CURSOR_KEY)?
        .map(|stored| stored.cursor)
        .unwrap_or_default())
}

/// Pulls every page after the stored cursor into `sink`; returns how many changes were
/// handed over.
pub async fn pull(
    client: &UpstreamClient,
    store: &Store,
    sink: &dyn MappingSink,
    agent_id: &str,
) -> Result<usize, PullError> {
    let mut cursor = stored_cursor(store)?;
    let mut handed = 0;
    loop {
        let page = client.pull_mappings(agent_id, &cursor, PAGE_SIZE).await?;
        let mut changes = Vec::with_capacity(page.mappings.len());
        for change in page.mappings {
            match keys::device_user(&change.device_id, &change.user_id) {
                Ok(_) => changes.push(PulledMapping {
                    device_id: change.device_id,
                    user_id: change.user_id,
                    person: change.person,
                    removed: change.removed,
                }),
                Err(error) => tracing::warn!("ignoring a mapping the store cannot key: {error}"),
            }
        }
        let count = changes.len();
        if count > 0 {
            sink.apply(changes).await.map_err(PullError::Sink)?;
        }
        let next = MappingCursor {
            cursor: page.next_cursor.clone(),
        };
        store.set_meta(CURSOR_KEY, &next)?;
        store.make_durable().await?;
        handed += count;
        let advanced = page.next_cursor != cursor;
        cursor = page.next_cursor;
        if !page.has_more || !advanced {
            return Ok(handed);
        }
    }
}

/// Pulls at start, every `interval`, and whenever `reconnected` fires, until `stop`.
pub(crate) async fn run_puller(
    client: Arc<UpstreamClient>,
    store: Store,
    sink: Arc<dyn MappingSink>,
    agent_id: String,
    interval: Duration,
    reconnected: Arc<Notify>,
    mut stop: StopSignal,
) {
    loop {
        let pulled = tokio::select! {
            pulled = pull(&client, &store, sink.as_ref(), &agent_id) => pulled,
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
