//! Conflicts (B3): the same device user with different attributes on the device and upstream.
//! Both versions are kept untouched until an administrator decides; the decision is applied to
//! both sides (the device side by *writing* the chosen attributes — an update, never a delete)
//! and audited with the administrator's identity.

use super::buffer::{self, BufferRecord, MappingStatus};
use super::credentials::StoreSink;
use super::credentials::{self, StoredCredential, StoredValue};
use super::mapping::{self, Mapping, MappingState};
use super::{Engine, SyncError};
use crate::audit::{self, AuditEntry, Operation};
use crate::device::{Credential, DeviceSession, FetchMode, HeldCredential, ReadSink};
use crate::events::{DeviceUser, EventBody, EventKey, PersonAttributes, Resolution};
use crate::store::{keys, Record, Store, StoreError, TreeName, Tx, TxError};
use crate::upstream::outbox;
use device_protocols::aiface::{BackupNum, CredentialValue};
use serde::{Deserialize, Serialize};

/// An open disagreement (`conflicts` tree), both versions as they were when it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// The device.
    pub device_id: String,
    /// The device's version.
    pub device: DeviceUser,
    /// The upstream's version.
    pub upstream: PersonAttributes,
    /// When it was found (UTC ms).
    pub detected_at_ms: i64,
}

impl Record for ConflictRecord {
    const KIND: &'static str = "conflict";
    const VERSION: u32 = 1;
}

/// The attributes on which a device user and an upstream person differ (empty: they agree).
pub fn differences(device: &DeviceUser, person: &PersonAttributes) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if device.name != person.name {
        fields.push("name");
    }
    if device.privilege != person.privilege {
        fields.push("privilege");
    }
    if device.card != person.card {
        fields.push("card");
    }
    fields
}

/// Every open conflict of a device (or all with `None`).
pub fn list(store: &Store, device_id: Option<&str>) -> Result<Vec<ConflictRecord>, StoreError> {
    let prefix = device_id
        .map(keys::device_prefix)
        .transpose()?
        .unwrap_or_default();
    store
        .scan_prefix::<ConflictRecord>(TreeName::Conflicts, prefix)
        .map(|entry| entry.map(|(_, conflict)| conflict))
        .collect()
}

/// An administrator's decision on one conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictDecision {
    /// Device.
    pub device_id: String,
    /// Device user id.
    pub user_id: String,
    /// Which side wins.
    pub resolution: Resolution,
    /// The attributes to write to both sides, for [`Resolution::Merge`].
    pub merged: Option<PersonAttributes>,
    /// The signed command says explicitly that the device user's privilege may go down
    /// (`lower_privilege=true`); without it a resolution that would lower a device
    /// administrator's privilege is refused.
    pub lower_privilege: bool,
    /// The admin key name that signed the command.
    pub admin: String,
    /// The signed command's nonce (stable event key).
    pub nonce: String,
}

