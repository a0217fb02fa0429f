//! A big first read is committed in steps of `first_read_chunk` new users (see
//! `edge_agent::sync::apply`): each step is its own durable transaction, every user is buffered
//! and announced once, and a step the outbox refuses sends the rest of the read to the final
//! transaction, which marks the device behind as any read that meets a full outbox does.

use edge_agent::audit::Audit;
use edge_agent::device::{ReadUser, UserRead};
use edge_agent::events::{DeviceUser, EventBody};
use edge_agent::lock::FlockLock;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::{buffer, catch_up, history, state, Engine};
use edge_agent::upstream::Outbox;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use test_support::agent::sync::{assert_consistent, queued_events, DEVICE};

const USERS: u64 = 1_000;
const CHUNK: usize = 200;

fn read_of(users: u64) -> UserRead {
    let users: std::collections::BTreeMap<_, _> = (1..=users)
        .map(|id| {
            let user = DeviceUser {
                user_id: id.to_string(),
                name: format!("Employee {id}"),
                card: Some((3_000_000_000 + id).to_string()),
                ..DeviceUser::default()
            };
            (
                id.to_string(),
                ReadUser {
                    user,
                    slots: vec![11],
                },
            )
        })
        .collect();
    UserRead {
        device_user_count: users.len() as u64,
        users,
        ..UserRead::default()
    }
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
