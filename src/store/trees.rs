//! The fixed set of sled trees the agent uses.
//!
//! Every tree is named here and nowhere else, so the on-disk layout can be read in one place
//! and a typo cannot silently create a new, empty tree. Entities (devices, users, events) are
//! keys inside these trees, never trees of their own: sled keeps per-tree metadata forever and
//! reclaims space badly when trees are dropped (sled issue #1484).

/// One of the agent's sled trees. See the table in the [`crate::store`] module documentation
/// for each tree's key and value layout.
///
/// Each tree has exactly one writer, the module named in its documentation ("written only
/// by"); other modules read it, or ask the writer. The test `each_tree_has_its_one_writer`
/// holds the source to that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TreeName {
    /// Store-level facts: the schema version and other single values. Written only by
    /// `crate::store` (the schema check, and [`crate::store::Store::set_meta`] for the single
    /// values of other modules, such as the upstream mapping cursor).
    Meta,
    /// Conditions an operator must see (e.g. "store was salvaged"), kept until shown. Written
    /// only by `crate::store::alarm` ([`crate::store::Store::raise_alarm`]).
    Alarms,
    /// What the agent knows about each configured device (identity, last contact). Written
    /// only by `crate::device::registry`.
    Devices,
    /// Each device's users as seen by the last *complete* read. Written only by
    /// `crate::sync::snapshot`.
    Snapshots,
    /// Every device user ever seen; never deleted (the agent's durable copy) but by retention
    /// of users long gone. Written only by `crate::sync::buffer`.
    Buffer,
    /// Device user ↔ upstream person links. Written only by `crate::sync::mapping` (pulled
    /// mappings reach it through `crate::upstream::MappingSink`).
    Mappings,
    /// Disagreements between device and upstream that need a decision. Written only by
    /// `crate::sync::conflicts`.
    Conflicts,
    /// Append-only record of what the agent did and why. Written only by `crate::audit`.
    Audit,
    /// Events waiting to be forwarded upstream exactly once. Written only by
    /// `crate::upstream::outbox`.
    Outbox,
    /// Outbox events given up on after repeated failure, kept for an operator. Written only
    /// by `crate::upstream::outbox`.
    DeadLetters,
    /// Attendance punches read from devices. Written only by `crate::device::punches`.
    Punches,
    /// Nonces of accepted signed commands, kept until they expire (replay protection).
    /// Written only by `crate::mqtt::command::nonces`.
    Nonces,
    /// Alerts waiting for the MQTT broker to confirm them (must-deliver, survives outages).
    /// Written only by `crate::mqtt::alerts`.
    Alerts,
    /// Credential values (templates, photos, cards, PINs) as last fetched, so a steady-state
    /// poll fetches no credential it already holds. Key `device_id \0 user_id \0 slot`
    /// (slot u16 BE). Written only by `crate::sync::credentials`.
    Credentials,
    /// Per device, one entry per complete read: counts and which ids came and went. Key
    /// `device_id \0 generation` (u64 BE). Written only by `crate::sync::history`.
    History,
    /// Per device, where the sync engine stands: read generation, last complete read. Key
    /// `device_id`. Written only by `crate::sync::state`.
    SyncState,
    /// Per device, since which read generation the upstream is behind the buffer (the outbox
    /// was full and refused that read's events); removed when the catch-up is queued. Key
    /// `device_id`. Written only by `crate::sync::catch_up`.
    CatchUp,
    /// Records a device sent that cannot be read (raw JSON, reason, time), kept for an
    /// operator. Key `device_id \0 sequence`. Written only by `crate::device::quarantine`.
    Quarantine,
    /// `user_missing` events of a mass disappearance, held until an administrator confirms or
    /// the users come back. Key `device_id \0 user_id`. Written only by `crate::sync::guard`.
    HeldEvents,
    /// The shelf-label articles the upstream wants, by entity (`person:<id>`, `space:<id>`,
    /// `room:<id>`), with the feed cursor. Written only by `crate::esl::desired`.
    EslDesired,
    /// The ownership ledger: every AIMS article the agent created or adopted, recorded before
    /// the write is sent. Key `article_id`. Written only by `crate::esl::ledger`.
    EslOwned,
    /// Pending shelf-label pushes (one intent per change, a re-key saga is one intent). Key
    /// sequence (u64 BE). Written only by `crate::esl::outbox`.
    EslOutbox,
    /// Each person's persistent `POOL-` article id, never reused. Key person id. Written only
    /// by `crate::esl::pool`.
    EslPool,
    /// Per device, the digest of the last complete read's list while a poll may name it to
    /// the driver instead of looking up every cached credential. Key device id. Written only
    /// by `crate::sync::listed`.
    ListedReads,
}

