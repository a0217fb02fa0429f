//! The mass-disappearance guard: a complete read that loses many users at once (a factory
//! reset, a replaced unit, someone dialling in with the terminal's `sn`) is recorded like any
//! other (the buffer shows the users `missing`, history and audit say so), but its
//! `user_missing` events are not forwarded. They are held in the `held_events` tree and a
//! critical alarm is raised until an administrator confirms the loss with a signed
//! `missing confirm` command (then they go to the outbox) or the users come back (then their
//! held events are dropped: the upstream never heard they were gone).
//!
//! A read is "mass" when it loses more than `share` of the previous complete read's users and
//! at least `min_users` of them, or when it drops to 0 users.
//!
//! This module is the only writer of the `held_events` tree (key `device_id \0 user_id`).

use super::{Engine, SyncError};
use crate::audit::{self, AuditEntry, Operation};
use crate::events::{Event, EventBody};
use crate::store::{keys, Alarm, AlarmKind, Record, Store, StoreError, TreeName, Tx, TxError};
use crate::upstream::outbox;
use serde::{Deserialize, Serialize};

/// When a read counts as a mass disappearance (`[monitor]` `mass_missing_share`,
/// `mass_missing_min`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassGuard {
    /// The share of the previous read's users that may go missing at once (0.2 = 20 %).
    pub share: f64,
    /// Fewer missing users than this are never a mass disappearance (unless none are left).
    pub min_users: u64,
}

impl Default for MassGuard {
    fn default() -> Self {
        Self {
            share: 0.2,
            min_users: 5,
        }
    }
}

impl MassGuard {
    /// Whether losing `missing` of `previous` users, `now` left, must be held for a human.
    pub fn is_mass(&self, previous: u64, missing: u64, now: u64) -> bool {
        if missing == 0 {
            return false;
        }
        if now == 0 {
            return true;
        }
        missing >= self.min_users && missing as f64 > self.share * previous as f64
    }
}

/// A `user_missing` event held back by the guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldEvent {
    /// The event as it will be forwarded once confirmed.
    pub event: Event,
    /// When it was held (UTC ms).
    pub held_at_ms: i64,
}

impl Record for HeldEvent {
    const KIND: &'static str = "held_event";
    const VERSION: u32 = 1;
}

/// What the guard decided for one read.
pub(crate) struct Guarded {
    /// Events to forward now.
    pub forward: Vec<Event>,
    /// `user_missing` events to hold.
    pub held: Vec<Event>,
}

impl Engine {
    /// Splits a read's events: when the read is a mass disappearance its `user_missing` events
    /// are held (and an audit entry says so); otherwise everything is forwarded.
    pub(crate) fn guard_missing(
        &self,
        device_id: &str,
        previous_users: u64,
        now_users: u64,
        events: Vec<Event>,
        audit: &mut Vec<AuditEntry>,
        now_ms: i64,
    ) -> Guarded {
        let missing = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::UserMissing { .. }))
            .count() as u64;
        if !self
            .mass_guard()
            .is_mass(previous_users, missing, now_users)
        {
            return Guarded {
                forward: events,
                held: Vec::new(),
            };
        }
        let (held, forward) = events
            .into_iter()
            .partition(|e| matches!(e.body, EventBody::UserMissing { .. }));
        audit.push(AuditEntry {
            at_unix_ms: now_ms,
            operation: Operation::Missing,
            device_id: Some(device_id.to_string()),
            device_user_id: None,
            actor: "agent".to_string(),
            detail: format!(
                "mass disappearance: {missing} of {previous_users} users missing at once \
                 ({now_users} left); their user_missing events are HELD until an administrator \
                 confirms with `missing confirm device={device_id}` or the users come back"
            ),
        });
        Guarded { forward, held }
    }

    /// Raises the critical alarm for `held` events of `device_id` (after the read is durable).
    pub(crate) async fn alarm_mass_missing(
        &self,
        device_id: &str,
        held: usize,
        previous_users: u64,
    ) -> Result<(), SyncError> {
        tracing::error!(
            device = device_id,
            missing = held,
            previous = previous_users,
            "CRITICAL: {held} of {previous_users} users vanished at once; user_missing events \
             are held until an administrator confirms (missing confirm device={device_id}) or \
             the users come back"
        );
        self.store().raise_alarm(&Alarm {
            raised_at_unix_ms: self.now_ms(),
            kind: AlarmKind::MassDisappearance {
                device_id: device_id.to_string(),
                missing: held as u64,
                previous: previous_users,
            },
            message: format!(
                "{held} of {previous_users} users of {device_id} vanished at once (factory reset, \
                 replaced unit, or an impostor with its sn?); their user_missing events are held. \
                 Check the terminal, then confirm with `missing confirm device={device_id}`"
            ),
        })?;
        self.store().make_durable().await?;
        Ok(())
    }

    /// An administrator confirms the held disappearance of `device_id`'s users: their
    /// `user_missing` events go to the outbox, audited with the admin. Returns how many.
    pub async fn confirm_missing(&self, device_id: &str, admin: &str) -> Result<usize, SyncError> {
        let held = held(self.store(), Some(device_id))?;
        if held.is_empty() {
            return Err(SyncError::Refused(format!(
                "no user_missing events of {device_id} are held"
            )));
        }
        let events = self
            .outbox()
            .prepare_all(held.iter().map(|(_, h)| h.event.clone()).collect())?;
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: self.now_ms(),
            operation: Operation::Missing,
            device_id: Some(device_id.to_string()),
            device_user_id: None,
            actor: admin.to_string(),
            detail: format!(
                "mass disappearance confirmed: {} held user_missing events forwarded",
                held.len()
            ),
        }])?;
        self.store()
            .transaction(&self.trees(&[TreeName::HeldEvents]), |tx| {
                for (key, _) in &held {
                    tx.remove(TreeName::HeldEvents, key)?;
                }
                outbox::enqueue_in(tx, &events)?;
                audit::append_in(tx, &audit)
            })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        Ok(held.len())
    }
}

/// Holds `events` of `device_id` inside the apply transaction.
pub(crate) fn hold_in(
    tx: &Tx<'_>,
    device_id: &str,
    events: &[Event],
    now_ms: i64,
) -> Result<(), TxError> {
    for event in events {
        let EventBody::UserMissing { user, .. } = &event.body else {
            continue;
        };
        let key = keys::device_user(device_id, &user.user_id)
            .map_err(|err| TxError::abort(err.to_string()))?;
        let held = HeldEvent {
            event: event.clone(),
            held_at_ms: now_ms,
        };
        tx.insert(TreeName::HeldEvents, key, &held)?;
    }
    Ok(())
}

/// Drops the held events of users that are back on `device_id`, inside the apply transaction.
pub(crate) fn release_returned_in<'a>(
    tx: &Tx<'_>,
    device_id: &str,
    back: impl Iterator<Item = &'a str>,
) -> Result<(), TxError> {
    for user_id in back {
        let key =
            keys::device_user(device_id, user_id).map_err(|err| TxError::abort(err.to_string()))?;
        tx.remove(TreeName::HeldEvents, key)?;
    }
    Ok(())
}

/// The held events (of one device, or all), with their keys.
pub fn held(
    store: &Store,
    device_id: Option<&str>,
) -> Result<Vec<(Vec<u8>, HeldEvent)>, StoreError> {
    let prefix = device_id
        .map(keys::device_prefix)
        .transpose()?
        .unwrap_or_default();
    store
        .scan_prefix::<HeldEvent>(TreeName::HeldEvents, prefix)
        .collect()
}
