//! Applying a complete read: diff against the last snapshot, then snapshot, buffer, conflicts,
//! history, sync state, outbox events and audit entries in **one** transaction, made durable
//! before anything is logged as done or returned to a caller that could publish it. When the
//! outbox is full the read is applied without its events and the device is marked behind for
//! a later catch-up (see `super::catch_up`).
//!
//! An incomplete read goes through [`Engine::record_incomplete`] instead, which writes one
//! audit entry and nothing else (invariant 2).
//!
//! **A big first read is applied in steps.** sled keeps every node version a transaction
//! replaces until it commits, so one transaction's memory grows faster than its write count:
//! the first read of 10,000 users (40,000 records) in one transaction peaked near 220 MB. So
//! when a device's first read (sync generation still 0) finds more new users than
//! `[monitor] first_read_chunk` (default 100), its new users are committed first in steps of
//! that many, each a self-consistent transaction: their snapshot entries, buffer records,
//! mappings, `user_discovered` events and discovery audit, and a sync state whose `users`
//! equals the snapshot's size — the generation stays 0 and no history entry is written. A
//! kill between steps leaves a consistent store that simply knows fewer users; the next read
//! diffs against that snapshot and adds the rest. The final transaction then writes the
//! remaining users (those with an open conflict or a known buffer record), the history entry,
//! the generation and `last_complete_read_ms`, as for any read. Event keys carry the
//! generation the read *will* have (1), and each user is in exactly one step, so every key is
//! unique and a replay after a kill re-derives the same key for the same fact. A step whose
//! events the outbox refuses is not taken: the rest of the read goes into the final
//! transaction, which handles a full outbox as any read does. Later reads stay one
//! transaction (their diffs are small; a device that grows by thousands at once is rare).
//! Each tree is still written only through its owner's `put_in` (see `crate::store::TreeName`).
//!
//! Cost (`cargo bench --bench sync`, release build on the development box): a 10,000-user
//! device with 1% churn applies in about 0.25 s and adds ~3 MB to the resident set; a poll
//! with no change, ~20 ms. The first read's peak is in the README (performance and limits).

use super::buffer::{self, credential_summary, BufferRecord, MappingStatus};
use super::catch_up;
use super::clock::format_ms;
use super::conflicts::{self, ConflictRecord};
use super::diff::{self, Diff};
use super::guard;
use super::history::{self, HistoryEntry};
use super::listed::NamedList;
use super::mapping::{self, MappingState};
use super::snapshot::{self, SnapshotDigest, SnapshotUser};
use super::state::{self, SyncState};
use super::{Engine, SyncError};
use crate::audit::{self, AuditEntry, Operation};
use crate::device::{ListedAsBefore, ReadError, UserRead};
use crate::events::{Event, EventBody, EventKey, PersonAttributes};
use crate::store::{keys, StoreError, TreeName, Tx, TxError};
use crate::upstream::outbox;
use std::collections::HashMap;

/// A user that vanished between two complete reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingUser {
    /// Device user id.
    pub user_id: String,
    /// Name as last read.
    pub name: String,
    /// The last complete read that found the user (UTC ms).
    pub last_seen_at_ms: i64,
}

/// What applying one complete read changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The read generation this read became.
    pub generation: u64,
    /// Users the read found.
    pub users: usize,
    /// Users seen for the first time.
    pub discovered: Vec<String>,
    /// Users back after being missing.
    pub reappeared: Vec<String>,
    /// Users whose attributes or credentials changed.
    pub changed: Vec<String>,
    /// Users gone since the previous complete read.
    pub missing: Vec<MissingUser>,
    /// Users now in conflict with their upstream person.
    pub conflicts: Vec<String>,
}

/// How one appeared user is classified before the transaction.
enum Appearance {
    /// Never buffered.
    New,
    /// Buffered as missing since this time.
    Back { missing_since_ms: i64 },
    /// Buffered and not missing, yet absent from the snapshot (a store rebuilt around an older
    /// buffer): updated quietly.
    Known,
}

