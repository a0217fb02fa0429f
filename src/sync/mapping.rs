//! Mappings (B2): which upstream person a device user is. Requested by an administrator's `map`
//! command, confirmed (or refused) by the upstream, which also feeds mappings made on its side
//! through incremental pulls. The buffer shows a mapping as `pending` until the upstream
//! confirms the person exists, and as `mapped` only then.

use super::buffer::{BufferRecord, MappingStatus};
use super::conflicts::{self, ConflictRecord};
use super::ports::{AuditEntry, AuditOperation};
use super::{Engine, SyncError};
use crate::events::{Event, EventBody, EventKey, PersonAttributes};
use crate::store::{keys, Record, StoreError, TreeName, TxError};
use serde::{Deserialize, Serialize};

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
pub enum UpstreamMapping {
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
}

/// What applying an upstream mapping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingOutcome {
    /// Now mapped.
    Mapped,
    /// Device and upstream disagree; a conflict was recorded.
    Conflict,
    /// The request was dropped (person not found).
    Dropped,
    /// The device user is not in the buffer; nothing to link (yet).
    UnknownUser,
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
            fencing_token: 0,
            body: EventBody::MappingRequested {
                user_id: user_id.to_string(),
                person_id: person_id.to_string(),
                admin: admin.to_string(),
            },
        };
        let events = self.outbox().prepare(vec![event])?;
        let audit = self.audit().prepare(vec![AuditEntry {
            at_ms: now,
            operation: AuditOperation::Mapping,
            device_id: device_id.to_string(),
            user_id: Some(user_id.to_string()),
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
                tx.insert(TreeName::Buffer, &key, &record)?;
                tx.insert(TreeName::Mappings, &key, &mapping)?;
                self.outbox().enqueue(tx, &events)?;
                self.audit().append(tx, &audit)
            })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        Ok(())
    }

    /// Applies what the upstream says about mappings (its incremental pull). A confirmed person
    /// whose attributes differ from the device user's becomes a conflict, both versions kept.
    pub async fn apply_upstream_mapping(
        &self,
        update: &UpstreamMapping,
    ) -> Result<MappingOutcome, SyncError> {
        let (device_id, user_id) = match update {
            UpstreamMapping::Confirmed {
                device_id, user_id, ..
            }
            | UpstreamMapping::PersonNotFound {
                device_id, user_id, ..
            } => (device_id.as_str(), user_id.as_str()),
        };
        let key = keys::device_user(device_id, user_id).map_err(StoreError::from)?;
        let Some(record) = self.store().get::<BufferRecord>(TreeName::Buffer, &key)? else {
            return Ok(MappingOutcome::UnknownUser);
        };
        let now = self.now_ms();
        let state = super::state::load(self.store(), device_id)?;
        let (outcome, events, audit_detail) = match update {
            UpstreamMapping::PersonNotFound { person_id, .. } => (
                MappingOutcome::Dropped,
                Vec::new(),
                format!("upstream has no person {person_id}; mapping request dropped"),
            ),
            UpstreamMapping::Confirmed { person, .. } => {
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
        let events = self.outbox().prepare(events)?;
        let operation = if outcome == MappingOutcome::Conflict {
            AuditOperation::Conflict
        } else {
            AuditOperation::Mapping
        };
        let audit = self.audit().prepare(vec![AuditEntry {
            at_ms: now,
            operation,
            device_id: device_id.to_string(),
            user_id: Some(user_id.to_string()),
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
                UpstreamMapping::PersonNotFound { .. } => {
                    tx.remove(TreeName::Mappings, &key)?;
                    record.person_id = None;
                    record.mapped_at_ms = None;
                    if record.status != MappingStatus::Missing {
                        record.status = MappingStatus::Unmapped;
                    }
                }
                UpstreamMapping::Confirmed { person, .. } => {
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
                    tx.insert(TreeName::Mappings, &key, &mapping)?;
                    record.person_id = Some(person.person_id.clone());
                    record.mapped_at_ms = Some(now);
                    if outcome == MappingOutcome::Conflict {
                        let conflict = ConflictRecord {
                            device_id: device_id.to_string(),
                            device: record.user.clone(),
                            upstream: person.clone(),
                            detected_at_ms: now,
                        };
                        tx.insert(TreeName::Conflicts, &key, &conflict)?;
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
            tx.insert(TreeName::Buffer, &key, &record)?;
            self.outbox().enqueue(tx, &events)?;
            self.audit().append(tx, &audit)
        })?;
        self.outbox().committed(events);
        self.store().make_durable().await?;
        Ok(outcome)
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
