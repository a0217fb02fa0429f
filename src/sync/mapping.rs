//! Mappings (B2): which upstream person a device user is. Requested by an administrator's `map`
//! command, confirmed (or refused) by the upstream, which also feeds mappings made on its side
//! through incremental pulls. The buffer shows a mapping as `pending` until the upstream
//! confirms the person exists, and as `mapped` only then.
//!
//! This module is the only writer of the `mappings` tree. The upstream puller hands each pulled
//! page to the engine through [`MappingSink`], which applies it here.

use super::buffer::{self, BufferRecord, MappingStatus};
use super::conflicts::{self, ConflictRecord};
use super::{Engine, SyncError};
use crate::audit::{self, AuditEntry, Operation};
use crate::events::{Event, EventBody, EventKey, PersonAttributes};
use crate::store::{keys, Record, StoreError, TreeName, Tx, TxError};
use crate::upstream::mapping::{MappingSink, PulledMapping, SinkError};
use crate::upstream::outbox;
use crate::upstream::persons::PendingPerson;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Notify;

/// Where a mapping stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MappingState {
    /// Requested; the upstream has not confirmed the person yet.
    Pending,
    /// The upstream confirmed the person.
    Confirmed,
}

/// The link of one device user to an upstream person (`mappings` tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Upstream person id.
    pub person_id: String,
    /// Pending or confirmed.
    pub state: MappingState,
    /// Who asked (`upstream` for mappings pulled from the upstream).
    pub requested_by: String,
    /// When it was requested (UTC ms).
    pub requested_at_ms: i64,
    /// When the upstream confirmed it (UTC ms).
    pub confirmed_at_ms: Option<i64>,
    /// The person's attributes as the upstream last gave them (compared with the device).
    pub person: Option<PersonAttributes>,
}

impl Record for Mapping {
    const KIND: &'static str = "mapping";
    const VERSION: u32 = 1;
}

/// What the upstream says about one device user's person (delivered by the upstream pull).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingUpdate {
    /// The person exists and is linked to this device user, with these attributes.
    Confirmed {
        /// Device.
        device_id: String,
        /// Device user id.
        user_id: String,
        /// The person as the upstream holds it.
        person: PersonAttributes,
    },
    /// The requested person does not exist; the request is dropped.
    PersonNotFound {
        /// Device.
        device_id: String,
        /// Device user id.
        user_id: String,
        /// The person id that was asked for.
        person_id: String,
    },
    /// The upstream removed the link between the device user and this person.
    Removed {
        /// Device.
        device_id: String,
        /// Device user id.
        user_id: String,
        /// The person the user was linked to.
        person_id: String,
    },
}

impl From<PulledMapping> for MappingUpdate {
    fn from(pulled: PulledMapping) -> Self {
        if pulled.removed {
            MappingUpdate::Removed {
                device_id: pulled.device_id,
                user_id: pulled.user_id,
                person_id: pulled.person.person_id,
            }
        } else {
            MappingUpdate::Confirmed {
                device_id: pulled.device_id,
                user_id: pulled.user_id,
                person: pulled.person,
            }
        }
    }
}

/// What applying an upstream mapping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingOutcome {
    /// Now mapped.
    Mapped,
    /// Device and upstream disagree; a conflict was recorded.
    Conflict,
    /// The mapping was dropped (person not found, or the link removed upstream).
    Dropped,
    /// The device user has not been read yet: the mapping is kept in the `mappings` tree and
    /// links the user when a complete read first finds it (a removal drops the kept one).
    KeptForUnreadUser,
}