/// Everything decided before the transaction, so the closure (which sled may retry) only
/// writes.
struct Plan {
    device_id: String,
    /// The store epoch, part of every event key.
    epoch: String,
    now_ms: i64,
    previous: SyncState,
    diff: Diff,
    appearances: Vec<Appearance>,
    missing: Vec<MissingUser>,
    new_conflicts: HashMap<String, PersonAttributes>,
    /// Users earlier steps of this same first read put in the snapshot before a restart
    /// (generation still 0): its history entry counts them as added too.
    stepped_before: Vec<String>,
    /// The digest of the snapshot this read leaves, kept in the sync state by the final
    /// commit.
    digest: SnapshotDigest,
    /// Whether the last snapshot was loaded to diff against (false: the digests matched).
    snapshot_loaded: bool,
    /// Whether the device listed exactly the last read's list and the read was applied
    /// without its users (see [`Engine::apply_listed_as_before`]).
    listed_as_before: bool,
}

impl Plan {
    /// A plan for one step of a first read: only `users`, all new, nothing else.
    fn step(&self, users: Vec<SnapshotUser>) -> Plan {
        Plan {
            device_id: self.device_id.clone(),
            epoch: self.epoch.clone(),
            now_ms: self.now_ms,
            previous: self.previous.clone(),
            appearances: users.iter().map(|_| Appearance::New).collect(),
            diff: Diff {
                appeared: users,
                ..Diff::default()
            },
            missing: Vec::new(),
            new_conflicts: HashMap::new(),
            stepped_before: Vec::new(),
            digest: self.digest,
            snapshot_loaded: self.snapshot_loaded,
            listed_as_before: self.listed_as_before,
        }
    }
}

impl Engine {
    /// Applies a complete, checked read of `device_id` taken under a lock with
    /// `fencing_token`; see the module docs.
    pub async fn apply_read(
        &self,
        device_id: &str,
        read: &UserRead,
        fencing_token: u64,
    ) -> Result<Applied, SyncError> {
        let plan = self.plan(device_id, read)?;
        self.apply_plan(plan, read, read.users.len(), fencing_token)
            .await
    }

    /// Applies a poll whose device listed exactly `named`'s list again (see
    /// [`crate::device::PolledUsers`]): a complete read whose users are the snapshot `named`
    /// stands for, so it is applied as a read equal to that snapshot — a new generation, its
    /// history entry and `last_complete_read_ms`, no user change — without the users in
    /// memory. Refused, changing nothing, when the snapshot or the upstream moved since the
    /// poll named the list (it cannot under the device lock; checked all the same).
    pub(super) async fn apply_listed_as_before(
        &self,
        device_id: &str,
        named: NamedList,
        listed: &ListedAsBefore,
        fencing_token: u64,
    ) -> Result<Applied, SyncError> {
        let store = self.store();
        let previous = state::load(store, device_id)?;
        if previous.snapshot_digest != Some(named.snapshot)
            || catch_up::load(store, device_id)?.is_some()
        {
            return Err(SyncError::Refused(format!(
                "{device_id}: the snapshot or the upstream moved since the poll named the last \
                 list; the next poll reads in full"
            )));
        }
        let users = previous.users as usize;
        let plan = Plan {
            device_id: device_id.to_string(),
            epoch: store.epoch()?.id,
            now_ms: self.now_ms(),
            previous,
            diff: Diff {
                unchanged: users,
                ..Diff::default()
            },
            appearances: Vec::new(),
            missing: Vec::new(),
            new_conflicts: HashMap::new(),
            stepped_before: Vec::new(),
            digest: named.snapshot,
            snapshot_loaded: false,
            listed_as_before: true,
        };
        // Only its counts: with no catch-up pending (checked above) nothing reads its users.
        let read = UserRead {
            device_user_count: listed.device_user_count,
            credentials_listed: listed.credentials_listed,
            ..UserRead::default()
        };
        self.apply_plan(plan, &read, users, fencing_token).await
    }

