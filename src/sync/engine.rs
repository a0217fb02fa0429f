//! The [`Engine`]: everything one sync operation needs (store, outbox and audit ports, device
//! lock, clock, agent id), shared by the poll loops, backups, restore, migrate and the admin
//! operations so each of those is a small module of its own.

use super::clock::{Clock, SystemClock};
use super::lock::DeviceLock;
use super::ports::{AuditTrail, EventOutbox, StoreAudit, StoreOutbox};
use crate::events::{Event, EventBody};
use crate::store::{Store, TreeName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The sync engine's shared context. Cheap to share behind an `Arc`.
pub struct Engine {
    store: Store,
    outbox: Arc<dyn EventOutbox>,
    audit: Arc<dyn AuditTrail>,
    lock: Arc<dyn DeviceLock>,
    clock: Arc<dyn Clock>,
    agent_id: String,
    /// Per device, the registration whose user count was already compared (so a count drop is
    /// warned about once per registration, not at every poll).
    pub(super) count_checked: Mutex<HashMap<String, i64>>,
}

impl Engine {
    /// An engine over `store` with the store-backed outbox and audit stand-ins (see
    /// [`crate::sync::ports`]) and the system clock.
    pub fn new(store: Store, agent_id: &str, lock: Arc<dyn DeviceLock>) -> Self {
        Self {
            outbox: Arc::new(StoreOutbox::new(store.clone())),
            audit: Arc::new(StoreAudit::new(store.clone())),
            store,
            lock,
            clock: Arc::new(SystemClock),
            agent_id: agent_id.to_string(),
            count_checked: Mutex::new(HashMap::new()),
        }
    }

    /// Uses another clock (tests, and proving idempotency at a fixed instant).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses another outbox (the real upstream outbox at merge).
    pub fn with_outbox(mut self, outbox: Arc<dyn EventOutbox>) -> Self {
        self.outbox = outbox;
        self
    }

    /// Uses another audit log (the real audit module at merge).
    pub fn with_audit(mut self, audit: Arc<dyn AuditTrail>) -> Self {
        self.audit = audit;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The outbox port.
    pub fn outbox(&self) -> &dyn EventOutbox {
        self.outbox.as_ref()
    }

    /// The audit port.
    pub fn audit(&self) -> &dyn AuditTrail {
        self.audit.as_ref()
    }

    /// The device lock.
    pub fn lock(&self) -> &dyn DeviceLock {
        self.lock.as_ref()
    }

    /// This agent's id (in events and idempotency keys).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Now, from the engine's clock (UTC ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// `extra` plus the trees the outbox and audit ports write: what a transaction that also
    /// queues events and audits must declare.
    pub(super) fn trees(&self, extra: &[TreeName]) -> Vec<TreeName> {
        let mut trees = extra.to_vec();
        trees.extend_from_slice(self.outbox.trees());
        trees.extend_from_slice(self.audit.trees());
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
            fencing_token,
            body,
        }
    }
}