impl Engine {
    /// An administrator's `map`: links a buffered user to a person, `pending` until the upstream
    /// confirms the person. `nonce` is the signed command's nonce (stable event key).
    pub async fn request_mapping(
        &self,
        device_id: &str,
        user_id: &str,
        person_id: &str,
        admin: &str,
        nonce: &str,
    ) -> Result<(), SyncError> {
        let key = keys::device_user(device_id, user_id).map_err(StoreError::from)?;
        if self
            .store()
            .get::<BufferRecord>(TreeName::Buffer, &key)?
            .is_none()
        {
            return Err(SyncError::Refused(format!(
                "user {user_id} of device {device_id} is not in the buffer; map only users the \
                 agent has read from the device"
            )));
        }
        let now = self.now_ms();
        let event = Event {
            key: EventKey::command("mapping_requested", self.agent_id(), nonce),
            agent_id: self.agent_id().to_string(),
            device_id: device_id.to_string(),
            occurred_at_ms: now,
            clock_synchronized: self.clock_synchronized(),
            fencing_token: 0,
            body: EventBody::MappingRequested {
                user_id: user_id.to_string(),
                person_id: person_id.to_string(),
                admin: admin.to_string(),
            },
        };
        let events = self.outbox().prepare_all(vec![event])?;
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: now,
            operation: Operation::Mapping,
            device_id: Some(device_id.to_string()),
            device_user_id: Some(user_id.to_string()),
            actor: admin.to_string(),
            detail: format!("map requested to person {person_id}; pending upstream confirmation"),
        }])?;
        let mapping = Mapping {
            person_id: person_id.to_string(),
            state: MappingState::Pending,
            requested_by: admin.to_string(),
            requested_at_ms: now,
            confirmed_at_ms: None,
            person: None,
        };
        self.store()
            .transaction(&self.trees(&[TreeName::Buffer, TreeName::Mappings]), |tx| {
                let Some(mut record) = tx.get::<BufferRecord>(TreeName::Buffer, &key)? else {
                    return Err(TxError::abort("the buffer record vanished"));
                };
                record.person_id = Some(person_id.to_string());
                if record.status != MappingStatus::Missing
                    && record.status != MappingStatus::Conflict
                {
                    record.status = MappingStatus::Pending;
                }
                buffer::put_in(tx, &key, &record)?;
                put_in(tx, &key, &mapping)?;
                outbox::enqueue_in(tx, &events)?;
                audit::append_in(tx, &audit)
            })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        self.person_requests().notify_one();
        Ok(())
    }

    /// Applies what the upstream says about mappings (its incremental pull) and makes it
    /// durable. A confirmed person whose attributes differ from the device user's becomes a
    /// conflict, both versions kept.
    pub async fn apply_upstream_mapping(
        &self,
        update: &MappingUpdate,
    ) -> Result<MappingOutcome, SyncError> {
        let outcome = self.write_upstream_mapping(update)?;
        self.store().make_durable().await?;
        Ok(outcome)
    }

    /// [`Engine::apply_upstream_mapping`] without the durability call, so a page of updates
    /// is made durable once.
    fn write_upstream_mapping(&self, update: &MappingUpdate) -> Result<MappingOutcome, SyncError> {
        let (device_id, user_id) = match update {
            MappingUpdate::Confirmed {
                device_id, user_id, ..
            }
            | MappingUpdate::PersonNotFound {
                device_id, user_id, ..
            }
            | MappingUpdate::Removed {
                device_id, user_id, ..
            } => (device_id.as_str(), user_id.as_str()),
        };
        let key = keys::device_user(device_id, user_id).map_err(StoreError::from)?;
        let Some(record) = self.store().get::<BufferRecord>(TreeName::Buffer, &key)? else {
            self.keep_for_unread_user(update, &key)?;
            return Ok(MappingOutcome::KeptForUnreadUser);
        };
        let now = self.now_ms();
        let state = super::state::load(self.store(), device_id)?;
        let (outcome, events, audit_detail) = match update {
            MappingUpdate::PersonNotFound { person_id, .. } => (
                MappingOutcome::Dropped,
                Vec::new(),
                format!("upstream has no person {person_id}; mapping request dropped"),
            ),
            MappingUpdate::Removed { person_id, .. } => (
                MappingOutcome::Dropped,
                Vec::new(),
                format!("upstream removed the link to person {person_id}; mapping dropped"),
            ),
            MappingUpdate::Confirmed { person, .. } => {
                let differences = conflicts::differences(&record.user, person);
                if differences.is_empty() {
                    (
                        MappingOutcome::Mapped,
                        Vec::new(),
                        format!("mapped to person {} (confirmed upstream)", person.person_id),
                    )
                } else {
                    let event = self.event(
                        device_id,
                        now,
                        0,
                        EventKey::user_change(
                            "conflict_detected",
                            self.agent_id(),
                            device_id,
                            user_id,
                            &self.store().epoch()?.id,
                            state.generation,
                        ),
                        EventBody::ConflictDetected {
                            device: record.user.clone(),
                            upstream: person.clone(),
                        },
                    );
                    (
                        MappingOutcome::Conflict,
                        vec![event],
                        format!(
                            "person {} differs from the device user in {}; both versions kept",
                            person.person_id,
                            differences.join(", ")
                        ),
                    )
                }
            }
        };
        let events = self.outbox().prepare_all(events)?;
        let operation = if outcome == MappingOutcome::Conflict {
            Operation::Conflict
        } else {
            Operation::Mapping
        };
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: now,
            operation,
            device_id: Some(device_id.to_string()),
            device_user_id: Some(user_id.to_string()),
            actor: "upstream".to_string(),
            detail: audit_detail,
        }])?;
        let trees = self.trees(&[TreeName::Buffer, TreeName::Mappings, TreeName::Conflicts]);
        self.store().transaction(&trees, |tx| {
            let Some(mut record) = tx.get::<BufferRecord>(TreeName::Buffer, &key)? else {
                return Err(TxError::abort("the buffer record vanished"));
            };
            let previous = tx.get::<Mapping>(TreeName::Mappings, &key)?;
            match update {
                MappingUpdate::PersonNotFound { .. } | MappingUpdate::Removed { .. } => {
                    remove_in(tx, &key)?;
                    record.person_id = None;
                    record.mapped_at_ms = None;
                    if record.status != MappingStatus::Missing {
                        record.status = MappingStatus::Unmapped;
                    }
                }
                MappingUpdate::Confirmed { person, .. } => {
                    let mapping = Mapping {
                        person_id: person.person_id.clone(),
                        state: MappingState::Confirmed,
                        requested_by: previous
                            .as_ref()
                            .map_or_else(|| "upstream".to_string(), |m| m.requested_by.clone()),
                        requested_at_ms: previous.as_ref().map_or(now, |m| m.requested_at_ms),
                        confirmed_at_ms: Some(now),
                        person: Some(person.clone()),
                    };
                    put_in(tx, &key, &mapping)?;
                    record.person_id = Some(person.person_id.clone());
                    record.mapped_at_ms = Some(now);
                    if outcome == MappingOutcome::Conflict {
                        let conflict = ConflictRecord {
                            device_id: device_id.to_string(),
                            device: record.user.clone(),
                            upstream: person.clone(),
                            detected_at_ms: now,
                        };
                        conflicts::put_in(tx, &key, &conflict)?;
                    }
                    if record.status != MappingStatus::Missing {
                        record.status = if outcome == MappingOutcome::Conflict {
                            MappingStatus::Conflict
                        } else {
                            MappingStatus::Mapped
                        };
                    }
                }
            }
            buffer::put_in(tx, &key, &record)?;
            outbox::enqueue_in(tx, &events)?;
            audit::append_in(tx, &audit)
        })?;
        self.outbox().committed(events);
        Ok(outcome)
    }
}