    /// The transaction of a complete read (see the module docs) for a plan already made;
    /// `users` is how many users the read found.
    async fn apply_plan(
        &self,
        mut plan: Plan,
        read: &UserRead,
        users: usize,
        fencing_token: u64,
    ) -> Result<Applied, SyncError> {
        let device_id = plan.device_id.clone();
        let device_id = device_id.as_str();
        let generation = plan.previous.generation + 1;
        let stepped = self
            .apply_new_users_in_steps(&mut plan, generation, fencing_token)
            .await?;
        let (events, mut audit) = self.describe(&plan, generation, fencing_token);
        let guarded = self.guard_missing(
            device_id,
            plan.previous.users,
            users as u64,
            events,
            &mut audit,
            plan.now_ms,
        );
        let outcome = catch_up::ReadOutcome {
            device_id,
            epoch: &plan.epoch,
            generation,
            now_ms: plan.now_ms,
            fencing_token,
            read,
            newly_missing: &plan.missing,
            held_now: &guarded.held,
        };
        // A full outbox withholds the events, never the read (see `catch_up`).
        let outgoing = self.outgoing(&outcome, guarded.forward, &mut audit)?;
        let events = outgoing.events;
        let audit = self.audit().prepare(audit)?;
        let trees = self.trees(&[
            TreeName::CatchUp,
            TreeName::Snapshots,
            TreeName::Buffer,
            TreeName::Mappings,
            TreeName::Conflicts,
            TreeName::History,
            TreeName::SyncState,
            TreeName::HeldEvents,
        ]);
        let history_key = history::key(device_id, generation)?;
        let entry = HistoryEntry {
            generation,
            read_at_ms: plan.now_ms,
            users: users as u64,
            device_user_count: read.device_user_count,
            added: plan
                .stepped_before
                .iter()
                .cloned()
                .chain(
                    stepped
                        .iter()
                        .chain(&plan.diff.appeared)
                        .map(|u| u.user.user_id.clone()),
                )
                .collect(),
            missing: plan.missing.iter().map(|u| u.user_id.clone()).collect(),
            changed: plan
                .diff
                .changed
                .iter()
                .map(|(_, u)| u.user.user_id.clone())
                .collect(),
        };
        let new_state = SyncState {
            generation,
            last_complete_read_ms: Some(plan.now_ms),
            users: users as u64,
            snapshot_digest: Some(plan.digest),
            ..plan.previous.clone()
        };
        self.store().transaction(&trees, |tx| {
            state_unchanged_since(tx, device_id, plan.previous.generation)?;
            write_appeared(tx, &plan)?;
            write_changed(tx, &plan)?;
            write_missing(tx, &plan)?;
            guard::hold_in(tx, device_id, &guarded.held, plan.now_ms)?;
            let back = plan.diff.appeared.iter().map(|u| u.user.user_id.as_str());
            guard::release_returned_in(tx, device_id, back)?;
            history::put_in(tx, &history_key, &entry)?;
            state::put_in(tx, device_id.as_bytes(), &new_state)?;
            catch_up::put_in(tx, device_id, outgoing.behind.as_ref())?;
            outbox::enqueue_in(tx, &events)?;
            audit::append_in(tx, &audit)
        })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        if !guarded.held.is_empty() {
            self.alarm_mass_missing(device_id, guarded.held.len(), plan.previous.users)
                .await?;
        }

        let mut applied = summarise(&plan, generation, users);
        if !stepped.is_empty() {
            let mut discovered: Vec<String> =
                stepped.iter().map(|u| u.user.user_id.clone()).collect();
            discovered.append(&mut applied.discovered);
            applied.discovered = discovered;
        }
        report(device_id, &applied, &plan);
        if !plan.diff.is_empty() || !stepped.is_empty() || !applied.conflicts.is_empty() {
            self.announce(device_id, &applied);
        }
        Ok(applied)
    }

