//! Retention with an injected clock: a user gone from the device is swept 90 days after it was
//! last seen (with its cached credentials), a user still on the device never is, old audit and
//! history entries go after their retention, and old backups go but never a device's newest.

use edge_agent::audit::{Audit, AuditQuery, Operation};
use edge_agent::device::UserRead;
use edge_agent::lock::FlockLock;
use edge_agent::store::{Store, StoreOptions, TreeName};
use edge_agent::sync::backup;
use edge_agent::sync::backup::file::BackupWriter;
use edge_agent::sync::buffer;
use edge_agent::sync::clock::ManualClock;
use edge_agent::sync::credentials::{self, StoredCredential, StoredValue};
use edge_agent::sync::history;
use edge_agent::sync::retention::RetentionPolicy;
use edge_agent::sync::Engine;
use edge_agent::upstream::Outbox;
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn read_of(ids: &[&str]) -> UserRead {
    test_support::agent::sync::card_read(ids.iter().copied())
}

fn statuses(store: &Store) -> Vec<(String, &'static str)> {
    buffer::list(store, Some("door"), None)
        .unwrap()
        .into_iter()
        .map(|u| (u.user_id, u.status))
        .collect()
}

#[tokio::test]
async fn retention_sweeps_only_what_is_gone_and_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::at(dir.path().join("store")))
        .unwrap()
        .store;
    let clock = ManualClock::at(T0);
    let lock = FlockLock::new(dir.path().join("locks"), 1, Duration::ZERO);
    let engine = Engine::new(
        store.clone(),
        "gw",
        Arc::new(lock),
        Outbox::open(&store, u64::MAX).unwrap(),
        Audit::new(store.clone()),
    )
    .with_clock(Arc::new(clock.clone()));
    let policy = RetentionPolicy {
        buffer: Duration::from_secs(90 * 86_400),
        audit: Duration::from_secs(30 * 86_400),
        backups: Duration::from_secs(30 * 86_400),
    };
    let backups = dir.path().join("backups");
    for (device, day) in [("door", 0), ("door", 10), ("door", 40), ("other", 0)] {
        BackupWriter::create(&backups, device, "gw", T0 + day * DAY_MS)
            .unwrap()
            .finish(0)
            .unwrap();
    }

    engine
        .apply_read("door", &read_of(&["1", "2", "3"]), 0)
        .await
        .unwrap();
    let cached = StoredCredential {
        name: "user3".into(),
        privilege: 0,
        value: StoredValue::Number("3000000003".into()),
    };
    store
        .insert(
            TreeName::Credentials,
            credentials::key("door", "3", 11).unwrap(),
            &cached,
        )
        .unwrap();
    clock.advance_ms(DAY_MS);
    let applied = engine
        .apply_read("door", &read_of(&["1", "2"]), 0)
        .await
        .unwrap();
    assert_eq!(applied.missing[0].last_seen_at_ms, T0);

    // Day 90 after user 3 was last seen: not past retention yet.
    clock.advance_ms(89 * DAY_MS);
    let swept = engine.sweep(&policy, &backups).await.unwrap();
    assert!(swept.buffer.is_empty(), "{swept:?}");
    assert_eq!(statuses(&store).len(), 3);

    // A day later it is; users 1 and 2 were last read 90 days ago too, but are still on the
    // device (the device has simply not been read since), so they stay.
    clock.advance_ms(DAY_MS + 1);
    let swept = engine.sweep(&policy, &backups).await.unwrap();
    assert_eq!(swept.buffer, [("door".to_string(), "3".to_string())]);
    assert_eq!(
        statuses(&store),
        [("1".to_string(), "unmapped"), ("2".to_string(), "unmapped")]
    );
    assert_eq!(
        credentials::get(&store, "door", "3", 11).unwrap(),
        None,
        "cached values go too"
    );
    assert!(
        history::list(&store, "door").unwrap().is_empty(),
        "history past 30 days swept"
    );

    let audit: Vec<_> = Audit::new(store.clone())
        .query(&AuditQuery::default())
        .unwrap()
        .entries
        .into_iter()
        .map(|(_, entry)| entry)
        .collect();
    assert!(
        audit.iter().all(|e| e.operation == Operation::Retention),
        "only the sweeps' own entries are left: {audit:?}"
    );
    assert_eq!(audit.len(), 2);
    assert!(
        audit[0]
            .detail
            .contains("1 buffer record(s) of users gone for over 90 days (door/3)"),
        "{}",
        audit[0].detail
    );

    let left: Vec<_> = backup::list(&backups, None)
        .unwrap()
        .into_iter()
        .map(|b| (b.header.device_id, (b.header.created_at_ms - T0) / DAY_MS))
        .collect();
    assert_eq!(
        left,
        [("door".to_string(), 40), ("other".to_string(), 0)],
        "old backups go, never a device's newest"
    );
}
