//! kill -9 in the middle of polls: the real agent binary reads a 1,500-user emulator and is
//! killed at several moments of a read — early, and then just as the last credential of the
//! read arrived, while the diff is being applied. After every kill the store must hold either
//! no trace of a read or all of it — or, for a first read applied in steps of
//! `[monitor] first_read_chunk`, a whole number of steps and no complete read yet; the final
//! run completes and leaves a consistent store.
//!
//! Until a read has been applied, every round of a fresh agent is a backup (a full read that
//! ends with the `getuserinfo` of the last user): the test watches the emulator's command log
//! for it and kills the agent 0, 2, 5, 10 … ms later, stepping through the apply step until a
//! kill lands after the commit.

use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::{backup, snapshot, state};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sync_support::{DEVICE, PATIENCE};
use test_support::agent::sync as sync_support;

/// When a run is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// This many ms after the agent started.
    After(u64),
    /// Once the read's last credential was asked for (plus a few ms).
    LastCredential,
}

/// How often the agent has asked for the last user's card (the last fetch of a full read).
fn last_credential_fetches(command_log: &Path) -> usize {
    std::fs::read_to_string(command_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["cmd"] == "getuserinfo" && line["message"]["enrollid"] == 1500)
        .count()
}

fn start_agent(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("edge-agent starts")
}

/// Opens the store (the agent is dead, so its lock is free), checks it, and closes it again.
fn check(store_dir: &Path, backups: &Path) -> (u64, usize) {
    let store = Store::open(&StoreOptions::at(store_dir)).unwrap().store;
    sync_support::assert_consistent(&store, DEVICE);
    for info in backup::list(backups, None).unwrap() {
        backup::file::verify(&info.path).expect("every listed backup is whole");
    }
    let generation = state::load(&store, DEVICE).unwrap().generation;
    (generation, snapshot::load(&store, DEVICE).unwrap().len())
}

#[test]
fn kill_9_during_polls_leaves_no_half_applied_read() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    let log = dir.path().join("agent.log");
    let text = sync_support::config_text(dir.path(), port, "")
        .replace("file = \"\"", &format!("file = \"{}\"", log.display()));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let store_dir = dir.path().join("data").join("store");
    let backups = dir.path().join("data").join("backups");
    let emulator = sync_support::emulator(
        port,
        &dir.path().join("crash.jsonl"),
        &["--users", "1500", "--photo-kb", "0"],
    );

    let command_log = dir.path().join("crash.jsonl");
    let mut previous = 0;
    let kills = [(Kill::After(300), 0), (Kill::After(1200), 0)]
        .into_iter()
        .chain([0, 2, 5, 10, 20, 40, 80, 160, 320, 640].map(|ms| (Kill::LastCredential, ms)));
    for (when, extra_ms) in kills {
        if when == Kill::LastCredential && previous > 0 {
            break; // the commit point is bracketed; later runs would only poll
        }
        let mut agent = start_agent(&config);
        if when == Kill::LastCredential {
            let seen = last_credential_fetches(&command_log);
            let deadline = Instant::now() + PATIENCE;
            while last_credential_fetches(&command_log) == seen {
                assert!(Instant::now() < deadline, "the agent never finished a read");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let wait = match when {
            Kill::After(ms) => ms,
            Kill::LastCredential => extra_ms,
        };
        std::thread::sleep(Duration::from_millis(wait));
        agent.kill().unwrap(); // SIGKILL
        agent.wait().unwrap();
        let (generation, users) = check(&store_dir, &backups);
        eprintln!(
            "killed {when:?} +{extra_ms} ms: read {} (generation {generation}), {users} users in the snapshot",
            if generation > previous { "applied" } else { "not applied" }
        );
        previous = generation;
        // The default `first_read_chunk` (100) steps this first read: a kill between two
        // steps leaves a consistent store (checked above) that knows a whole number of steps
        // and no complete read yet; the next run adds the rest.
        assert!(
            users == 0 || users == 1500 || (generation == 0 && users % 100 == 0),
            "a read is applied whole, in whole steps, or not at all: {users} users at \
             generation {generation}"
        );
    }
    if previous == 0 {
        eprintln!(
            "note: every kill landed before the commit (a slow machine); the final run commits"
        );
    }

    let applied_before = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("complete read applied")
        .count();
    let mut agent = start_agent(&config);
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("complete read applied")
        .count()
        == applied_before
    {
        assert!(
            Instant::now() < deadline,
            "the final run never completed a read"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rc = unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(agent.wait().unwrap().success(), "clean stop");
    let (generation, users) = check(&store_dir, &backups);
    assert!(generation >= 1);
    assert_eq!(users, 1500);
    emulator.commands();
    emulator.stop();
}