    /// Commits a big first read's new users in steps of `first_read_chunk` (see the module
    /// docs), removes them from `plan` and returns them; returns nothing and leaves `plan`
    /// whole when the read is not a first read, is small, or the device is behind upstream.
    async fn apply_new_users_in_steps(
        &self,
        plan: &mut Plan,
        generation: u64,
        fencing_token: u64,
    ) -> Result<Vec<SnapshotUser>, SyncError> {
        let chunk = self.first_read_chunk();
        let steppable = |(user, appearance): &(&SnapshotUser, &Appearance)| {
            matches!(appearance, Appearance::New)
                && !plan.new_conflicts.contains_key(&user.user.user_id)
        };
        let candidates = plan
            .diff
            .appeared
            .iter()
            .zip(&plan.appearances)
            .filter(steppable)
            .count();
        if chunk == 0
            || plan.previous.generation != 0
            || candidates <= chunk
            || catch_up::load(self.store(), &plan.device_id)?.is_some()
        {
            return Ok(Vec::new());
        }
        let mut steps = Vec::new();
        let mut rest = Vec::new();
        for pair in plan.diff.appeared.drain(..).zip(plan.appearances.drain(..)) {
            if steppable(&(&pair.0, &pair.1)) {
                steps.push(pair.0);
            } else {
                rest.push(pair);
            }
        }
        let mut stepped = Vec::with_capacity(steps.len());
        let mut pending = steps.into_iter().peekable();
        while pending.peek().is_some() {
            let users: Vec<SnapshotUser> = pending.by_ref().take(chunk).collect();
            let step = plan.step(users);
            if !self.commit_step(&step, generation, fencing_token).await? {
                // The outbox refused the step: the rest goes into the final transaction.
                rest.extend(step.diff.appeared.into_iter().map(|u| (u, Appearance::New)));
                rest.extend(pending.by_ref().map(|u| (u, Appearance::New)));
                break;
            }
            stepped.extend(step.diff.appeared);
        }
        (plan.diff.appeared, plan.appearances) = rest.into_iter().unzip();
        if stepped.is_empty() {
            return Ok(stepped);
        }
        tracing::info!(
            device = plan.device_id.as_str(),
            users = stepped.len(),
            chunk,
            "first read: new users committed in steps"
        );
        Ok(stepped)
    }

    /// Commits one step of a first read (a plan holding only new users) and makes it durable.
    /// Returns false, having changed nothing, when the outbox has no room for its events.
    async fn commit_step(
        &self,
        step: &Plan,
        generation: u64,
        fencing_token: u64,
    ) -> Result<bool, SyncError> {
        let (events, audit) = self.describe(step, generation, fencing_token);
        let events = match self.outbox().prepare_all(events) {
            Ok(events) => events,
            Err(outbox::OutboxError::Full { .. }) => return Ok(false),
            Err(other) => return Err(other.into()),
        };
        let audit = self.audit().prepare(audit)?;
        let trees = self.trees(&[
            TreeName::Snapshots,
            TreeName::Buffer,
            TreeName::Mappings,
            TreeName::Conflicts,
            TreeName::SyncState,
        ]);
        let device_id = step.device_id.as_str();
        let added = step.diff.appeared.len() as u64;
        self.store().transaction(&trees, |tx| {
            let current = state_unchanged_since(tx, device_id, step.previous.generation)?;
            write_appeared(tx, step)?;
            let state = SyncState {
                users: current.users + added,
                // The snapshot is part-way: no digest stands for it until the final commit.
                snapshot_digest: None,
                ..current
            };
            state::put_in(tx, device_id.as_bytes(), &state)?;
            outbox::enqueue_in(tx, &events)?;
            audit::append_in(tx, &audit)
        })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        tracing::info!(
            device = device_id,
            users = added,
            "first-read step committed"
        );
        Ok(true)
    }

    /// Records an incomplete read: one audit entry, made durable; nothing else changes.
    pub async fn record_incomplete(
        &self,
        device_id: &str,
        error: &ReadError,
    ) -> Result<(), SyncError> {
        tracing::warn!(
            device = device_id,
            %error,
            "read incomplete: nothing changed, and no user is considered gone"
        );
        self.audit_now(
            device_id,
            None,
            Operation::ReadIncomplete,
            "agent",
            format!("{error}; snapshot and buffer unchanged"),
        )
        .await
    }

