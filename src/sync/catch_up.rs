//! The picture survives a full outbox: when the outbox refuses a read's events, the read is
//! applied anyway (snapshot, buffer, history, missing detection, audit) and the device is
//! marked "upstream behind since generation G" in the `catch_up` tree. The first later read
//! that finds room queues a **catch-up** instead of its own diff: the whole device as the
//! buffer now holds it, so the upstream converges on the buffer whatever it missed.
//!
//! A catch-up at read generation C is one event per buffered user of the device, keyed at C
//! like any user change of that read: `user_discovered` with the user as now read for every
//! user present on the device, `user_missing` for every user the buffer holds as missing.
//! The upstream treats both as "this is the user's state now" (see `docs/upstream.md`).
//! A catch-up is queued once the outbox is below half its cap, whatever its own size (it may
//! be larger than the cap: see `crate::upstream::Outbox::prepare_catch_up`); until then the
//! device stays behind (since the first G) and each read tries again.
//!
//! Punches are not caught up: they are refused while the outbox is full and the terminal
//! keeps them (see `crate::device::punches`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::apply::MissingUser;
use super::buffer::{BufferRecord, MappingStatus};
use super::guard;
use super::{Engine, SyncError};
use crate::audit::{AuditEntry, Operation};
use crate::device::UserRead;
use crate::events::{Event, EventBody, EventKey};
use crate::store::{keys, Prepared, Record, Store, StoreError, TreeName, Tx, TxError};
use crate::upstream::outbox::OutboxError;

/// A device whose upstream is behind its buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamBehind {
    /// The first read generation whose events the outbox refused.
    pub since_generation: u64,
    /// When that read was applied (UTC ms).
    pub since_ms: i64,
    /// Events refused since then (reads' diffs and catch-ups that did not fit).
    pub refused_events: u64,
}

impl Record for UpstreamBehind {
    const KIND: &'static str = "upstream_behind";
    const VERSION: u32 = 1;
}

/// What one read hands the outbox, and what becomes of the device's mark.
pub(super) struct Outgoing {
    /// The prepared events (empty when the outbox refused them).
    pub events: Prepared<Event>,
    /// The device's mark after this read: `None` when the upstream is level (or caught up).
    pub behind: Option<UpstreamBehind>,
}

/// One read on its way to the outbox, as the apply step planned it.
pub(super) struct ReadOutcome<'a> {
    /// The device.
    pub device_id: &'a str,
    /// The store epoch (part of every key).
    pub epoch: &'a str,
    /// This read's generation.
    pub generation: u64,
    /// When it is applied (UTC ms).
    pub now_ms: i64,
    /// The fencing token of the read's lock.
    pub fencing_token: u64,
    /// The complete read.
    pub read: &'a UserRead,
    /// Users this read found missing (not yet marked missing in the buffer).
    pub newly_missing: &'a [MissingUser],
    /// `user_missing` events this read holds back (a mass disappearance, see `guard`).
    pub held_now: &'a [Event],
}

/// Whether the upstream is behind `device_id`'s buffer, and since when.
pub fn load(store: &Store, device_id: &str) -> Result<Option<UpstreamBehind>, StoreError> {
    store.get(TreeName::CatchUp, device_id.as_bytes())
}

/// Writes (or clears, with `None`) the device's mark inside the apply transaction: this module
/// is the `catch_up` tree's only writer.
pub(super) fn put_in(
    tx: &Tx<'_>,
    device_id: &str,
    behind: Option<&UpstreamBehind>,
) -> Result<(), TxError> {
    match behind {
        Some(behind) => tx.insert(TreeName::CatchUp, device_id.as_bytes(), behind),
        None => tx
            .remove(TreeName::CatchUp, device_id.as_bytes())
            .map(|_| ()),
    }
}

