//! A ZK terminal is synced like an AI06: the agent dials the emulator over TCP at every poll,
//! the users land in the buffer as unmapped with `user_discovered` events, and the terminal
//! only ever sees reads and the session's EXIT.

use edge_agent::config;
use edge_agent::lifecycle::Tasks;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::buffer;
use std::time::{Duration, Instant};
use test_support::Emulator;

#[tokio::test]
async fn a_zk_terminal_is_polled_and_its_users_buffered() {
    let emulator = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "12", "--pacing-ms", "0"]);
    let address = emulator.tcp.expect("emulator tcp address");
    let dir = tempfile::tempdir().unwrap();
    let config = config::parse(&format!(
        "[agent]\nid = \"zk-sync\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n[lock]\ndir = \"{locks}\"\n\
         [[device]]\nid = \"zk-door\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
         poll_interval = \"1h\"\ncommand_timeout = \"3s\"\n",
        data = dir.path().join("data").display(),
        run = dir.path().join("run").display(),
        locks = dir.path().join("locks").display(),
    ))
    .unwrap();
    let store = Store::open(&StoreOptions::at(config.store_dir()))
        .unwrap()
        .store;
    let mut tasks = Tasks::new();
    let _sync = edge_agent::agent::start_core(&mut tasks, &config, &store)
        .await
        .unwrap()
        .sync;

    // The loop polls at once on start.
    let deadline = Instant::now() + Duration::from_secs(30);
    let users = loop {
        let users = buffer::list(&store, Some("zk-door"), None).unwrap();
        if users.len() == 12 {
            break users;
        }
        assert!(
            Instant::now() < deadline,
            "only {} users buffered",
            users.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tasks.stop(Duration::from_secs(5)).await;
    assert!(users.iter().all(|u| u.status == "unmapped"), "{users:#?}");
    let discovered = store
        .scan_prefix::<edge_agent::events::Event>(edge_agent::store::TreeName::Outbox, [])
        .filter(|e| {
            matches!(
                e.as_ref().unwrap().1.body,
                edge_agent::events::EventBody::UserDiscovered(_)
            )
        })
        .count();
    assert_eq!(discovered, 12);
    let names = emulator.command_names();
    assert!(names.iter().any(|n| n.contains("EXIT")), "{names:?}");
    emulator.assert_nothing_destructive();
}