    /// Writes one audit entry on its own and makes it durable. An empty `device_id` records an
    /// agent-wide entry (no device).
    pub async fn audit_now(
        &self,
        device_id: &str,
        user_id: Option<&str>,
        operation: Operation,
        actor: &str,
        detail: String,
    ) -> Result<(), SyncError> {
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: self.now_ms(),
            operation,
            device_id: (!device_id.is_empty()).then(|| device_id.to_string()),
            device_user_id: user_id.map(str::to_string),
            actor: actor.to_string(),
            detail,
        }])?;
        self.store()
            .transaction(&[TreeName::Audit], |tx| audit::append_in(tx, &audit))?;
        self.store().make_durable().await?;
        Ok(())
    }

    fn plan(&self, device_id: &str, read: &UserRead) -> Result<Plan, SyncError> {
        let store = self.store();
        let previous = state::load(store, device_id)?;
        let digest = SnapshotDigest::of_read(&read.users)?;
        // Same digest: the read found exactly the last snapshot, so it is not loaded (see
        // `SnapshotDigest`); a steady poll then never walks the snapshot tree.
        let previous_snapshot = if previous.snapshot_digest == Some(digest) {
            None
        } else {
            Some(snapshot::load(store, device_id)?)
        };
        let diff = match &previous_snapshot {
            Some(snapshot) => diff::diff(snapshot, &read.users),
            None => Diff {
                unchanged: read.users.len(),
                ..Diff::default()
            },
        };
        let now_ms = self.now_ms();
        let mut appearances = Vec::with_capacity(diff.appeared.len());
        let mut new_conflicts = HashMap::new();
        for user in &diff.appeared {
            let key = keys::device_user(device_id, &user.user.user_id).map_err(StoreError::from)?;
            let appearance = match store.get::<BufferRecord>(TreeName::Buffer, &key)? {
                None => Appearance::New,
                Some(record) if record.status == MappingStatus::Missing => Appearance::Back {
                    missing_since_ms: record.missing_since_ms.unwrap_or(record.last_seen_at_ms),
                },
                Some(_) => Appearance::Known,
            };
            appearances.push(appearance);
        }
        let touched = diff
            .appeared
            .iter()
            .chain(diff.changed.iter().map(|(_, after)| after));
        for user in touched {
            if let Some(person) = self.conflicting_person(device_id, user)? {
                new_conflicts.insert(user.user.user_id.clone(), person);
            }
        }
        let mut missing = Vec::with_capacity(diff.missing.len());
        for user in &diff.missing {
            let key = keys::device_user(device_id, &user.user.user_id).map_err(StoreError::from)?;
            let last_seen = match store.get::<BufferRecord>(TreeName::Buffer, &key)? {
                Some(record) => record.last_seen_at_ms(&previous),
                None => previous.last_complete_read_ms.unwrap_or(now_ms),
            };
            missing.push(MissingUser {
                user_id: user.user.user_id.clone(),
                name: user.user.name.clone(),
                last_seen_at_ms: last_seen,
            });
        }
        let snapshot_loaded = previous_snapshot.is_some();
        let stepped_before = match previous_snapshot {
            Some(snapshot) if previous.generation == 0 => snapshot.into_keys().collect(),
            _ => Vec::new(),
        };
        Ok(Plan {
            device_id: device_id.to_string(),
            epoch: store.epoch()?.id,
            now_ms,
            previous,
            diff,
            appearances,
            missing,
            new_conflicts,
            stepped_before,
            digest,
            snapshot_loaded,
            listed_as_before: false,
        })
    }

    /// The upstream person a confirmed mapping links `user` to, when it now disagrees with the
    /// device and no conflict is open yet.
    fn conflicting_person(
        &self,
        device_id: &str,
        user: &SnapshotUser,
    ) -> Result<Option<PersonAttributes>, SyncError> {
        let Some(mapping) = mapping::get(self.store(), device_id, &user.user.user_id)? else {
            return Ok(None);
        };
        let Some(person) = mapping
            .person
            .filter(|_| mapping.state == MappingState::Confirmed)
        else {
            return Ok(None);
        };
        let key = keys::device_user(device_id, &user.user.user_id).map_err(StoreError::from)?;
        let open = self
            .store()
            .get::<ConflictRecord>(TreeName::Conflicts, &key)?
            .is_some();
        Ok((!open && !conflicts::differences(&user.user, &person).is_empty()).then_some(person))
    }

    /// The events and audit entries a plan produces.
    fn describe(
        &self,
        plan: &Plan,
        generation: u64,
        fencing_token: u64,
    ) -> (Vec<Event>, Vec<AuditEntry>) {
        let device = plan.device_id.as_str();
        let now = plan.now_ms;
        let mut events = Vec::new();
        let mut audit = Vec::new();
        let key = |kind: &str, user: &str| {
            EventKey::user_change(kind, self.agent_id(), device, user, &plan.epoch, generation)
        };
        let entry = |operation, user: &str, detail: String| AuditEntry {
            at_unix_ms: now,
            operation,
            device_id: Some(device.to_string()),
            device_user_id: Some(user.to_string()),
            actor: "agent".to_string(),
            detail,
        };
        for (user, appearance) in plan.diff.appeared.iter().zip(&plan.appearances) {
            let id = &user.user.user_id;
            match appearance {
                Appearance::New => {
                    events.push(self.event(
                        device,
                        now,
                        fencing_token,
                        key("user_discovered", id),
                        EventBody::UserDiscovered(user.user.clone()),
                    ));
                    audit.push(entry(
                        Operation::Discovery,
                        id,
                        format!(
                            "first seen (read #{generation}), name {:?}, credentials: {}; \
                             buffered as unmapped",
                            user.user.name,
                            credential_summary(&user.user)
                        ),
                    ));
                }
                Appearance::Back { missing_since_ms } => {
                    events.push(self.event(
                        device,
                        now,
                        fencing_token,
                        key("user_reappeared", id),
                        EventBody::UserReappeared {
                            user: user.user.clone(),
                            missing_since_ms: *missing_since_ms,
                        },
                    ));
                    audit.push(entry(
                        Operation::Reappeared,
                        id,
                        format!(
                            "back on the device (read #{generation}) after missing since {}",
                            format_ms(*missing_since_ms)
                        ),
                    ));
                }
                Appearance::Known => {}
            }
        }
        for (before, after) in &plan.diff.changed {
            let id = &after.user.user_id;
            events.push(self.event(
                device,
                now,
                fencing_token,
                key("user_changed", id),
                EventBody::UserChanged {
                    before: before.user.clone(),
                    after: after.user.clone(),
                },
            ));
            audit.push(entry(
                Operation::Changed,
                id,
                format!(
                    "changed on the device (read #{generation}): {}",
                    change_summary(before, after)
                ),
            ));
        }
        for (user, gone) in plan.diff.missing.iter().zip(&plan.missing) {
            events.push(self.event(
                device,
                now,
                fencing_token,
                key("user_missing", &gone.user_id),
                EventBody::UserMissing {
                    user: user.user.clone(),
                    last_seen_at_ms: gone.last_seen_at_ms,
                },
            ));
            audit.push(entry(
                Operation::Missing,
                &gone.user_id,
                format!(
                    "absent from complete read #{generation}; last seen {}; kept in the buffer \
                     as missing (the agent sent no delete)",
                    format_ms(gone.last_seen_at_ms)
                ),
            ));
        }
        let mut conflicted: Vec<_> = plan.new_conflicts.iter().collect();
        conflicted.sort_by(|a, b| a.0.cmp(b.0));
        for (id, person) in conflicted {
            let device_user = plan
                .diff
                .appeared
                .iter()
                .chain(plan.diff.changed.iter().map(|(_, after)| after))
                .find(|u| &u.user.user_id == id)
                .map(|u| u.user.clone())
                .unwrap_or_default();
            audit.push(entry(
                Operation::Conflict,
                id,
                format!(
                    "device and upstream person {} differ in {}; both versions kept",
                    person.person_id,
                    conflicts::differences(&device_user, person).join(", ")
                ),
            ));
            events.push(self.event(
                device,
                now,
                fencing_token,
                key("conflict_detected", id),
                EventBody::ConflictDetected {
                    device: device_user,
                    upstream: person.clone(),
                },
            ));
        }
        (events, audit)
    }
}

