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

use crate::events::Event;
use crate::store::{keys, Record, Store, StoreError, TreeName, Tx, TxError};
use serde::{Deserialize, Serialize};

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
    /// Takes the keys for `events` (outside any transaction).
    fn prepare(&self, events: Vec<Event>) -> Result<Prepared<Event>, StoreError>;
    /// Writes prepared events inside the caller's transaction.
    fn enqueue(&self, tx: &Tx<'_>, events: &Prepared<Event>) -> Result<(), TxError>;
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

impl Record for AuditEntry {
    const KIND: &'static str = "audit_entry";
    const VERSION: u32 = 1;
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

    fn prepare(&self, events: Vec<Event>) -> Result<Prepared<Event>, StoreError> {
        Prepared::number(&self.store, events)
    }

    fn enqueue(&self, tx: &Tx<'_>, events: &Prepared<Event>) -> Result<(), TxError> {
        for (sequence, event) in &events.items {
            tx.insert(TreeName::Outbox, keys::sequence(*sequence), event)?;
        }
        Ok(())
    }
}

/// Stand-in audit log: entries in [`TreeName::Audit`] keyed by sequence number (merge seam,
/// see the module docs). Queries scan the whole tree, which is fine for the stand-in's job.
#[derive(Clone)]
pub struct StoreAudit {
    store: Store,
}

impl StoreAudit {
    /// An audit log over the agent's store.
    pub fn new(store: Store) -> Self {
        Self { store }
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
            tx.insert(TreeName::Audit, keys::sequence(*sequence), entry)?;
        }
        Ok(())
    }

    fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut matching = Vec::new();
        for entry in self.store.scan_prefix::<AuditEntry>(TreeName::Audit, []) {
            let (_, entry) = entry?;
            if query.matches(&entry) {
                matching.push(entry);
            }
        }
        Ok(matching
            .into_iter()
            .rev()
            .skip(query.offset)
            .take(query.limit)
            .collect())
    }

    fn sweep(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for entry in self.store.scan_prefix::<AuditEntry>(TreeName::Audit, []) {
            let (key, entry) = entry?;
            if entry.at_ms < cutoff_ms {
                old.push(key);
            }
        }
        for key in &old {
            self.store.remove::<AuditEntry>(TreeName::Audit, key)?;
        }
        Ok(old.len())
    }
}