impl TreeName {
    /// Every tree, in a fixed order; the store opens them all at start-up so that the
    /// typed accessors never fail on a missing tree.
    pub const ALL: [TreeName; 24] = [
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
        TreeName::CatchUp,
        TreeName::Quarantine,
        TreeName::HeldEvents,
        TreeName::EslDesired,
        TreeName::EslOwned,
        TreeName::EslOutbox,
        TreeName::EslPool,
        TreeName::ListedReads,
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
            TreeName::CatchUp => "catch_up",
            TreeName::Quarantine => "quarantine",
            TreeName::HeldEvents => "held_events",
            TreeName::EslDesired => "esl_desired",
            TreeName::EslOwned => "esl_owned",
            TreeName::EslOutbox => "esl_outbox",
            TreeName::EslPool => "esl_pool",
            TreeName::ListedReads => "listed_reads",
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

    /// The module that writes `tree`: a file, or a directory for a whole module.
    fn writer(tree: TreeName) -> &'static str {
        match tree {
            TreeName::Meta => "src/store/",
            TreeName::Alarms => "src/store/alarm.rs",
            TreeName::Devices => "src/device/registry.rs",
            TreeName::Snapshots => "src/sync/snapshot.rs",
            TreeName::Buffer => "src/sync/buffer.rs",
            TreeName::Mappings => "src/sync/mapping.rs",
            TreeName::Conflicts => "src/sync/conflicts.rs",
            TreeName::Audit => "src/audit/",
            TreeName::Outbox | TreeName::DeadLetters => "src/upstream/outbox.rs",
            TreeName::Punches => "src/device/punches.rs",
            TreeName::Nonces => "src/mqtt/command/nonces.rs",
            TreeName::Alerts => "src/mqtt/alerts.rs",
            TreeName::Credentials => "src/sync/credentials.rs",
            TreeName::History => "src/sync/history.rs",
            TreeName::SyncState => "src/sync/state.rs",
            TreeName::CatchUp => "src/sync/catch_up.rs",
            TreeName::Quarantine => "src/device/quarantine.rs",
            TreeName::HeldEvents => "src/sync/guard.rs",
            TreeName::EslDesired => "src/esl/desired.rs",
            TreeName::EslOwned => "src/esl/ledger.rs",
            TreeName::EslOutbox => "src/esl/outbox.rs",
            TreeName::EslPool => "src/esl/pool.rs",
            TreeName::ListedReads => "src/sync/listed.rs",
        }
    }

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }

    /// Whether the `TreeName::` at `at` in `code` is the tree argument of a write: `insert(`,
    /// `remove(` or `remove::<T>(` right before it, or `tree(TreeName::X).insert|remove`.
    fn is_write(code: &str, at: usize) -> bool {
        let before = code[..at].trim_end_matches(|c: char| c.is_whitespace() || c == '&');
        let Some(call) = before.strip_suffix('(') else {
            return false;
        };
        let call = match call.rfind("::<") {
            Some(turbofish) if call.ends_with('>') => &call[..turbofish],
            _ => call,
        };
        if call.ends_with(".insert") || call.ends_with(".remove") {
            return true;
        }
        if call.ends_with(".tree") || call.ends_with("tree") {
            let after = &code[at..];
            let close = after.find(')').unwrap_or(0);
            let next = after[close + 1..].trim_start();
            return [".insert(", ".remove(", ".clear(", ".apply_batch("]
                .iter()
                .any(|write| next.starts_with(write));
        }
        false
    }

    #[test]
    fn each_tree_has_its_one_writer() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests write any tree they like; only production code counts.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let relative = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for (at, _) in code.match_indices("TreeName::") {
                let name: String = code[at + "TreeName::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric())
                    .collect();
                let Some(tree) = TreeName::ALL.into_iter().find(|t| format!("{t:?}") == name)
                else {
                    continue;
                };
                if is_write(code, at) && !relative.starts_with(writer(tree)) {
                    wrong.push(format!(
                        "{relative} writes {tree}, owned by {}",
                        writer(tree)
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn the_writer_check_sees_writes() {
        assert!(is_write("tx.insert(TreeName::Buffer, k, v)", 10));
        assert!(is_write("store.remove::<X>(&TreeName::Buffer, k)", 19));
        assert!(is_write("store.tree(TreeName::Meta)\n .insert(k, v)", 11));
        assert!(!is_write("store.get::<X>(TreeName::Buffer, k)", 16));
        assert!(!is_write("store.transaction(&[TreeName::Buffer], f)", 20));
    }

    #[test]
    fn on_disk_names_are_unique() {
        let names: HashSet<_> = TreeName::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), TreeName::ALL.len());
    }
}