/// The device's sync state inside `tx`, or an abort when another read of the device was applied
/// after this one was planned against generation `planned`: two reads planned against the same
/// snapshot never both apply.
fn state_unchanged_since(tx: &Tx<'_>, device_id: &str, planned: u64) -> Result<SyncState, TxError> {
    let current: SyncState = tx
        .get(TreeName::SyncState, device_id.as_bytes())?
        .unwrap_or_default();
    if current.generation != planned {
        return Err(TxError::abort(format!(
            "another read of {device_id} was applied meanwhile (generation {} instead of \
             {planned}); this read is dropped and the next poll compares afresh",
            current.generation
        )));
    }
    Ok(current)
}

fn write_appeared(tx: &Tx<'_>, plan: &Plan) -> Result<(), TxError> {
    for (user, appearance) in plan.diff.appeared.iter().zip(&plan.appearances) {
        let key = user_key(plan, &user.user.user_id)?;
        snapshot::put_in(tx, &key, user)?;
        let record = match (appearance, tx.get::<BufferRecord>(TreeName::Buffer, &key)?) {
            (Appearance::New, _) | (_, None) => {
                let record = BufferRecord::discovered(
                    &plan.device_id,
                    user.user.clone(),
                    user.slots.clone(),
                    plan.now_ms,
                );
                mapping::link_discovered(tx, &key, record)?
            }
            (_, Some(mut record)) => {
                record.user = user.user.clone();
                record.slots = user.slots.clone();
                record.last_seen_at_ms = plan.now_ms;
                record.missing_since_ms = None;
                record.status = settled_status(tx, &key)?;
                record
            }
        };
        write_buffer(tx, plan, &key, record)?;
    }
    Ok(())
}

