//! The [`Engine`]: everything one sync operation needs (store, outbox, audit log, device lock,
//! clock, agent id), shared by the poll loops, backups, restore, migrate and the admin
//! operations so each of those is a small module of its own.

use super::apply::Applied;
use super::clock::{Clock, SystemClock};
use crate::audit::Audit;
use crate::config::Config;
use crate::events::{Event, EventBody};
use crate::lock::{DeviceLock, YieldingLock};
use crate::store::{Store, TreeName};
use crate::upstream::outbox::Outbox;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The sync engine's shared context. Cheap to share behind an `Arc`.
pub struct Engine {
    store: Store,
    outbox: Outbox,
    audit: Audit,
    /// The configured lock, wrapped so that a live-event listener yields to everything else.
    lock: Arc<YieldingLock>,
    clock: Arc<dyn Clock>,
    agent_id: String,
    /// Per device, the registration whose user count was already compared (so a count drop is
    /// warned about once per registration, not at every poll).
    pub(super) count_checked: Mutex<HashMap<String, i64>>,
    /// Where reads, their progress and the lock held are reported (the agent's live picture;
    /// a private one unless [`Engine::with_live`] shares the agent's).
    live: crate::live::Live,
    /// Durable changes, for publishers (MQTT alerts) that must not run ahead of the store.
    changes: broadcast::Sender<DeviceChange>,
    person_requests: Arc<tokio::sync::Notify>,
    mass_guard: super::guard::MassGuard,
    /// A first read with more new users than this commits them in steps of this many before
    /// its final commit (0: one transaction); see `super::apply`.
    first_read_chunk: usize,
}

/// A complete read that changed something, announced only after it is durable: the MQTT plane
/// publishes missing-user alerts from these (the upstream gets the same facts from the outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange {
    /// The device.
    pub device_id: String,
    /// What the read changed.
    pub applied: Applied,
}

/// How a device's polls are going, for `status`, health messages and metrics. An incomplete
/// read changes only this (and the audit log), never the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceHealth {
    /// When the last poll was attempted (UTC ms).
    pub last_attempt_ms: Option<i64>,
    /// When the last complete read was applied (UTC ms).
    pub last_complete_ms: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Attempts that failed in a row.
    pub consecutive_failures: u32,
}

impl Engine {
    /// An engine over `store` that queues its events in `outbox` and records what it did in
    /// `audit` (both in the same store, written in the same transactions as the change they
    /// describe), with the system clock.
    pub fn new(
        store: Store,
        agent_id: &str,
        lock: Arc<dyn DeviceLock>,
        outbox: Outbox,
        audit: Audit,
    ) -> Self {
        Self {
            outbox,
            audit,
            store,
            lock: Arc::new(YieldingLock::new(lock)),
            clock: Arc::new(SystemClock),
            agent_id: agent_id.to_string(),
            count_checked: Mutex::new(HashMap::new()),
            live: crate::live::Live::default(),
            changes: broadcast::channel(64).0,
            person_requests: Arc::new(tokio::sync::Notify::new()),
            mass_guard: super::guard::MassGuard::default(),
            first_read_chunk: crate::config::DEFAULT_FIRST_READ_CHUNK as usize,
        }
    }

    /// The engine of the running agent, as `[agent]` configures it, over `lock` (the device
    /// lock `[lock]` asks for, built by `crate::arbiter::agent_lock`), the system clock,
    /// `outbox` and the audit log of `store`. The agent, the demo and the store tools all build
    /// it here, so they sync the same way.
    pub fn from_config(
        config: &Config,
        store: &Store,
        outbox: Outbox,
        lock: Arc<dyn DeviceLock>,
    ) -> Self {
        let audit = Audit::new(store.clone());
        Self::new(store.clone(), &config.agent.id, lock, outbox, audit)
            .with_mass_guard(super::guard::MassGuard {
                share: config.monitor.mass_missing_share,
                min_users: config.monitor.mass_missing_min,
            })
            .with_first_read_chunk(config.monitor.first_read_chunk as usize)
    }

