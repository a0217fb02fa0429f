//! Mappings and conflicts (B2, B3) on a store, with a device double that records writes:
//! `map` stays `pending` until the upstream confirms the person; a confirmed person that
//! disagrees with the device becomes a conflict keeping both versions; each resolution is
//! applied to both sides (device side: writes only), audited with the admin's identity, and
//! leaves the buffer consistent. A device-side change of a mapped user is a conflict too.

use device_protocols::aiface::CredentialValue;
use edge_agent::audit::{Audit, AuditEntry, AuditQuery, Operation};
use edge_agent::device::{
    Credential, DeviceSession, FetchMode, ReadError, ReadSink, ReadUser, UserRead,
};
use edge_agent::events::{DeviceUser, Event, EventBody, PersonAttributes, Resolution};
use edge_agent::lock::FlockLock;
use edge_agent::store::{Store, StoreOptions, TreeName};
use edge_agent::sync::buffer::{self, MappingStatus};
use edge_agent::sync::conflicts::{self, ConflictDecision};
use edge_agent::sync::credentials::{self, StoredCredential, StoredValue};
use edge_agent::sync::mapping::{self, MappingOutcome, MappingState, MappingUpdate};
use edge_agent::sync::{Engine, SyncError};
use edge_agent::upstream::Outbox;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEVICE: &str = "door";

/// A device that only takes writes, and remembers them.
#[derive(Default)]
struct Recorder {
    writes: Mutex<Vec<Credential>>,
    renames: Mutex<Vec<(String, String)>>,
}

impl DeviceSession for Recorder {
    fn device_id(&self) -> &str {
        DEVICE
    }

    async fn read_users(
        &self,
        _mode: FetchMode,
        _sink: &mut (dyn ReadSink + Send),
    ) -> Result<UserRead, ReadError> {
        Err(ReadError::NotConnected(
            "reads are not part of this test".into(),
        ))
    }

    async fn write_credential(&self, credential: &Credential) -> Result<(), ReadError> {
        self.writes.lock().unwrap().push(credential.clone());
        Ok(())
    }

    async fn set_user_name(&self, user_id: &str, name: &str) -> Result<(), ReadError> {
        self.renames
            .lock()
            .unwrap()
            .push((user_id.to_string(), name.to_string()));
        Ok(())
    }
}

fn device_user(id: &str, name: &str, card: &str) -> DeviceUser {
    DeviceUser {
        user_id: id.into(),
        name: name.into(),
        card: Some(card.into()),
        faces: 1,
        ..DeviceUser::default()
    }
}

fn read_of(users: &[DeviceUser]) -> UserRead {
    UserRead {
        users: users
            .iter()
            .map(|u| {
                let read = ReadUser {
                    user: u.clone(),
                    slots: vec![11, 50],
                };
                (u.user_id.clone(), read)
            })
            .collect(),
        device_user_count: users.len() as u64,
        ..UserRead::default()
    }
}

fn person(id: &str, name: &str, card: &str) -> PersonAttributes {
    PersonAttributes {
        person_id: id.into(),
        name: name.into(),
        privilege: 0,
        card: Some(card.into()),
    }
}

fn status(store: &Store, user: &str) -> String {
    buffer::list(store, Some(DEVICE), None)
        .unwrap()
        .into_iter()
        .find(|u| u.user_id == user)
        .map(|u| u.status.to_string())
        .unwrap()
}

/// Every event queued in the outbox of `store`, oldest first.
fn queued_events(store: &Store) -> Vec<Event> {
    Outbox::open(store, u64::MAX)
        .unwrap()
        .peek(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|queued| queued.event)
        .collect()
}

/// The audit entries of `store` matching `query`, newest first.
fn audit_entries(store: &Store, query: AuditQuery) -> Vec<AuditEntry> {
    Audit::new(store.clone())
        .query(&query)
        .unwrap()
        .entries
        .into_iter()
        .map(|(_, entry)| entry)
        .collect()
}

fn setup() -> (tempfile::TempDir, Store, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::at(dir.path().join("store")))
        .unwrap()
        .store;
    let lock = FlockLock::new(dir.path().join("locks"), 1, Duration::ZERO);
    let engine = Engine::new(
        store.clone(),
        "gw",
        Arc::new(lock),
        Outbox::open(&store, u64::MAX).unwrap(),
        Audit::new(store.clone()),
    );
    (dir, store, engine)
}

