//! The tasks that turn what the services see into MQTT alerts, so none of those services needs
//! to know about MQTT:
//!
//! - [`AlarmAlerts`] makes every local alarm (the `alarms` tree: outbox refusing, upstream
//!   unauthorised, store salvaged, mass disappearance held, device unread, reads incomplete,
//!   dead letters, a restarted device loop, lock lost) an alert. It keeps a cursor in the store,
//!   so an alarm raised before it started (a salvaged store is found while the store opens) or
//!   while it was down is still sent, and a restart does not send one twice (unless the agent
//!   died between raising the alert and moving the cursor: at least once, never lost).
//! - [`ChangeAlerts`] listens to the sync engine's durable changes and raises one
//!   `users_missing` alert per complete read that lost users (naming each with its last-seen
//!   time) and one `users_reappeared` per read that found missing users again. Users whose
//!   disappearance the mass guard holds are left to the `mass_disappearance_held` alert.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::alert_kinds;
use super::alerts::Alerts;
use crate::events::EventBody;
use crate::lifecycle::StopSignal;
use crate::store::{Record, Store};
use crate::sync::{guard, DeviceChange, Engine};

/// Where the alarm cursor is kept in the `meta` tree.
const CURSOR: &[u8] = b"mqtt.alarms_alerted";
/// Look at the alarms at least this often, should a watch notification be missed.
const RESCAN: Duration = Duration::from_secs(5);

/// The last alarm sequence number made an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AlarmCursor {
    sequence: u64,
}

impl Record for AlarmCursor {
    const KIND: &'static str = "alarm_cursor";
    const VERSION: u32 = 1;
}

/// The task that makes every local alarm an MQTT alert.
pub(super) struct AlarmAlerts {
    /// Where alarms are read and the cursor kept.
    pub store: Store,
    /// The alert queue.
    pub alerts: Alerts,
}

impl AlarmAlerts {
    /// Runs until `stop` resolves.
    pub(super) async fn run(self, mut stop: StopSignal) {
        let mut cursor = match self.store.meta::<AlarmCursor>(CURSOR) {
            Ok(cursor) => cursor.map(|c| c.sequence),
            Err(err) => {
                tracing::error!("cannot read the alarm cursor, sending every kept alarm: {err}");
                None
            }
        };
        let mut rescan = tokio::time::interval(RESCAN);
        loop {
            // Watch before reading, so an alarm raised in between wakes the next round.
            let watch = self.store.watch_alarms();
            self.forward_new(&mut cursor).await;
            tokio::select! {
                _ = stop.stopped() => return,
                _ = watch => {}
                _ = rescan.tick() => {}
            }
        }
    }

    async fn forward_new(&self, cursor: &mut Option<u64>) {
        let new = match self.store.alarms_after(*cursor) {
            Ok(new) => new,
            Err(err) => {
                tracing::error!("cannot read alarms for MQTT alerts: {err}");
                return;
            }
        };
        for (sequence, alarm) in new {
            let (device, body) = alert_kinds::from_alarm(&alarm);
            if let Err(err) = self.alerts.raise(&device, EventBody::Alert(body)).await {
                // Retried at the next round: the cursor stays.
                tracing::error!("alarm not sent as an MQTT alert yet: {err}");
                return;
            }
            *cursor = Some(sequence);
            if let Err(err) = self.store.set_meta(CURSOR, &AlarmCursor { sequence }) {
                tracing::error!("cannot move the alarm cursor (alarms may be re-sent): {err}");
            }
        }
    }
}

/// The task that raises alerts for users missing and reappeared.
pub(super) struct ChangeAlerts {
    /// The sync engine whose changes are watched.
    pub engine: Arc<Engine>,
    /// The alert queue.
    pub alerts: Alerts,
}

impl ChangeAlerts {
    /// Subscribes now (the caller spawns the returned future, so no change between start-up
    /// and the first poll of the task is missed) and runs until `stop` resolves.
    pub(super) fn run(self, stop: StopSignal) -> impl std::future::Future<Output = ()> + Send {
        let changes = self.engine.subscribe();
        self.watch(changes, stop)
    }

    async fn watch(self, mut changes: broadcast::Receiver<DeviceChange>, mut stop: StopSignal) {
        loop {
            let change = tokio::select! {
                _ = stop.stopped() => return,
                change = changes.recv() => change,
            };
            match change {
                Ok(change) => self.alert(&change).await,
                Err(broadcast::error::RecvError::Lagged(lost)) => tracing::warn!(
                    lost,
                    "fell behind the sync engine: {lost} read(s) raised no user alerts; \
                     `history` and the buffer still hold what changed"
                ),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn alert(&self, change: &DeviceChange) {
        let device = change.device_id.as_str();
        let applied = &change.applied;
        if !applied.missing.is_empty() {
            let held: Vec<String> = match guard::held(self.engine.store(), Some(device)) {
                Ok(held) => held
                    .into_iter()
                    .filter_map(|(_, held)| match held.event.body {
                        EventBody::UserMissing { user, .. } => Some(user.user_id),
                        _ => None,
                    })
                    .collect(),
                Err(err) => {
                    tracing::warn!(device, "cannot read held events: {err}");
                    Vec::new()
                }
            };
            let missing: Vec<_> = applied
                .missing
                .iter()
                .filter(|user| !held.contains(&user.user_id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                self.raise(device, alert_kinds::users_missing(device, &missing))
                    .await;
            }
        }
        if !applied.reappeared.is_empty() {
            self.raise(
                device,
                alert_kinds::users_reappeared(device, &applied.reappeared),
            )
            .await;
        }
    }

    async fn raise(&self, device: &str, body: crate::events::AlertBody) {
        let kind = body.kind.clone();
        if let Err(err) = self.alerts.raise(device, EventBody::Alert(body)).await {
            tracing::error!(device, kind, "alert not raised: {err}");
        }
    }
}