impl Engine {
    /// A mapping for a device user the agent has not read yet: kept (or, for a removal,
    /// dropped) in the `mappings` tree with an audit entry, so the first complete read that
    /// finds the user links it ([`link_discovered`]). Without this the puller's cursor would
    /// move past the change and the link would be lost.
    fn keep_for_unread_user(&self, update: &MappingUpdate, key: &[u8]) -> Result<(), SyncError> {
        let now = self.now_ms();
        let (device_id, user_id, mapping, detail) = match update {
            MappingUpdate::Confirmed {
                device_id,
                user_id,
                person,
            } => (
                device_id,
                user_id,
                Some(Mapping {
                    person_id: person.person_id.clone(),
                    state: MappingState::Confirmed,
                    requested_by: "upstream".to_string(),
                    requested_at_ms: now,
                    confirmed_at_ms: Some(now),
                    person: Some(person.clone()),
                }),
                format!(
                    "upstream maps this user to person {}; the user has not been read yet, the \
                     mapping is kept and applied when a complete read finds it",
                    person.person_id
                ),
            ),
            MappingUpdate::PersonNotFound {
                device_id,
                user_id,
                person_id,
            }
            | MappingUpdate::Removed {
                device_id,
                user_id,
                person_id,
            } => (
                device_id,
                user_id,
                None,
                format!("upstream dropped the link to person {person_id} of a user not read yet"),
            ),
        };
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: now,
            operation: Operation::Mapping,
            device_id: Some(device_id.to_string()),
            device_user_id: Some(user_id.to_string()),
            actor: "upstream".to_string(),
            detail,
        }])?;
        self.store()
            .transaction(&self.trees(&[TreeName::Mappings]), |tx| {
                match &mapping {
                    Some(mapping) => put_in(tx, key, mapping)?,
                    None => {
                        remove_in(tx, key)?;
                    }
                }
                audit::append_in(tx, &audit)
            })?;
        Ok(())
    }
}