#[tokio::test]
async fn a_mapping_is_pending_until_confirmed_and_a_disagreement_becomes_a_conflict() {
    let (_dir, store, engine) = setup();
    let users = [
        device_user("1", "Ann", "3000000001"),
        device_user("2", "Bob", "3000000002"),
    ];
    engine
        .apply_read(DEVICE, &read_of(&users), 0)
        .await
        .unwrap();

    let err = engine
        .request_mapping(DEVICE, "9", "P9", "alice", "n0")
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Refused(_)), "{err}");

    engine
        .request_mapping(DEVICE, "1", "P1", "alice", "n1")
        .await
        .unwrap();
    assert_eq!(status(&store, "1"), "pending");
    let outcome = engine
        .apply_upstream_mapping(&MappingUpdate::Confirmed {
            device_id: DEVICE.into(),
            user_id: "1".into(),
            person: person("P1", "Ann", "3000000001"),
        })
        .await
        .unwrap();
    assert_eq!(outcome, MappingOutcome::Mapped);
    assert_eq!(status(&store, "1"), "mapped");
    let mapping = mapping::get(&store, DEVICE, "1").unwrap().unwrap();
    assert_eq!(
        (mapping.state, mapping.requested_by.as_str()),
        (MappingState::Confirmed, "alice")
    );

    engine
        .request_mapping(DEVICE, "2", "P404", "alice", "n2")
        .await
        .unwrap();
    let outcome = engine
        .apply_upstream_mapping(&MappingUpdate::PersonNotFound {
            device_id: DEVICE.into(),
            user_id: "2".into(),
            person_id: "P404".into(),
        })
        .await
        .unwrap();
    assert_eq!(outcome, MappingOutcome::Dropped);
    assert_eq!(status(&store, "2"), "unmapped");

    let outcome = engine
        .apply_upstream_mapping(&MappingUpdate::Confirmed {
            device_id: DEVICE.into(),
            user_id: "2".into(),
            person: person("P2", "Robert", "3000000002"),
        })
        .await
        .unwrap();
    assert_eq!(outcome, MappingOutcome::Conflict);
    assert_eq!(status(&store, "2"), "conflict");
    let open = conflicts::list(&store, Some(DEVICE)).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].device.name.as_str(), open[0].upstream.name.as_str()),
        ("Bob", "Robert")
    );

    // The device renames a mapped user: the next complete read records a conflict.
    let renamed = [
        device_user("1", "Anna", "3000000001"),
        device_user("2", "Bob", "3000000002"),
    ];
    let applied = engine
        .apply_read(DEVICE, &read_of(&renamed), 0)
        .await
        .unwrap();
    assert_eq!(applied.conflicts, ["1"]);
    assert_eq!(status(&store, "1"), "conflict");

    let events = queued_events(&store);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::MappingRequested { .. } => Some("mapping_requested"),
            EventBody::ConflictDetected { .. } => Some("conflict_detected"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "mapping_requested",
            "mapping_requested",
            "conflict_detected",
            "conflict_detected"
        ]
    );
}

