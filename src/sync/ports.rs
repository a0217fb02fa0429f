//! The two seams between the sync engine and modules written in parallel with it: the upstream
//! outbox and the audit log.
//!
//! **Merge seam.** [`StoreOutbox`] and [`StoreAudit`] are deliberately small store-backed
//! stand-ins, so the sync engine is complete and testable on its own. At merge the lead replaces
//! them with adapters over `crate::upstream::outbox` and `crate::audit` implementing
//! [`EventOutbox`] and [`AuditTrail`]; nothing else in `crate::sync` names them (only
//! [`crate::sync::Engine`]'s constructors pick the defaults).
//!
//! Both ports work in two steps because sled forbids taking sequence numbers inside a
//! transaction closure (it may block there, sled issue #1139): [`EventOutbox::prepare`] /
//! [`AuditTrail::prepare`] take the keys *before* the transaction, and `enqueue` / `append`
//! write inside it, next to the snapshot and buffer changes they describe.

use crate::audit::{self, Audit, AuditEntry as LogEntry, AuditQuery as LogQuery, Operation};
use crate::events::Event;
use crate::store::{Store, StoreError, TreeName, Tx, TxError};
use crate::upstream::outbox::{self, Outbox, OutboxError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Items with the keys they will be stored under, taken before the transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared<T> {
    /// (sequence number, item), in order.
    pub items: Vec<(u64, T)>,
}

impl<T> Prepared<T> {
    /// Nothing to write.
    pub fn empty() -> Self {
        Self { items: Vec::new() }
    }

    /// Takes one sequence number per item from the store.
    pub fn number(store: &Store, items: Vec<T>) -> Result<Self, StoreError> {
        let items = items
            .into_iter()
            .map(|item| Ok((store.next_sequence()?, item)))
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { items })
    }

    /// The items without their keys.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, item)| item)
    }
}

/// Where events to forward upstream go, in the same transaction as the change they report.
pub trait EventOutbox: Send + Sync {
    /// The trees [`EventOutbox::enqueue`] writes; the caller declares them in its transaction.
    fn trees(&self) -> &'static [TreeName];
    /// Takes the keys for `events` (outside any transaction); refuses when the outbox is full.
    fn prepare(&self, events: Vec<Event>) -> Result<Prepared<Event>, OutboxError>;
    /// Writes prepared events inside the caller's transaction.
    fn enqueue(&self, tx: &Tx<'_>, events: &Prepared<Event>) -> Result<(), TxError>;
    /// Reports that the transaction holding `events` committed (counts them, wakes the
    /// forwarder). The default does nothing.
    fn committed(&self, events: Prepared<Event>) {
        let _ = events;
    }
}

/// Where audit entries go (in the same transaction as the change they describe) and how a
/// technician reads them back.
pub trait AuditTrail: Send + Sync {
    /// The trees [`AuditTrail::append`] writes.
    fn trees(&self) -> &'static [TreeName];
    /// Takes the keys for `entries` (outside any transaction).
    fn prepare(&self, entries: Vec<AuditEntry>) -> Result<Prepared<AuditEntry>, StoreError>;
    /// Writes prepared entries inside the caller's transaction.
    fn append(&self, tx: &Tx<'_>, entries: &Prepared<AuditEntry>) -> Result<(), TxError>;
    /// Entries matching `query`, newest first.
    fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Removes entries older than `cutoff_ms`; returns how many.
    fn sweep(&self, cutoff_ms: i64) -> Result<usize, StoreError>;
}

/// What an audit entry records. Variants are only appended (postcard stores the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditOperation {
    /// A user seen on a device for the first time and buffered.
    Discovered,
    /// A known user's attributes or credentials changed on the device.
    Changed,
    /// A user vanished between two complete reads.
    Missing,
    /// A user reported missing is back.
    Reappeared,
    /// A read was incomplete: nothing concluded about users.
    ReadIncomplete,
    /// The device reported fewer users than the last complete read, without a complete read.
    CountDropped,
    /// A mapping was requested, confirmed or refused.
    Mapping,
    /// A device/upstream disagreement was recorded.
    Conflict,
    /// An administrator resolved a conflict.
    Resolution,
    /// A backup was written (or failed).
    Backup,
    /// A restore ran (or was dry-run).
    Restore,
    /// A device lock could not be taken, or was taken for an administrative action.
    Lock,
    /// An administrator's command.
    AdminCommand,
    /// Records removed by retention.
    Retention,
}

impl AuditOperation {
    /// Every operation, for parsing and help texts.
    pub const ALL: [AuditOperation; 14] = [
        AuditOperation::Discovered,
        AuditOperation::Changed,
        AuditOperation::Missing,
        AuditOperation::Reappeared,
        AuditOperation::ReadIncomplete,
        AuditOperation::CountDropped,
        AuditOperation::Mapping,
        AuditOperation::Conflict,
        AuditOperation::Resolution,
        AuditOperation::Backup,
        AuditOperation::Restore,
        AuditOperation::Lock,
        AuditOperation::AdminCommand,
        AuditOperation::Retention,
    ];

