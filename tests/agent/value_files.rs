//! Credential values beside sled, through the running agent: `edge-agent run` reading an AI06
//! emulator keeps each photo as a value file and only a small record naming it in sled; a
//! store written by an older build (photos inline in sled) is migrated at start-up, and a
//! `kill -9` in the middle of that migration loses nothing: the next start finishes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_agent::store::TreeName;
use edge_agent::sync::credentials::{self, StoredCredential, StoredValue};
use test_support::agent::open_store;
use test_support::agent::running::RunningAgent as Agent;
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::{free_port, tempdir};

/// The config of one AI06 `door` on `port` with its log in `dir/agent.log`.
fn config(dir: &Path, port: u16) -> String {
    config_text(dir, port, "poll_interval = \"1h\"\n").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", dir.join("agent.log").display()),
    )
}

fn values_dir(dir: &Path) -> PathBuf {
    dir.join("data").join("store").join("values")
}

fn value_files(dir: &Path) -> usize {
    std::fs::read_dir(values_dir(dir))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// A distinct 8 KB photo for user `n`.
fn photo(n: usize) -> String {
    format!("{n:0>8192}")
}

#[test]
fn the_running_agent_keeps_photos_as_value_files_and_small_records_in_sled() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let mut agent = Agent::spawn(dir.path(), &config(dir.path(), port));
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "20", "--photo-kb", "8", "--cards", "true"],
    );
    agent.wait_for_log("complete read applied", 1);
    agent.stop();
    drop(terminal);

    let store = open_store(&dir.path().join("data"));
    let mut photos = 0;
    let mut cards = 0;
    for entry in store.scan_prefix::<StoredCredential>(TreeName::Credentials, b"") {
        let (_, stored) = entry.unwrap();
        match &stored.value {
            StoredValue::File { bytes, .. } => {
                assert!(*bytes >= 8 * 1024, "{stored:?}");
                let value = credentials::value(&store, &stored).unwrap();
                assert_eq!(value.as_text().len() as u64, *bytes);
                photos += 1;
            }
            StoredValue::Number(_) => cards += 1,
            StoredValue::Text(text) => panic!("a {}-byte value stayed inline", text.len()),
        }
    }
    assert_eq!((photos, cards), (20, 20));
    assert_eq!(value_files(dir.path()), 20);
}

#[test]
fn a_kill_during_the_start_up_migration_loses_nothing_and_the_next_start_finishes_it() {
    const USERS: usize = 3000;
    let dir = tempdir().unwrap();
    // A store as an older build left it: every photo inline in sled.
    {
        let store = open_store(&dir.path().join("data"));
        for n in 0..USERS {
            let key = credentials::key(DEVICE, &n.to_string(), 50).unwrap();
            let stored = StoredCredential {
                name: format!("user {n}"),
                privilege: 0,
                value: StoredValue::Text(photo(n)),
            };
            store.insert(TreeName::Credentials, key, &stored).unwrap();
        }
        store.make_durable_blocking().unwrap();
    }
    let port = free_port();
    let text = config(dir.path(), port);

    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("moving cached credential values out of the database", 1);
    std::thread::sleep(Duration::from_millis(300));
    agent.kill();
    let moved_before_kill = value_files(dir.path());
    assert!(
        !agent.log_text().contains("cached credential values moved"),
        "the migration finished before the kill ({moved_before_kill} files); nothing was \
         interrupted"
    );
    println!("killed mid-migration after {moved_before_kill} of {USERS} value files");

    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("cached credential values moved into value files", 1);
    agent.wait_for_log("agent started", 1);
    agent.stop();
    // Once done, a start finds nothing to move.
    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("agent started", 2);
    agent.stop();
    assert_eq!(
        agent.count("moving cached credential values out of the database"),
        2,
        "the third start migrated again:\n{}",
        agent.log_text()
    );

    let store = open_store(&dir.path().join("data"));
    for n in 0..USERS {
        let stored = credentials::get(&store, DEVICE, &n.to_string(), 50)
            .unwrap()
            .unwrap_or_else(|| panic!("credential of user {n} lost"));
        assert!(
            matches!(stored.value, StoredValue::File { .. }),
            "user {n} still inline"
        );
        assert_eq!(
            credentials::value(&store, &stored).unwrap().as_text(),
            photo(n),
            "user {n}"
        );
    }
    assert_eq!(
        value_files(dir.path()),
        USERS,
        "one file per value, none left over"
    );
}