/// Links a user a complete read has just found for the first time to a mapping kept for it
/// (pulled before the user was read, or left from an earlier store of this device): the
/// record shows the person and `mapped`/`pending` instead of `unmapped`. Called inside the
/// apply transaction; an open conflict keeps `conflict`.
pub(crate) fn link_discovered(
    tx: &Tx<'_>,
    key: &[u8],
    mut record: BufferRecord,
) -> Result<BufferRecord, TxError> {
    let Some(mapping) = tx.get::<Mapping>(TreeName::Mappings, key)? else {
        return Ok(record);
    };
    let open_conflict = tx
        .get::<ConflictRecord>(TreeName::Conflicts, key)?
        .is_some();
    let confirmed = mapping.state == MappingState::Confirmed;
    record.person_id = Some(mapping.person_id);
    record.mapped_at_ms = mapping.confirmed_at_ms.filter(|_| confirmed);
    record.status = MappingStatus::of_present(open_conflict, Some(confirmed));
    Ok(record)
}

/// The engine owns the mappings: the upstream puller hands it each pulled page.
impl MappingSink for Engine {
    fn apply(&self, page: Vec<PulledMapping>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            for pulled in page {
                self.write_upstream_mapping(&MappingUpdate::from(pulled))?;
            }
            self.store().make_durable().await?;
            Ok(())
        })
    }

    fn pending_persons(&self) -> Result<Vec<PendingPerson>, SinkError> {
        let mut pending = Vec::new();
        for entry in self.store().scan_prefix::<Mapping>(TreeName::Mappings, []) {
            let (key, mapping) = entry?;
            if mapping.state != MappingState::Pending {
                continue;
            }
            let mut parts = key.splitn(2, |byte| *byte == 0);
            let device_id = String::from_utf8_lossy(parts.next().unwrap_or_default());
            let user_id = String::from_utf8_lossy(parts.next().unwrap_or_default());
            pending.push(PendingPerson {
                device_id: device_id.into_owned(),
                user_id: user_id.into_owned(),
                person_id: mapping.person_id,
            });
        }
        Ok(pending)
    }

    fn settle_person(
        &self,
        pending: PendingPerson,
        found: Option<PersonAttributes>,
    ) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let still_pending = get(self.store(), &pending.device_id, &pending.user_id)?
                .is_some_and(|m| {
                    m.state == MappingState::Pending && m.person_id == pending.person_id
                });
            if !still_pending {
                return Ok(());
            }
            let update = match found {
                Some(mut person) => {
                    person.person_id = pending.person_id;
                    MappingUpdate::Confirmed {
                        device_id: pending.device_id,
                        user_id: pending.user_id,
                        person,
                    }
                }
                None => {
                    tracing::warn!(
                        device = %pending.device_id,
                        user = %pending.user_id,
                        "map refused: the upstream has no person {}",
                        pending.person_id
                    );
                    MappingUpdate::PersonNotFound {
                        device_id: pending.device_id,
                        user_id: pending.user_id,
                        person_id: pending.person_id,
                    }
                }
            };
            let outcome = self.apply_upstream_mapping(&update).await?;
            tracing::info!(?outcome, "the upstream answered a pending map request");
            Ok(())
        })
    }

    fn person_requests(&self) -> Arc<Notify> {
        Arc::clone(Engine::person_requests(self))
    }
}

/// The mapping of one device user, if any.
pub fn get(
    store: &crate::store::Store,
    device_id: &str,
    user_id: &str,
) -> Result<Option<Mapping>, StoreError> {
    store.get(TreeName::Mappings, keys::device_user(device_id, user_id)?)
}

/// Writes `value` at `key` of the `mappings` tree inside the caller's transaction: this
/// module is the tree's only writer (see `crate::store::TreeName`).
pub(crate) fn put_in(tx: &Tx<'_>, key: impl AsRef<[u8]>, value: &Mapping) -> Result<(), TxError> {
    tx.insert(TreeName::Mappings, key, value)
}

/// Removes the value at `key` of the `mappings` tree inside the caller's transaction;
/// `true` if there was one.
pub(crate) fn remove_in(tx: &Tx<'_>, key: impl AsRef<[u8]>) -> Result<bool, TxError> {
    tx.remove(TreeName::Mappings, key)
}