fn write_changed(tx: &Tx<'_>, plan: &Plan) -> Result<(), TxError> {
    for (_, after) in &plan.diff.changed {
        let key = user_key(plan, &after.user.user_id)?;
        snapshot::put_in(tx, &key, after)?;
        let mut record = tx
            .get::<BufferRecord>(TreeName::Buffer, &key)?
            .unwrap_or_else(|| {
                BufferRecord::discovered(
                    &plan.device_id,
                    after.user.clone(),
                    after.slots.clone(),
                    plan.now_ms,
                )
            });
        record.user = after.user.clone();
        record.slots = after.slots.clone();
        record.last_seen_at_ms = plan.now_ms;
        write_buffer(tx, plan, &key, record)?;
    }
    Ok(())
}

/// Writes a buffer record, recording a new conflict for it if the plan found one.
fn write_buffer(
    tx: &Tx<'_>,
    plan: &Plan,
    key: &[u8],
    mut record: BufferRecord,
) -> Result<(), TxError> {
    if let Some(person) = plan.new_conflicts.get(&record.user.user_id) {
        let conflict = ConflictRecord {
            device_id: plan.device_id.clone(),
            device: record.user.clone(),
            upstream: person.clone(),
            detected_at_ms: plan.now_ms,
        };
        conflicts::put_in(tx, key, &conflict)?;
        record.status = MappingStatus::Conflict;
    }
    buffer::put_in(tx, key, &record)
}

fn write_missing(tx: &Tx<'_>, plan: &Plan) -> Result<(), TxError> {
    for gone in &plan.missing {
        let key = user_key(plan, &gone.user_id)?;
        snapshot::remove_in(tx, &key)?;
        if let Some(mut record) = tx.get::<BufferRecord>(TreeName::Buffer, &key)? {
            record.status = MappingStatus::Missing;
            record.last_seen_at_ms = gone.last_seen_at_ms;
            record.missing_since_ms = Some(plan.now_ms);
            buffer::put_in(tx, &key, &record)?;
        }
    }
    Ok(())
}