    /// Uses another clock. A test hook: the agent runs on the system clock; tests fix the instant
    /// to prove idempotency and retention cut-offs.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports into the agent's live picture (status, health and metrics are derived from it).
    pub fn with_live(mut self, live: crate::live::Live) -> Self {
        self.live = live;
        self
    }

    /// The live picture the engine reports into.
    pub fn live(&self) -> &crate::live::Live {
        &self.live
    }

    /// Replaces the mass-disappearance guard's thresholds.
    pub fn with_mass_guard(mut self, guard: super::guard::MassGuard) -> Self {
        self.mass_guard = guard;
        self
    }

    /// Sets how many new users a first read commits per step (0: the whole read in one
    /// transaction), bounding the memory a big device's first read needs.
    pub fn with_first_read_chunk(mut self, users: usize) -> Self {
        self.first_read_chunk = users;
        self
    }

    /// How many new users a first read commits per step (0: no steps).
    pub fn first_read_chunk(&self) -> usize {
        self.first_read_chunk
    }

    /// When a read's `user_missing` events are held for an administrator.
    pub fn mass_guard(&self) -> super::guard::MassGuard {
        self.mass_guard
    }

    /// Notified after each administrator's `map`, so the upstream's person confirmer asks
    /// about it at once instead of at its next scheduled look.
    pub fn person_requests(&self) -> &Arc<tokio::sync::Notify> {
        &self.person_requests
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The outbox the engine's events go to.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The audit log the engine records in.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The device lock.
    pub fn lock(&self) -> &dyn DeviceLock {
        self.lock.as_ref()
    }

    /// The same lock, for a live-event listener: taken only when nothing else in this agent
    /// wants the device, and given up as soon as something does.
    pub(super) fn listen_lock(&self) -> &YieldingLock {
        &self.lock
    }

    /// The device lock, shared: for the device sessions the drivers start on their own (the
    /// AI06 punch backfill), which must take the same lock as the engine's.
    pub fn lock_handle(&self) -> Arc<dyn DeviceLock> {
        Arc::clone(&self.lock) as Arc<dyn DeviceLock>
    }

    /// This agent's id (in events and idempotency keys).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Whether the engine's clock is synchronised now (marks the events it stamps).
    pub(super) fn clock_synchronized(&self) -> bool {
        self.clock.synchronized()
    }

    /// Now, from the engine's clock (UTC ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Subscribes to durable changes (see [`DeviceChange`]). A subscriber that falls behind
    /// loses the oldest announcements, never the data: the store and outbox hold everything.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceChange> {
        self.changes.subscribe()
    }

    /// Announces a durable change to subscribers (none listening is fine).
    pub(super) fn announce(&self, device_id: &str, applied: &Applied) {
        let _ = self.changes.send(DeviceChange {
            device_id: device_id.to_string(),
            applied: applied.clone(),
        });
    }

    /// How each device's polls are going (a view of the live picture).
    pub fn health(&self) -> HashMap<String, DeviceHealth> {
        self.live
            .snapshot()
            .devices
            .into_iter()
            .map(|(id, device)| {
                let health = DeviceHealth {
                    last_attempt_ms: device.last_attempt_ms,
                    last_complete_ms: device.last_complete_read_ms,
                    last_error: device.last_error,
                    consecutive_failures: device.consecutive_incomplete,
                };
                (id, health)
            })
            .collect()
    }

    /// `extra` plus the outbox and audit trees: what a transaction that also queues events
    /// and audits must declare.
    pub(super) fn trees(&self, extra: &[TreeName]) -> Vec<TreeName> {
        let mut trees = extra.to_vec();
        trees.extend_from_slice(&[TreeName::Outbox, TreeName::Audit]);
        trees
    }

    /// An event of this agent about `device_id`.
    pub(super) fn event(
        &self,
        device_id: &str,
        occurred_at_ms: i64,
        fencing_token: u64,
        key: String,
        body: EventBody,
    ) -> Event {
        Event {
            key,
            agent_id: self.agent_id.clone(),
            device_id: device_id.to_string(),
            occurred_at_ms,
            clock_synchronized: self.clock.synchronized(),
            fencing_token,
            body,
        }
    }
}