    /// The name used on the command line and in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOperation::Discovered => "discovered",
            AuditOperation::Changed => "changed",
            AuditOperation::Missing => "missing",
            AuditOperation::Reappeared => "reappeared",
            AuditOperation::ReadIncomplete => "read_incomplete",
            AuditOperation::CountDropped => "count_dropped",
            AuditOperation::Mapping => "mapping",
            AuditOperation::Conflict => "conflict",
            AuditOperation::Resolution => "resolution",
            AuditOperation::Backup => "backup",
            AuditOperation::Restore => "restore",
            AuditOperation::Lock => "lock",
            AuditOperation::AdminCommand => "admin_command",
            AuditOperation::Retention => "retention",
        }
    }
}

impl std::str::FromStr for AuditOperation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        AuditOperation::ALL
            .into_iter()
            .find(|op| op.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<_> = AuditOperation::ALL.iter().map(|op| op.as_str()).collect();
                format!(
                    "unknown audit operation {text:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One audit record: what was done, to which user, by whom, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (UTC ms).
    pub at_ms: i64,
    /// What kind of thing happened.
    pub operation: AuditOperation,
    /// The device concerned; empty for agent-wide entries.
    pub device_id: String,
    /// The device user concerned, if one.
    pub user_id: Option<String>,
    /// `agent` for the agent's own work, else the admin key name or `technician` (CLI).
    pub actor: String,
    /// What exactly, in words a technician understands.
    pub detail: String,
}

/// Filters and paging of an audit query. Unset filters match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this device user id.
    pub user_id: Option<String>,
    /// Only this device.
    pub device_id: Option<String>,
    /// Only this operation.
    pub operation: Option<AuditOperation>,
    /// Not before (UTC ms, inclusive).
    pub from_ms: Option<i64>,
    /// Before (UTC ms, exclusive).
    pub to_ms: Option<i64>,
    /// Matching entries to skip (newest first), for paging.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            user_id: None,
            device_id: None,
            operation: None,
            from_ms: None,
            to_ms: None,
            offset: 0,
            limit: 50,
        }
    }
}

impl AuditQuery {
    /// Whether `entry` passes the filters.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.user_id
            .as_ref()
            .is_none_or(|id| entry.user_id.as_ref() == Some(id))
            && self
                .device_id
                .as_ref()
                .is_none_or(|id| &entry.device_id == id)
            && self.operation.is_none_or(|op| entry.operation == op)
            && self.from_ms.is_none_or(|from| entry.at_ms >= from)
            && self.to_ms.is_none_or(|to| entry.at_ms < to)
    }
}

/// Stand-in outbox: events in [`TreeName::Outbox`] keyed by sequence number (merge seam, see
/// the module docs).
#[derive(Clone)]
pub struct StoreOutbox {
    store: Store,
}

impl StoreOutbox {
    /// An outbox over the agent's store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Every queued event in order (for tests and the technician).
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        self.store
            .scan_prefix::<Event>(TreeName::Outbox, [])
            .map(|entry| entry.map(|(_, event)| event))
            .collect()
    }
}

impl EventOutbox for StoreOutbox {
    fn trees(&self) -> &'static [TreeName] {
        &[TreeName::Outbox]
    }

    fn prepare(&self, events: Vec<Event>) -> Result<Prepared<Event>, OutboxError> {
        Ok(Prepared::number(&self.store, events)?)
    }

    fn enqueue(&self, tx: &Tx<'_>, events: &Prepared<Event>) -> Result<(), TxError> {
        for (sequence, event) in &events.items {
            outbox::insert_event(tx, *sequence, event)?;
        }
        Ok(())
    }
}

/// The running agent's outbox port: the upstream outbox with its byte cap (a full outbox makes
/// the whole read fail to apply, so it is retried, never half-recorded), counters and the
/// forwarder's wake-up.
pub struct UpstreamOutbox {
    outbox: Outbox,
    slots: Mutex<HashMap<u64, outbox::Prepared>>,
}