impl Engine {
    /// Resolves a conflict: computes the winning attributes, writes them to the device when the
    /// device must change (under the device lock, `session` required then), and in one
    /// transaction closes the conflict, updates mapping and buffer, queues
    /// `ConflictResolved` and audits the decision with the admin's identity.
    pub async fn resolve_conflict<S: DeviceSession>(
        &self,
        decision: &ConflictDecision,
        session: Option<&S>,
    ) -> Result<PersonAttributes, SyncError> {
        let ConflictDecision {
            device_id,
            user_id,
            resolution,
            ..
        } = decision;
        let key = keys::device_user(device_id, user_id).map_err(StoreError::from)?;
        let conflict: ConflictRecord =
            self.store()
                .get(TreeName::Conflicts, &key)?
                .ok_or_else(|| {
                    SyncError::Refused(format!(
                        "no open conflict for user {user_id} of device {device_id}"
                    ))
                })?;
        let result = match resolution {
            Resolution::UseDevice => PersonAttributes {
                person_id: conflict.upstream.person_id.clone(),
                name: conflict.device.name.clone(),
                privilege: conflict.device.privilege,
                card: conflict.device.card.clone(),
            },
            Resolution::UseDatabase => conflict.upstream.clone(),
            Resolution::Merge => PersonAttributes {
                person_id: conflict.upstream.person_id.clone(),
                ..decision.merged.clone().ok_or_else(|| {
                    SyncError::Refused("a merge needs the attributes to write to both sides".into())
                })?
            },
        };
        let mut fencing_token = 0;
        let mut guard = None;
        if !differences(&conflict.device, &result).is_empty() {
            let session = session.ok_or_else(|| {
                SyncError::Refused(format!(
                    "resolving with {resolution:?} writes to device {device_id}, which is not connected"
                ))
            })?;
            let held = self.lock().acquire(device_id).await?;
            fencing_token = held.fencing_token();
            held.run(self.write_attributes(
                session,
                user_id,
                &conflict.device,
                &result,
                decision.lower_privilege,
            ))
            .await??;
            guard = Some(held);
        }
        let now = self.now_ms();
        let event = self.event(
            device_id,
            now,
            fencing_token,
            EventKey::command("conflict_resolved", self.agent_id(), &decision.nonce),
            EventBody::ConflictResolved {
                user_id: user_id.clone(),
                resolution: *resolution,
                result: result.clone(),
                admin: decision.admin.clone(),
            },
        );
        let events = self.outbox().prepare_all(vec![event])?;
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: now,
            operation: Operation::Resolution,
            device_id: Some(device_id.clone()),
            device_user_id: Some(user_id.clone()),
            actor: decision.admin.clone(),
            detail: format!(
                "conflict resolved with {resolution:?}: name {:?}, privilege {}, card {}",
                result.name,
                result.privilege,
                result.card.as_deref().unwrap_or("none")
            ),
        }])?;
        let trees = self.trees(&[TreeName::Buffer, TreeName::Mappings, TreeName::Conflicts]);
        self.store().transaction(&trees, |tx| {
            remove_in(tx, &key)?;
            if let Some(mut mapping) = tx.get::<Mapping>(TreeName::Mappings, &key)? {
                mapping.person = Some(result.clone());
                mapping.state = MappingState::Confirmed;
                mapping::put_in(tx, &key, &mapping)?;
            }
            let Some(mut record) = tx.get::<BufferRecord>(TreeName::Buffer, &key)? else {
                return Err(TxError::abort("the buffer record vanished"));
            };
            if record.status == MappingStatus::Conflict {
                record.status = MappingStatus::Mapped;
            }
            buffer::put_in(tx, &key, &record)?;
            outbox::enqueue_in(tx, &events)?;
            audit::append_in(tx, &audit)
        })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        drop(guard);
        Ok(result)
    }

    /// Writes name, privilege and card to the device. Name and privilege belong to the user on
    /// the device, so rewriting one held credential carries them; the card is its own slot. A
    /// card can be replaced but not removed (that would be a delete).
    /// Brings the device user to `result` with updates only, under the device lock the caller
    /// holds:
    /// - a card decided by the resolution is written as the card credential (a new value, not a
    ///   cached one), carrying the chosen name and privilege;
    /// - otherwise a name change is a rename (`setusername`), which touches no credential;
    /// - a privilege change without a card write rewrites one credential of the user with a
    ///   value read from the device in this same locked session, never from the cache;
    /// - a device administrator's privilege is lowered only when `lower_privilege` says so.
    ///
    /// A driver that cannot do one of these refuses, and nothing is recorded as resolved.
    async fn write_attributes<S: DeviceSession>(
        &self,
        session: &S,
        user_id: &str,
        device: &DeviceUser,
        result: &PersonAttributes,
        lower_privilege: bool,
    ) -> Result<(), SyncError> {
        let device_id = session.device_id().to_string();
        if device.card.is_some() && result.card.is_none() {
            return Err(SyncError::Refused(
                "the chosen attributes have no card but the device user has one; removing a \
                 credential is a delete, which the agent never does"
                    .into(),
            ));
        }
        if result.privilege < device.privilege && !lower_privilege {
            return Err(SyncError::Refused(format!(
                "user {user_id} has privilege {} on the device; the chosen attributes would \
                 lower it to {}. A device administrator's privilege is only lowered when the \
                 signed command says so explicitly (lower_privilege=true)",
                device.privilege, result.privilege
            )));
        }
        let write_error = |slot: u16| {
            let device_id = device_id.clone();
            move |source| SyncError::Write {
                device: device_id,
                user_id: user_id.to_string(),
                slot,
                source,
            }
        };
        let mut written: Option<Credential> = None;
        if result.card.is_some() && result.card != device.card {
            let card = result.card.clone().unwrap_or_default();
            let value = card
                .parse::<serde_json::Number>()
                .map(CredentialValue::Number)
                .unwrap_or(CredentialValue::Text(card));
            written = Some(Credential {
                user_id: user_id.to_string(),
                slot: BackupNum::CARD.0,
                name: result.name.clone(),
                privilege: u64::from(result.privilege),
                value,
            });
        } else if device.privilege != result.privilege {
            let mut fresh = self.read_from_device(session, user_id).await?;
            fresh.name = result.name.clone();
            fresh.privilege = u64::from(result.privilege);
            written = Some(fresh);
        } else if device.name != result.name {
            session
                .set_user_name(user_id, &result.name)
                .await
                .map_err(|source| SyncError::Write {
                    device: device_id.clone(),
                    user_id: user_id.to_string(),
                    slot: 0,
                    source,
                })?;
        }
        if let Some(credential) = &written {
            session
                .write_credential(credential)
                .await
                .map_err(write_error(credential.slot))?;
            credentials::put(
                self.store(),
                credentials::key(&device_id, user_id, credential.slot)?,
                &StoredCredential {
                    name: credential.name.clone(),
                    privilege: credential.privilege,
                    value: StoredValue::of(&credential.value),
                },
            )?;
        }
        // The device holds name and privilege per user: keep the cached credentials' copies in
        // step so the next read summarises the user as the device now has it. Only these
        // labels change in the cache; no cached value is ever written to the device.
        let mut prefix = keys::device_user(&device_id, user_id).map_err(StoreError::from)?;
        prefix.push(keys::SEPARATOR);
        let held: Vec<(Vec<u8>, StoredCredential)> = self
            .store()
            .scan_prefix::<StoredCredential>(TreeName::Credentials, &prefix)
            .collect::<Result<_, _>>()?;
        for (key, mut stored) in held {
            stored.name = result.name.clone();
            stored.privilege = u64::from(result.privilege);
            credentials::put(self.store(), key, &stored)?;
        }
        Ok(())
    }

    /// One credential of `user_id` as the device holds it now: a read in the caller's locked
    /// session that fetches this user's credentials afresh (other users' come from the cache).
    async fn read_from_device<S: DeviceSession>(
        &self,
        session: &S,
        user_id: &str,
    ) -> Result<Credential, SyncError> {
        let device_id = session.device_id();
        let mut sink = FreshUser {
            cache: StoreSink::new(self.store().clone(), device_id),
            user_id: user_id.to_string(),
            fetched: None,
        };
        let read = session.read_users(FetchMode::Missing, &mut sink).await;
        sink.cache.finish()?;
        read.map_err(|source| SyncError::Read {
            device: device_id.to_string(),
            source,
        })?;
        sink.fetched.ok_or_else(|| {
            SyncError::Refused(format!(
                "user {user_id} has no credential on device {device_id} to carry a privilege \
                 change; nothing was written"
            ))
        })
    }
}

