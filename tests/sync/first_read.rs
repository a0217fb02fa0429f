//! A big first read is committed in steps of `first_read_chunk` new users (see
//! `edge_agent::sync::apply`): each step is its own durable transaction, every user is buffered
//! and announced once, and a step the outbox refuses sends the rest of the read to the final
//! transaction, which marks the device behind as any read that meets a full outbox does.
//! The read after it, equal to the snapshot, is applied from the snapshot's digest alone.

use edge_agent::audit::Audit;
use edge_agent::device::UserRead;
use edge_agent::events::EventBody;
use edge_agent::lock::FlockLock;
use edge_agent::store::{keys, Store, StoreOptions, TreeName};
use edge_agent::sync::snapshot::{SnapshotDigest, SnapshotUser};
use edge_agent::sync::{buffer, catch_up, history, state, Engine};
use edge_agent::upstream::Outbox;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use test_support::agent::sync::{assert_consistent, queued_events, DEVICE};

const USERS: u64 = 1_000;
const CHUNK: usize = 200;

fn read_of(users: u64) -> UserRead {
    test_support::agent::sync::card_read((1..=users).map(|id| id.to_string()))
}

fn engine(dir: &std::path::Path, outbox_cap: u64) -> (Store, Engine) {
    let store = Store::open(&StoreOptions::at(dir.join("store")))
        .expect("open the store")
        .store;
    let lock = FlockLock::new(dir.join("locks"), 1, Duration::ZERO);
    let outbox = Outbox::open(&store, outbox_cap).expect("outbox");
    let engine = Engine::new(
        store.clone(),
        "gw-test",
        Arc::new(lock),
        outbox,
        Audit::new(store.clone()),
    )
    .with_first_read_chunk(CHUNK);
    (store, engine)
}

fn discovered(store: &Store) -> usize {
    queued_events(store)
        .iter()
        .filter(|e| matches!(e.body, EventBody::UserDiscovered(_)))
        .count()
}

#[tokio::test]
async fn a_big_first_read_is_committed_in_durable_steps_each_user_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = engine(dir.path(), u64::MAX);
    let flushes = store.durable_flushes();
    let applied = engine.apply_read(DEVICE, &read_of(USERS), 1).await.unwrap();
    let rounds = store.durable_flushes() - flushes;
    assert!(
        rounds > USERS / CHUNK as u64,
        "{rounds} durable round(s): the first read was not committed in steps of {CHUNK}"
    );
    assert_eq!(applied.discovered.len() as u64, USERS);
    assert_consistent(&store, DEVICE);
    let sync = state::load(&store, DEVICE).unwrap();
    assert_eq!((sync.generation, sync.users), (1, USERS));
    let history = history::list(&store, DEVICE).unwrap();
    assert_eq!(history[0].added.len() as u64, USERS);
    assert_eq!(discovered(&store) as u64, USERS);
    // The next read of the same users changes nothing and announces nothing.
    engine.apply_read(DEVICE, &read_of(USERS), 1).await.unwrap();
    assert_eq!(discovered(&store) as u64, USERS);
}

#[tokio::test]
async fn a_step_the_outbox_refuses_leaves_the_rest_to_the_final_commit() {
    // How many bytes the whole read's events take, measured on a store of its own.
    let sizing = tempfile::tempdir().unwrap();
    let (_, full) = engine(sizing.path(), u64::MAX);
    full.apply_read(DEVICE, &read_of(USERS), 1).await.unwrap();
    let bytes = full.outbox().stats().unwrap().bytes;

    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = engine(dir.path(), bytes / 2);
    engine.apply_read(DEVICE, &read_of(USERS), 1).await.unwrap();
    let queued = discovered(&store);
    assert!(
        queued > 0 && queued % CHUNK == 0 && (queued as u64) < USERS,
        "the steps that fitted are queued whole: {queued}"
    );
    let keys: BTreeSet<String> = queued_events(&store).into_iter().map(|e| e.key).collect();
    assert_eq!(keys.len(), queued_events(&store).len(), "unique keys");
    let sync = state::load(&store, DEVICE).unwrap();
    assert_eq!(
        (sync.generation, sync.users),
        (1, USERS),
        "the read is applied"
    );
    assert_eq!(
        buffer::list(&store, Some(DEVICE), None).unwrap().len() as u64,
        USERS
    );
    let behind = catch_up::load(&store, DEVICE)
        .unwrap()
        .expect("marked behind");
    assert_eq!(behind.since_generation, 1);
}

/// The steady poll's saving (`SnapshotDigest`): a read equal to the last snapshot is applied
/// without loading the snapshot, and a read that differs still finds its change.
#[tokio::test]
async fn a_read_equal_to_the_last_snapshot_is_applied_from_its_digest_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = engine(dir.path(), u64::MAX);
    let read = read_of(USERS);
    engine.apply_read(DEVICE, &read, 1).await.unwrap();
    let digest = SnapshotDigest::of_read(&read.users).unwrap();
    assert_eq!(
        state::load(&store, DEVICE).unwrap().snapshot_digest,
        Some(digest),
        "the final commit of the stepped first read keeps the snapshot's digest"
    );

    // Alter one stored snapshot entry behind the engine's back: a poll that loaded the
    // snapshot would report user 7 as changed.
    let key = keys::device_user(DEVICE, "7").unwrap();
    let mut tampered: SnapshotUser = store.get(TreeName::Snapshots, &key).unwrap().unwrap();
    tampered.user.name = "not what the device says".into();
    store.insert(TreeName::Snapshots, &key, &tampered).unwrap();
    let applied = engine.apply_read(DEVICE, &read, 1).await.unwrap();
    assert_eq!(applied.generation, 2);
    assert!(
        applied.changed.is_empty() && applied.discovered.is_empty() && applied.missing.is_empty(),
        "an unchanged read is applied from the digest, not from the snapshot: {applied:?}"
    );

    // A real change: the digest differs, the snapshot is loaded and the change found.
    let mut renamed = read.clone();
    renamed.users.get_mut("8").unwrap().user.name = "Renamed".into();
    let applied = engine.apply_read(DEVICE, &renamed, 1).await.unwrap();
    assert!(applied.changed.contains(&"8".to_string()), "{applied:?}");
    assert_eq!(
        state::load(&store, DEVICE).unwrap().snapshot_digest,
        Some(SnapshotDigest::of_read(&renamed.users).unwrap())
    );
}