impl UpstreamOutbox {
    /// A port over the agent's outbox.
    pub fn new(outbox: Outbox) -> Self {
        Self {
            outbox,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, outbox::Prepared>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventOutbox for UpstreamOutbox {
    fn trees(&self) -> &'static [TreeName] {
        &[TreeName::Outbox]
    }

    fn prepare(&self, events: Vec<Event>) -> Result<Prepared<Event>, OutboxError> {
        let mut items = Vec::with_capacity(events.len());
        for event in events {
            let slot = self.outbox.prepare(event.clone())?;
            items.push((slot.sequence(), event));
            self.slots().insert(slot.sequence(), slot);
        }
        Ok(Prepared { items })
    }

    fn enqueue(&self, tx: &Tx<'_>, events: &Prepared<Event>) -> Result<(), TxError> {
        for (sequence, event) in &events.items {
            outbox::insert_event(tx, *sequence, event)?;
        }
        Ok(())
    }

    fn committed(&self, events: Prepared<Event>) {
        let mut slots = self.slots();
        for (sequence, _) in events.items {
            if let Some(slot) = slots.remove(&sequence) {
                self.outbox.committed(slot);
            }
        }
    }
}

/// The audit port over the agent's audit log (`crate::audit`): the sync engine's entries are
/// stored in the same log, in the same format, as administrator commands and everything else,
/// so one `audit query` answers "what happened to user 42?".
#[derive(Clone)]
pub struct StoreAudit {
    audit: Audit,
    store: Store,
}

impl StoreAudit {
    /// The audit log in the agent's store.
    pub fn new(store: Store) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
        }
    }
}

fn to_log(entry: &AuditEntry) -> LogEntry {
    LogEntry {
        at_unix_ms: entry.at_ms,
        operation: match entry.operation {
            AuditOperation::Discovered => Operation::Discovery,
            AuditOperation::Changed => Operation::Changed,
            AuditOperation::Missing => Operation::Missing,
            AuditOperation::Reappeared => Operation::Reappeared,
            AuditOperation::ReadIncomplete => Operation::ReadIncomplete,
            AuditOperation::CountDropped => Operation::CountDropped,
            AuditOperation::Mapping => Operation::Mapping,
            AuditOperation::Conflict => Operation::Conflict,
            AuditOperation::Resolution => Operation::Resolution,
            AuditOperation::Backup => Operation::Backup,
            AuditOperation::Restore => Operation::Restore,
            AuditOperation::Lock => Operation::Lock,
            AuditOperation::AdminCommand => Operation::AdminCommand,
            AuditOperation::Retention => Operation::Retention,
        },
        device_id: (!entry.device_id.is_empty()).then(|| entry.device_id.clone()),
        device_user_id: entry.user_id.clone(),
        actor: entry.actor.clone(),
        detail: entry.detail.clone(),
    }
}

fn from_log(entry: LogEntry) -> AuditEntry {
    AuditEntry {
        at_ms: entry.at_unix_ms,
        operation: match entry.operation {
            // Buffering is recorded by nobody today; it reads as the discovery it follows.
            Operation::Discovery | Operation::Buffering => AuditOperation::Discovered,
            Operation::Changed => AuditOperation::Changed,
            Operation::Missing => AuditOperation::Missing,
            Operation::Reappeared => AuditOperation::Reappeared,
            Operation::ReadIncomplete => AuditOperation::ReadIncomplete,
            Operation::CountDropped => AuditOperation::CountDropped,
            Operation::Mapping => AuditOperation::Mapping,
            Operation::Conflict => AuditOperation::Conflict,
            Operation::Resolution => AuditOperation::Resolution,
            Operation::Backup => AuditOperation::Backup,
            Operation::Restore => AuditOperation::Restore,
            Operation::Lock => AuditOperation::Lock,
            Operation::AdminCommand => AuditOperation::AdminCommand,
            Operation::Retention => AuditOperation::Retention,
        },
        device_id: entry.device_id.unwrap_or_default(),
        user_id: entry.device_user_id,
        actor: entry.actor,
        detail: entry.detail,
    }
}

impl AuditTrail for StoreAudit {
    fn trees(&self) -> &'static [TreeName] {
        &[TreeName::Audit]
    }

    fn prepare(&self, entries: Vec<AuditEntry>) -> Result<Prepared<AuditEntry>, StoreError> {
        Prepared::number(&self.store, entries)
    }

    fn append(&self, tx: &Tx<'_>, entries: &Prepared<AuditEntry>) -> Result<(), TxError> {
        for (sequence, entry) in &entries.items {
            audit::insert_in(tx, *sequence, &to_log(entry))?;
        }
        Ok(())
    }

    fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let wanted = query.offset + query.limit;
        let mut page_query = LogQuery {
            device_user_id: query.user_id.clone(),
            device_id: query.device_id.clone(),
            operation: query.operation.map(|op| {
                to_log(&AuditEntry {
                    at_ms: 0,
                    operation: op,
                    device_id: String::new(),
                    user_id: None,
                    actor: String::new(),
                    detail: String::new(),
                })
                .operation
            }),
            since_unix_ms: query.from_ms,
            until_unix_ms: query.to_ms.map(|to| to - 1),
            before_sequence: None,
            limit: wanted.max(1),
        };
        let mut found = Vec::new();
        loop {
            let page = self.audit.query(&page_query)?;
            found.extend(page.entries.into_iter().map(|(_, entry)| from_log(entry)));
            match page.next_before {
                Some(before) if found.len() < wanted => page_query.before_sequence = Some(before),
                _ => break,
            }
        }
        Ok(found
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect())
    }

    fn sweep(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.audit.sweep_older_than(cutoff_ms)
    }
}
