//! Must-deliver alerts: missing users, outbox full, clock unsynchronised, lock lost.
//!
//! An alert is written to the store's `alerts` tree and made durable before [`Alerts::raise`]
//! returns, so neither a broker outage nor an agent restart can lose it. It leaves the tree
//! only when the broker hands it back: the agent subscribes to its own alert topic, and a
//! copy coming back proves the broker accepted and routed it. That confirmation is exact (it
//! carries the alert's key), unlike mapping rumqttc's packet ids back to messages across
//! reconnects, where the client silently drops in-flight publishes of a lost session.
//!
//! Until confirmed, an alert is re-sent on every new connection and periodically; each copy
//! has the same idempotency key, so a subscriber can drop duplicates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::{mpsc, Notify};

use super::publisher::{Message, PublishError, Publisher};
use crate::events::{Event, EventBody};
use crate::store::{keys, Store, StoreError, TreeName};

/// Pending alerts kept at most; past it new alerts are refused (and logged) rather than
/// pushing out older ones, which are just as much business facts.
const MAX_PENDING: usize = 10_000;

/// The durable alert queue. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    store: Store,
    agent_id: Arc<str>,
    wake: Arc<Notify>,
}

/// Why an alert could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The store failed; the alert was not recorded.
    #[error("cannot record alert: {0}")]
    Store(#[from] StoreError),
    /// Too many alerts are waiting for the broker.
    #[error(
        "cannot record alert: {MAX_PENDING} alerts are already waiting for the MQTT broker; \
         check the broker connection"
    )]
    QueueFull,
}

impl Alerts {
    /// The queue kept in `store` for agent `agent_id`.
    pub fn new(store: Store, agent_id: &str) -> Alerts {
        Alerts {
            store,
            agent_id: agent_id.into(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Records an alert durably and wakes the sender. `device_id` is empty for agent-wide
    /// alerts. Returns the alert's idempotency key.
    pub async fn raise(&self, device_id: &str, body: EventBody) -> Result<String, AlertError> {
        if self.pending_count() >= MAX_PENDING {
            return Err(AlertError::QueueFull);
        }
        let sequence = self.store.next_sequence()?;
        let event = Event {
            key: format!("alert/{}/{sequence}", self.agent_id),
            agent_id: self.agent_id.to_string(),
            device_id: device_id.to_owned(),
            occurred_at_ms: chrono::Utc::now().timestamp_millis(),
            clock_synchronized: crate::clock_sync::clock_sync().is_synchronized(),
            fencing_token: 0,
            body,
        };
        self.store
            .insert(TreeName::Alerts, keys::sequence(sequence), &event)?;
        self.store.make_durable().await?;
        self.wake.notify_one();
        Ok(event.key)
    }

    /// Alerts not yet confirmed by the broker, oldest first.
    pub fn pending(&self) -> Result<Vec<(Vec<u8>, Event)>, StoreError> {
        self.store
            .scan_prefix::<Event>(TreeName::Alerts, [])
            .collect()
    }

    /// How many alerts wait for the broker (for health).
    pub fn pending_count(&self) -> usize {
        self.store.tree(TreeName::Alerts).len()
    }

    /// Removes the alert that `payload` (a copy received back from the broker) carries;
    /// `true` if it was pending. Unparseable payloads are not ours and are ignored.
    fn confirm(&self, payload: &[u8]) -> Result<bool, StoreError> {
        let Ok(echo) = serde_json::from_slice::<Event>(payload) else {
            return Ok(false);
        };
        for (key, event) in self.pending()? {
            if event.key == echo.key {
                self.store.remove::<Event>(TreeName::Alerts, key)?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The task that sends pending alerts and removes confirmed ones.
pub(super) struct AlertSender {
    /// The queue.
    pub alerts: Alerts,
    /// Where alerts go.
    pub publisher: Publisher,
    /// The alert topic.
    pub topic: String,
    /// Copies received back from the broker.
    pub echoes: mpsc::Receiver<Bytes>,
    /// Re-send an unconfirmed alert after this long on the same connection.
    pub resend_after: Duration,
}

impl AlertSender {
    /// Runs until `stop` resolves.
    pub(super) async fn run(mut self, mut stop: crate::lifecycle::StopSignal) {
        // key -> (connection number, when) of the last send.
        let mut sent: HashMap<String, (u64, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(self.resend_after);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connections = self.publisher.link().watch_connections();
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                _ = self.alerts.wake.notified() => {}
                Ok(()) = connections.changed() => {}
                _ = tick.tick() => {}
                Some(echo) = self.echoes.recv() => {
                    match self.alerts.confirm(&echo) {
                        Ok(true) => tracing::debug!("alert confirmed by the broker"),
                        Ok(false) => {}
                        Err(err) => tracing::warn!("cannot remove a delivered alert: {err}"),
                    }
                    continue;
                }
            }
            self.send_due(&mut sent);
        }
    }

    fn send_due(&self, sent: &mut HashMap<String, (u64, Instant)>) {
        let link = self.publisher.link();
        if !link.is_connected() {
            return;
        }
        let pending = match self.alerts.pending() {
            Ok(pending) => pending,
            Err(err) => {
                tracing::warn!("cannot read pending alerts: {err}");
                return;
            }
        };
        sent.retain(|key, _| pending.iter().any(|(_, event)| &event.key == key));
        let connection = link.connections();
        for (_, event) in pending {
            let due = sent
                .get(&event.key)
                .is_none_or(|(conn, at)| *conn != connection || at.elapsed() >= self.resend_after);
            if !due {
                continue;
            }
            let payload = match serde_json::to_vec(&event) {
                Ok(payload) => payload,
                Err(err) => {
                    tracing::error!(key = %event.key, "cannot encode alert: {err}");
                    continue;
                }
            };
            let message = Message::json(self.topic.clone(), payload, QoS::AtLeastOnce, false);
            match self.publisher.publish(message) {
                Ok(()) => {
                    sent.insert(event.key, (connection, Instant::now()));
                }
                Err(err @ PublishError::TooLarge { .. }) => {
                    tracing::error!(key = %event.key, "alert cannot be published: {err}");
                }
                // Stays pending; the next tick or connection tries again.
                Err(err) => {
                    tracing::debug!(key = %event.key, "alert not sent yet: {err}");
                    return;
                }
            }
        }
    }
}
