//! `edge-agent migrate` run twice as the technician runs it (the real binary, the emulator
//! over a real socket) gives the same store; the technician's listings read it back.

use edge_agent::events::Event;
use edge_agent::store::{Store, StoreOptions, TreeName};
use edge_agent::sync::buffer::{self, BufferRecord};
use edge_agent::sync::credentials::StoredCredential;
use edge_agent::sync::snapshot::{self, SnapshotUser};
use edge_agent::sync::{history, state};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use sync_support::DEVICE;
use test_support::agent::sync as sync_support;

/// What migrate is responsible for: buffer records, snapshot, queued events, cached
/// credentials. (A user's effective last-seen time is the device's last complete read, kept
/// in its sync state, so it moves forward without rewriting any of these.)
#[derive(Debug, PartialEq)]
struct Picture {
    buffer: Vec<BufferRecord>,
    snapshot: BTreeMap<String, SnapshotUser>,
    events: Vec<Event>,
    credentials: Vec<(Vec<u8>, StoredCredential)>,
}

fn picture(store_dir: &Path) -> (Picture, u64) {
    let store = Store::open(&StoreOptions::at(store_dir)).unwrap().store;
    let picture = Picture {
        buffer: store
            .scan_prefix::<BufferRecord>(TreeName::Buffer, [])
            .map(|entry| entry.unwrap().1)
            .collect(),
        snapshot: snapshot::load(&store, DEVICE).unwrap(),
        events: sync_support::queued_events(&store),
        credentials: store
            .scan_prefix::<StoredCredential>(TreeName::Credentials, [])
            .collect::<Result<_, _>>()
            .unwrap(),
    };
    sync_support::assert_consistent(&store, DEVICE);
    let last_read = state::load(&store, DEVICE).unwrap().last_complete_read_ms;
    for view in buffer::list(&store, Some(DEVICE), None).unwrap() {
        assert_eq!(
            Some(view.last_seen_at_ms),
            last_read,
            "user {}",
            view.user_id
        );
    }
    assert_eq!(
        history::list(&store, DEVICE)
            .unwrap()
            .last()
            .unwrap()
            .added
            .len() as u64,
        if state::load(&store, DEVICE).unwrap().generation == 1 {
            20
        } else {
            0
        }
    );
    (picture, state::load(&store, DEVICE).unwrap().generation)
}

fn edge_agent(args: &[&str], config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "edge-agent {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn migrate_twice_gives_the_same_store_and_the_listings_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, sync_support::config_text(dir.path(), port, "")).unwrap();
    let store_dir = dir.path().join("data").join("store");
    let emulator = sync_support::emulator(
        port,
        &dir.path().join("migrate.jsonl"),
        &["--users", "20", "--photo-kb", "1"],
    );

    let first = edge_agent(&["migrate", "--wait", "30s"], &config);
    assert!(
        first.contains("door: complete read of 20 users, 20 newly buffered"),
        "{first}"
    );
    let (after_first, generation) = picture(&store_dir);
    assert_eq!((after_first.buffer.len(), generation), (20, 1));

    // The emulator reconnects to the second run's listener.
    let second = edge_agent(&["migrate", "--wait", "30s"], &config);
    assert!(
        second.contains("door: complete read of 20 users, 0 newly buffered"),
        "{second}"
    );
    let (after_second, generation) = picture(&store_dir);
    assert_eq!(generation, 2, "the second read is recorded in the history");
    // Field by field: a failure names what changed instead of printing photos.
    assert_eq!(
        after_second.buffer, after_first.buffer,
        "buffer records changed"
    );
    assert_eq!(
        after_second.snapshot, after_first.snapshot,
        "snapshot changed"
    );
    assert_eq!(
        after_second.events.len(),
        after_first.events.len(),
        "new events were queued"
    );
    assert!(
        after_second.events == after_first.events,
        "queued events changed"
    );
    assert!(
        after_second.credentials == after_first.credentials,
        "cached credentials changed"
    );

    let listing = edge_agent(&["buffer", "list"], &config);
    assert!(
        listing.contains("20 users: 20 unmapped, 0 pending, 0 mapped, 0 conflict, 0 missing"),
        "{listing}"
    );
    assert!(listing.contains("user7"), "{listing}");
    let audit = edge_agent(
        &[
            "audit",
            "query",
            "--operation",
            "discovered",
            "--limit",
            "5",
        ],
        &config,
    );
    assert_eq!(
        audit.lines().filter(|l| l.contains("discovery")).count(),
        5,
        "{audit}"
    );
    assert!(audit.contains("(more: --after "), "{audit}");
    let user7 = edge_agent(&["audit", "query", "--user", "7", "--json"], &config);
    let entries: serde_json::Value = serde_json::from_str(&user7).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{user7}");
    assert_eq!(entries[0]["operation"], "discovery");

    // The backup commands through the binary too (the emulator reconnects to each run).
    let created = edge_agent(
        &["backup", "create", "--device", DEVICE, "--wait", "30s"],
        &config,
    );
    assert!(
        created.contains("20 users") && created.contains("40 credentials"),
        "{created}"
    );
    let listed = edge_agent(&["backup", "list"], &config);
    assert_eq!(
        listed.lines().count(),
        2,
        "a header and one backup: {listed}"
    );
    let file = listed.split_whitespace().last().unwrap();
    let dry = edge_agent(
        &[
            "backup",
            "restore",
            "--device",
            DEVICE,
            file,
            "--dry-run",
            "--wait",
            "30s",
        ],
        &config,
    );
    assert!(dry.contains("nothing is missing on the device"), "{dry}");

    let commands = emulator.commands();
    assert!(
        commands.iter().all(|c| c["cmd"] != "setuserinfo"),
        "migrate only reads"
    );
    emulator.stop();
}
