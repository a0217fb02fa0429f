//! Backups and restore end to end against `device-sim`: a backup holds every credential; a
//! dry run lists exactly what the device lost; a restore re-adds exactly that (with
//! `setuserinfo`, never anything destructive), verifies with a fresh read, and a second restore
//! is a no-op. A backup with no users from a device that reports users is a failure.

use edge_agent::device::{
    Credential, DeviceSession, FetchMode, MemorySink, ReadError, ReadSink, UserRead,
};
use edge_agent::lock::FlockLock;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::backup::{self, file};
use edge_agent::sync::buffer;
use edge_agent::sync::SyncError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use sync_support::{Agent, DEVICE};
use test_support::agent::sync as sync_support;
use test_support::Emulator;

fn setuserinfo_count(emulator: &Emulator) -> usize {
    emulator
        .commands()
        .iter()
        .filter(|c| c["cmd"] == "setuserinfo")
        .count()
}

#[tokio::test]
async fn restore_re_adds_exactly_what_the_device_lost_verifies_and_is_idempotent() {
    let agent = Agent::start().await;
    let dir = agent.config.backup_dir();
    let knobs = ["--users", "4", "--photo-kb", "2", "--passwords", "true"];
    let first = sync_support::emulator(agent.port, &agent.log("backup"), &knobs);
    let session = agent.session().await;
    let info = agent.engine.backup(&session, &dir).await.unwrap();
    assert_eq!((info.trailer.users, info.trailer.credentials), (4, 12));
    assert_eq!(info.trailer.device_user_count, 4);
    assert_eq!(
        backup::list(&dir, Some(DEVICE)).unwrap(),
        std::slice::from_ref(&info)
    );
    first.stop();

    let mut lossy = knobs.to_vec();
    lossy.extend(["--delete-users", "2,3", "--delete-after-ms", "0"]);
    let second = sync_support::emulator(agent.port, &agent.log("restore"), &lossy);
    let session = agent.new_session(&session).await;

    let dry = agent
        .engine
        .restore(&session, &info.path, true, "technician")
        .await
        .unwrap();
    let planned: Vec<_> = dry
        .missing
        .iter()
        .map(|m| (m.user_id.as_str(), m.slot, m.user_absent))
        .collect();
    assert_eq!(
        planned,
        [
            ("2", 10, true),
            ("2", 11, true),
            ("2", 50, true),
            ("3", 10, true),
            ("3", 11, true),
            ("3", 50, true)
        ]
    );
    let text = dry.to_text();
    assert!(
        text.contains(
            "would re-add user 2 \"user2\": password (slot 10), card (slot 11), photo (slot 50)"
        ),
        "{text}"
    );
    assert!(text.contains("would re-add user 3"), "{text}");
    assert!(
        !text.contains("user 1") && !text.contains("user 4"),
        "{text}"
    );
    assert_eq!(dry.written, 0);
    assert_eq!(setuserinfo_count(&second), 0, "a dry run writes nothing");

    let restored = agent
        .engine
        .restore(&session, &info.path, false, "technician")
        .await
        .unwrap();
    assert_eq!(restored.missing, dry.missing);
    assert_eq!(restored.written, 6);
    assert!(restored.verified, "{}", restored.to_text());
    assert_eq!(setuserinfo_count(&second), 6);
    let statuses: Vec<_> = buffer::list(&agent.store, Some(DEVICE), None)
        .unwrap()
        .into_iter()
        .map(|u| u.status)
        .collect();
    assert_eq!(
        statuses, ["unmapped"; 4],
        "restored users are back, not missing"
    );

    // The device now holds exactly the backed-up values again.
    let mut sink = MemorySink::default();
    session.read_users(FetchMode::All, &mut sink).await.unwrap();
    file::for_each_credential(&info.path, |line| {
        let held = &sink.credentials[&(line.user_id.clone(), line.slot)];
        assert_eq!(
            held.value, line.value,
            "user {} slot {}",
            line.user_id, line.slot
        );
        Ok(())
    })
    .unwrap();

    let again = agent
        .engine
        .restore(&session, &info.path, false, "technician")
        .await
        .unwrap();
    assert!(again.missing.is_empty() && again.written == 0 && again.verified);
    assert!(again.to_text().contains("nothing to restore"));
    assert_eq!(
        setuserinfo_count(&second),
        6,
        "the second restore wrote nothing"
    );

    let summary = second.stop();
    assert_eq!(summary["credentials_written"], 6);
    assert_eq!(summary["users_on_device"], 4);
    sync_support::assert_consistent(&agent.store, DEVICE);
    agent.stop().await;
}

/// A device that lists no users while reporting some (what a broken firmware or driver could
/// produce): the backup must fail loudly and leave no file.
struct EmptyButCounted;

impl DeviceSession for EmptyButCounted {
    fn device_id(&self) -> &str {
        DEVICE
    }

    async fn read_users(
        &self,
        _mode: FetchMode,
        _sink: &mut (dyn ReadSink + Send),
    ) -> Result<UserRead, ReadError> {
        Ok(UserRead {
            users: BTreeMap::new(),
            device_user_count: 5,
            ..UserRead::default()
        })
    }

    async fn write_credential(&self, _credential: &Credential) -> Result<(), ReadError> {
        Err(ReadError::Refused("read-only test device".into()))
    }

    async fn set_user_name(&self, _user_id: &str, _name: &str) -> Result<(), ReadError> {
        unreachable!("a backup renames nothing")
    }
}

#[tokio::test]
async fn a_backup_with_zero_users_from_a_device_reporting_users_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::at(dir.path().join("store")))
        .unwrap()
        .store;
    let lock = FlockLock::new(dir.path().join("locks"), 1, Duration::ZERO);
    let engine = sync_support::engine(&store, "gw", Arc::new(lock));
    let backups = dir.path().join("backups");
    let err = engine.backup(&EmptyButCounted, &backups).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Backup(file::BackupError::Empty {
                device_user_count: 5,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        0,
        "no file, not even a temp one"
    );
    let state = edge_agent::sync::state::load(engine.store(), DEVICE).unwrap();
    assert_eq!(state.last_backup_ms, None);
}