#[tokio::test]
async fn resolutions_write_only_updates_to_the_device_and_are_audited_with_the_admin() {
    let (_dir, store, engine) = setup();
    let users = [
        device_user("1", "Ann", "3000000001"),
        device_user("2", "Bob", "3000000002"),
        device_user("3", "Cy", "3000000003"),
    ];
    engine
        .apply_read(DEVICE, &read_of(&users), 0)
        .await
        .unwrap();
    for id in ["1", "2", "3"] {
        let photo = StoredCredential {
            name: users[0].name.clone(),
            privilege: 0,
            value: StoredValue::Text(format!("/9j/photo{id}")),
        };
        store
            .insert(
                TreeName::Credentials,
                credentials::key(DEVICE, id, 50).unwrap(),
                &photo,
            )
            .unwrap();
        let upstream = person(
            &format!("P{id}"),
            "Upstream Name",
            &format!("400000000{id}"),
        );
        engine
            .apply_upstream_mapping(&MappingUpdate::Confirmed {
                device_id: DEVICE.into(),
                user_id: id.into(),
                person: upstream,
            })
            .await
            .unwrap();
        assert_eq!(status(&store, id), "conflict");
    }
    let device = Recorder::default();
    let decide = |user: &str, resolution, merged| ConflictDecision {
        device_id: DEVICE.into(),
        user_id: user.into(),
        resolution,
        merged,
        lower_privilege: false,
        admin: "alice".into(),
        nonce: format!("nonce-{user}"),
    };

    // use_device: the device's version goes upstream; the device is not touched.
    let result = engine
        .resolve_conflict::<Recorder>(&decide("1", Resolution::UseDevice, None), None)
        .await
        .unwrap();
    assert_eq!(
        (result.name.as_str(), result.person_id.as_str()),
        ("Ann", "P1")
    );
    assert!(device.writes.lock().unwrap().is_empty());

    // use_database: the upstream's name and card are written to the device.
    engine
        .resolve_conflict(&decide("2", Resolution::UseDatabase, None), Some(&device))
        .await
        .unwrap();
    let writes: Vec<_> = device
        .writes
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.user_id.clone(), c.slot, c.name.clone(), c.value.clone()))
        .collect();
    assert_eq!(
        writes,
        [(
            "2".to_string(),
            11,
            "Upstream Name".to_string(),
            CredentialValue::Number(4_000_000_002u64.into())
        )]
    );
    let cached = credentials::get(&store, DEVICE, "2", 50).unwrap().unwrap();
    assert_eq!(
        cached.name, "Upstream Name",
        "the cache follows the device's new name"
    );

    // merge without attributes is refused; with them both sides get them.
    let refused = engine
        .resolve_conflict(&decide("3", Resolution::Merge, None), Some(&device))
        .await
        .unwrap_err();
    assert!(matches!(refused, SyncError::Refused(_)), "{refused}");
    let merged = person("ignored", "Cy Merged", "3000000003");
    let result = engine
        .resolve_conflict(&decide("3", Resolution::Merge, Some(merged)), Some(&device))
        .await
        .unwrap();
    assert_eq!(
        (result.person_id.as_str(), result.name.as_str()),
        ("P3", "Cy Merged")
    );
    // The new name reaches the device as a rename; no cached credential is written back.
    assert_eq!(
        device.writes.lock().unwrap().len(),
        1,
        "only user 2's new card"
    );
    assert_eq!(
        *device.renames.lock().unwrap(),
        [("3".to_string(), "Cy Merged".to_string())]
    );

    assert!(conflicts::list(&store, Some(DEVICE)).unwrap().is_empty());
    for id in ["1", "2", "3"] {
        assert_eq!(status(&store, id), MappingStatus::Mapped.as_str());
    }
    let resolutions = audit_entries(
        &store,
        AuditQuery {
            operation: Some(Operation::Resolution),
            ..AuditQuery::default()
        },
    );
    assert_eq!(resolutions.len(), 3);
    assert!(resolutions.iter().all(|e| e.actor == "alice"));
    let resolved = queued_events(&store)
        .into_iter()
        .filter(
            |e| matches!(&e.body, EventBody::ConflictResolved { admin, .. } if admin == "alice"),
        )
        .count();
    assert_eq!(resolved, 3);
}

#[tokio::test]
async fn a_link_removed_upstream_unmaps_the_user_and_is_audited() {
    let (_dir, store, engine) = setup();
    engine
        .apply_read(
            DEVICE,
            &read_of(&[device_user("1", "Ann", "3000000001")]),
            0,
        )
        .await
        .unwrap();
    let confirmed = MappingUpdate::Confirmed {
        device_id: DEVICE.into(),
        user_id: "1".into(),
        person: person("P1", "Ann", "3000000001"),
    };
    assert_eq!(
        engine.apply_upstream_mapping(&confirmed).await.unwrap(),
        MappingOutcome::Mapped
    );
    assert_eq!(status(&store, "1"), "mapped");

    let outcome = engine
        .apply_upstream_mapping(&MappingUpdate::Removed {
            device_id: DEVICE.into(),
            user_id: "1".into(),
            person_id: "P1".into(),
        })
        .await
        .unwrap();
    assert_eq!(outcome, MappingOutcome::Dropped);
    assert_eq!(status(&store, "1"), "unmapped");
    assert!(mapping::get(&store, DEVICE, "1").unwrap().is_none());
    let audited = audit_entries(
        &store,
        AuditQuery {
            device_user_id: Some("1".into()),
            operation: Some(Operation::Mapping),
            ..AuditQuery::default()
        },
    );
    assert!(
        audited[0].detail.contains("removed the link to person P1"),
        "{audited:?}"
    );

    // A user the agent has not read yet: the mapping is kept for it, not dropped.
    let unknown = MappingUpdate::Confirmed {
        device_id: DEVICE.into(),
        user_id: "77".into(),
        person: person("P77", "Zed", "1"),
    };
    assert_eq!(
        engine.apply_upstream_mapping(&unknown).await.unwrap(),
        MappingOutcome::KeptForUnreadUser
    );
    let kept = mapping::get(&store, DEVICE, "77").unwrap().unwrap();
    assert_eq!(kept.person_id, "P77");
    assert_eq!(kept.state, MappingState::Confirmed);
}