/// A read sink that fetches one user's credentials from the device (keeping the first, the
/// lowest slot, to carry a privilege change) and lets the cache answer for everyone else.
struct FreshUser {
    cache: StoreSink,
    user_id: String,
    fetched: Option<Credential>,
}

impl ReadSink for FreshUser {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        if user_id == self.user_id {
            None
        } else {
            self.cache.held(user_id, slot)
        }
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        if credential.user_id == self.user_id
            && self
                .fetched
                .as_ref()
                .is_none_or(|kept| credential.slot < kept.slot)
        {
            self.fetched = Some(credential.clone());
        }
        self.cache.credential(credential)
    }
}

/// Writes `value` at `key` of the `conflicts` tree inside the caller's transaction: this
/// module is the tree's only writer (see `crate::store::TreeName`).
pub(crate) fn put_in(
    tx: &Tx<'_>,
    key: impl AsRef<[u8]>,
    value: &ConflictRecord,
) -> Result<(), TxError> {
    tx.insert(TreeName::Conflicts, key, value)
}

/// Removes the value at `key` of the `conflicts` tree inside the caller's transaction;
/// `true` if there was one.
pub(crate) fn remove_in(tx: &Tx<'_>, key: impl AsRef<[u8]>) -> Result<bool, TxError> {
    tx.remove(TreeName::Conflicts, key)
}