/// The status of a user back on the device, from its mapping and open conflict.
fn settled_status(tx: &Tx<'_>, key: &[u8]) -> Result<MappingStatus, TxError> {
    let open_conflict = tx
        .get::<ConflictRecord>(TreeName::Conflicts, key)?
        .is_some();
    let mapping = tx.get::<mapping::Mapping>(TreeName::Mappings, key)?;
    let confirmed = mapping.map(|m| m.state == MappingState::Confirmed);
    Ok(MappingStatus::of_present(open_conflict, confirmed))
}

fn user_key(plan: &Plan, user_id: &str) -> Result<Vec<u8>, TxError> {
    keys::device_user(&plan.device_id, user_id).map_err(|err| TxError::abort(err.to_string()))
}

/// What changed between two versions of a user, in words.
fn change_summary(before: &SnapshotUser, after: &SnapshotUser) -> String {
    let (b, a) = (&before.user, &after.user);
    let mut parts = Vec::new();
    if b.name != a.name {
        parts.push(format!("name {:?} → {:?}", b.name, a.name));
    }
    if b.privilege != a.privilege {
        parts.push(format!("privilege {} → {}", b.privilege, a.privilege));
    }
    if b.card != a.card {
        parts.push(format!(
            "card {} → {}",
            b.card.as_deref().unwrap_or("none"),
            a.card.as_deref().unwrap_or("none")
        ));
    }
    if before.slots != after.slots {
        parts.push(format!(
            "credentials {} → {}",
            credential_summary(b),
            credential_summary(a)
        ));
    }
    if parts.is_empty() {
        "credential slots".to_string()
    } else {
        parts.join("; ")
    }
}

fn summarise(plan: &Plan, generation: u64, users: usize) -> Applied {
    let mut applied = Applied {
        generation,
        users,
        missing: plan.missing.clone(),
        changed: plan
            .diff
            .changed
            .iter()
            .map(|(_, u)| u.user.user_id.clone())
            .collect(),
        ..Applied::default()
    };
    for (user, appearance) in plan.diff.appeared.iter().zip(&plan.appearances) {
        let id = user.user.user_id.clone();
        match appearance {
            Appearance::Back { .. } => applied.reappeared.push(id),
            Appearance::New | Appearance::Known => applied.discovered.push(id),
        }
    }
    applied.conflicts = plan.new_conflicts.keys().cloned().collect();
    applied.conflicts.sort();
    applied
}

/// Logs what a durable read changed; the missing-user warning names every id with its
/// last-seen time (B4).
/// Logs what a read changed; `snapshot_loaded` false says the read was recognised as unchanged
/// by its digest (what keeps a steady poll from walking the snapshot tree).
fn report(device_id: &str, applied: &Applied, plan: &Plan) {
    if !applied.missing.is_empty() {
        let named: Vec<String> = applied
            .missing
            .iter()
            .map(|u| format!("{} (last seen {})", u.user_id, format_ms(u.last_seen_at_ms)))
            .collect();
        tracing::warn!(
            device = device_id,
            count = applied.missing.len(),
            generation = applied.generation,
            "users vanished from the device between two complete reads: {}; they stay in the \
             buffer as missing and an alert was queued",
            named.join(", ")
        );
    }
    if !applied.reappeared.is_empty() {
        tracing::info!(device = device_id, users = ?applied.reappeared, "missing users are back on the device");
    }
    tracing::info!(
        device = device_id,
        generation = applied.generation,
        users = applied.users,
        discovered = applied.discovered.len(),
        changed = applied.changed.len(),
        missing = applied.missing.len(),
        reappeared = applied.reappeared.len(),
        snapshot_loaded = plan.snapshot_loaded,
        listed_as_before = plan.listed_as_before,
        "complete read applied"
    );
}