impl Engine {
    /// Prepares this read's events, or a catch-up when the device is behind, or nothing when
    /// the outbox is full (then the device is, or stays, behind). Adds an audit entry when
    /// the device falls behind or catches up. Any error other than a full outbox is returned.
    pub(super) fn outgoing(
        &self,
        outcome: &ReadOutcome<'_>,
        diff_events: Vec<Event>,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<Outgoing, SyncError> {
        let behind = load(self.store(), outcome.device_id)?;
        let events = match &behind {
            Some(_) => self.catch_up_events(outcome)?,
            None => diff_events,
        };
        let count = events.len() as u64;
        let entry = |detail: String| AuditEntry {
            at_unix_ms: outcome.now_ms,
            operation: Operation::UpstreamCatchUp,
            device_id: Some(outcome.device_id.to_string()),
            device_user_id: None,
            actor: "agent".to_string(),
            detail,
        };
        let prepared = match &behind {
            Some(_) => self.outbox().prepare_catch_up(events),
            None => self.outbox().prepare_all(events),
        };
        match prepared {
            Ok(events) => {
                if let Some(behind) = &behind {
                    audit.push(entry(format!(
                        "catch-up queued at read #{}: {count} event(s) carrying the whole \
                         device, as the upstream was behind since read #{}",
                        outcome.generation, behind.since_generation
                    )));
                    tracing::info!(
                        device = outcome.device_id,
                        generation = outcome.generation,
                        events = count,
                        behind_since = behind.since_generation,
                        "the outbox has room again: catch-up queued so the upstream converges \
                         on the buffer"
                    );
                }
                Ok(Outgoing {
                    events,
                    behind: None,
                })
            }
            Err(OutboxError::Full { .. }) => {
                let behind = match behind {
                    Some(mut behind) => {
                        behind.refused_events += count;
                        behind
                    }
                    None => {
                        audit.push(entry(format!(
                            "the outbox is full: read #{} is applied locally but its {count} \
                             event(s) were not queued; the upstream is behind since this read \
                             and a catch-up follows when there is room",
                            outcome.generation
                        )));
                        tracing::warn!(
                            device = outcome.device_id,
                            generation = outcome.generation,
                            events = count,
                            "the outbox is full: the read is applied locally (snapshot, buffer, \
                             history, missing users) and the upstream is marked behind; a \
                             catch-up is queued once there is room"
                        );
                        UpstreamBehind {
                            since_generation: outcome.generation,
                            since_ms: outcome.now_ms,
                            refused_events: count,
                        }
                    }
                };
                Ok(Outgoing {
                    events: Prepared::empty(),
                    behind: Some(behind),
                })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The whole device as the buffer holds it after this read, one event per user.
    fn catch_up_events(&self, outcome: &ReadOutcome<'_>) -> Result<Vec<Event>, SyncError> {
        let key = |kind: &str, user: &str| {
            EventKey::user_change(
                kind,
                self.agent_id(),
                outcome.device_id,
                user,
                outcome.epoch,
                outcome.generation,
            )
        };
        let event = |key: String, body: EventBody| {
            self.event(
                outcome.device_id,
                outcome.now_ms,
                outcome.fencing_token,
                key,
                body,
            )
        };
        // A user whose disappearance waits for an administrator (`guard`) is not announced
        // missing by a catch-up either: the hold covers every way the news could leave.
        let mut held: HashSet<String> = guard::held(self.store(), Some(outcome.device_id))?
            .into_iter()
            .filter_map(|(_, held)| missing_user_id(&held.event))
            .collect();
        held.extend(outcome.held_now.iter().filter_map(missing_user_id));
        let mut events = Vec::new();
        for (id, user) in &outcome.read.users {
            events.push(event(
                key("user_discovered", id),
                EventBody::UserDiscovered(user.user.clone()),
            ));
        }
        for gone in outcome.newly_missing {
            if held.contains(&gone.user_id) {
                continue;
            }
            let user = self
                .store()
                .get::<BufferRecord>(TreeName::Buffer, self.user_key(outcome, &gone.user_id)?)?
                .map(|record| record.user)
                .unwrap_or_default();
            events.push(event(
                key("user_missing", &gone.user_id),
                EventBody::UserMissing {
                    user,
                    last_seen_at_ms: gone.last_seen_at_ms,
                },
            ));
        }
        let prefix = keys::device_prefix(outcome.device_id).map_err(StoreError::from)?;
        for entry in self
            .store()
            .scan_prefix::<BufferRecord>(TreeName::Buffer, prefix)
        {
            let (_, record) = entry?;
            if record.status != MappingStatus::Missing
                || outcome.read.users.contains_key(&record.user.user_id)
                || held.contains(&record.user.user_id)
            {
                continue;
            }
            let last_seen_at_ms = record.last_seen_at_ms;
            events.push(event(
                key("user_missing", &record.user.user_id),
                EventBody::UserMissing {
                    user: record.user,
                    last_seen_at_ms,
                },
            ));
        }
        Ok(events)
    }

    fn user_key(&self, outcome: &ReadOutcome<'_>, user_id: &str) -> Result<Vec<u8>, SyncError> {
        Ok(keys::device_user(outcome.device_id, user_id).map_err(StoreError::from)?)
    }
}

/// The device user a `user_missing` event is about (`None` for any other event).
fn missing_user_id(event: &Event) -> Option<String> {
    match &event.body {
        EventBody::UserMissing { user, .. } => Some(user.user_id.clone()),
        _ => None,
    }
}
