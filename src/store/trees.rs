//! The fixed set of sled trees the agent uses.
//!
//! Every tree is named here and nowhere else, so the on-disk layout can be read in one place
//! and a typo cannot silently create a new, empty tree. Entities (devices, users, events) are
//! keys inside these trees, never trees of their own: sled keeps per-tree metadata forever and
//! reclaims space badly when trees are dropped (sled issue #1484).

/// One of the agent's sled trees. See the table in the [`crate::store`] module documentation
/// for each tree's key and value layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TreeName {
    /// Store-level facts: the schema version and other single values.
    Meta,
    /// Conditions an operator must see (e.g. "store was salvaged"), kept until shown.
    Alarms,
    /// What the agent knows about each configured device (identity, last contact).
    Devices,
    /// Each device's users as seen by the last *complete* read.
    Snapshots,
    /// Every device user ever seen; never deleted (the agent's durable copy).
    Buffer,
    /// Device user ↔ upstream person links.
    Mappings,
    /// Disagreements between device and upstream that need a decision.
    Conflicts,
    /// Append-only record of what the agent did and why.
    Audit,
    /// Events waiting to be forwarded upstream exactly once.
    Outbox,
    /// Outbox events given up on after repeated failure, kept for an operator.
    DeadLetters,
    /// Attendance punches read from devices.
    Punches,
    /// Nonces of accepted signed commands, kept until they expire (replay protection).
    Nonces,
    /// Alerts waiting for the MQTT broker to confirm them (must-deliver, survives outages).
    Alerts,
    /// Credential values (templates, photos, cards, PINs) as last fetched, so a steady-state
    /// poll fetches no credential it already holds. Key `device_id \0 user_id \0 slot`
    /// (slot u16 BE); owned by `crate::sync::credentials`.
    Credentials,
    /// Per device, one entry per complete read: counts and which ids came and went. Key
    /// `device_id \0 generation` (u64 BE); owned by `crate::sync::history`.
    History,
    /// Per device, where the sync engine stands: read generation, last complete read. Key
    /// `device_id`; owned by `crate::sync::state`.
    SyncState,
}

impl TreeName {
    /// Every tree, in a fixed order; the store opens them all at start-up so that the
    /// typed accessors never fail on a missing tree.
    pub const ALL: [TreeName; 16] = [
        TreeName::Meta,
        TreeName::Alarms,
        TreeName::Devices,
        TreeName::Snapshots,
        TreeName::Buffer,
        TreeName::Mappings,
        TreeName::Conflicts,
        TreeName::Audit,
        TreeName::Outbox,
        TreeName::DeadLetters,
        TreeName::Punches,
        TreeName::Nonces,
        TreeName::Alerts,
        TreeName::Credentials,
        TreeName::History,
        TreeName::SyncState,
    ];

    /// The tree's name on disk. Changing one of these strings orphans the old tree's data,
    /// so they are part of the schema.
    pub const fn as_str(self) -> &'static str {
        match self {
            TreeName::Meta => "meta",
            TreeName::Alarms => "alarms",
            TreeName::Devices => "devices",
            TreeName::Snapshots => "snapshots",
            TreeName::Buffer => "buffer",
            TreeName::Mappings => "mappings",
            TreeName::Conflicts => "conflicts",
            TreeName::Audit => "audit",
            TreeName::Outbox => "outbox",
            TreeName::DeadLetters => "dead_letters",
            TreeName::Punches => "punches",
            TreeName::Nonces => "nonces",
            TreeName::Alerts => "alerts",
            TreeName::Credentials => "credentials",
            TreeName::History => "history",
            TreeName::SyncState => "sync_state",
        }
    }

    /// Position in [`TreeName::ALL`], used to index the store's open tree handles.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for TreeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_lists_every_tree_at_its_own_index() {
        for (position, tree) in TreeName::ALL.iter().enumerate() {
            assert_eq!(tree.index(), position, "{tree} is out of place in ALL");
        }
    }

    #[test]
    fn on_disk_names_are_unique() {
        let names: HashSet<_> = TreeName::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), TreeName::ALL.len());
    }
}
