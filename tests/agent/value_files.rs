//! Credential values beside sled, through the running agent: `edge-agent run` reading an AI06
//! emulator keeps each photo as a value file and only a small record naming it in sled; a
//! store written by an older build (photos inline in sled) is migrated at start-up, and a
//! `kill -9` in the middle of that migration loses nothing: the next start finishes it. An
//! operator reads the values back (`buffer credential`, over the control socket and MQTT),
//! each checked against its digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_agent::store::{TreeName, ValueDigest};
use edge_agent::sync::credentials::{self, StoredCredential, StoredValue};
use serde_json::Value;
use test_support::agent::mqtt::{ctl, keygen, texts};
use test_support::agent::open_store;
use test_support::agent::running::{local_json, RunningAgent as Agent};
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::mosquitto::Broker;
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

/// `edge-agent buffer credential --json` against the running agent (its control socket: the
/// store is the agent's while it runs, so the command cannot have read it itself).
fn socket_credentials(config: &Path, user: &str, more: &[&str]) -> Value {
    local_json(
        config,
        &[
            &["buffer", "credential", "--device", DEVICE, "--user", user],
            more,
        ]
        .concat(),
    )
}

/// `ctl --json buffer credential …` over MQTT: the reply's result.
fn mqtt_credentials(broker: &Broker, key: &Path, args: &[&str]) -> Value {
    let words = [&["--json", "buffer", "credential"], args].concat();
    let out = ctl(broker, Some(key), &words);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{words:?}: {stderr}");
    let reply: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reply["ok"], true, "{stdout}");
    reply["result"].clone()
}

#[test]
fn buffer_credential_returns_the_values_last_read_checked_against_their_digests() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let port = free_port();
    let mut text = config(dir.path(), port).replace(
        "[agent]\nid = \"gw-test\"",
        "[agent]\nid = \"gw1\"\nsite = \"s1\"",
    );
    text.push_str(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\nkeep_alive = \"5s\"\n{}\n",
        broker.port, admin.config_lines
    ));
    let mut agent = Agent::spawn(dir.path(), &text);
    let config = dir.path().join("agent.toml");
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "3", "--photo-kb", "8", "--cards", "true"],
    );
    agent.wait_for_log("complete read applied", 1);
    let users = local_json(&config, &["buffer", "list", "--device", DEVICE]);
    let user = users["users"][0]["user_id"].as_str().unwrap().to_string();

    // Over the socket: the card inline, the photo from its value file, named by its digest.
    let held = socket_credentials(&config, &user, &[]);
    assert_eq!(held["device"], DEVICE);
    assert_eq!(held["user"], user.as_str());
    let rows = held["credentials"].as_array().unwrap();
    let slots: Vec<u64> = rows.iter().map(|r| r["slot"].as_u64().unwrap()).collect();
    assert_eq!(slots, [11, 50], "{held}");
    let (card, photo) = (&rows[0], &rows[1]);
    assert_eq!(
        (card["kind"].as_str(), card["stored"].as_str()),
        (Some("card"), Some("inline"))
    );
    assert!(card["value"].is_number(), "{card}");
    assert_eq!(
        (photo["kind"].as_str(), photo["stored"].as_str()),
        (Some("photo"), Some("file"))
    );
    let value = photo["value"].as_str().unwrap();
    assert_eq!(value.len(), 8 * 1024);
    assert!(value.starts_with("/9j/"), "a base64 JPEG: {}", &value[..8]);
    assert_eq!(photo["bytes"], 8 * 1024);
    let digest = photo["digest"].as_str().unwrap();
    assert_eq!(digest, ValueDigest::of(value.as_bytes()).hex());
    let file = values_dir(dir.path()).join(digest);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), value);
    assert!(photo["damaged"].is_null(), "{photo}");

    // One slot into a file.
    let out = dir.path().join("photo.json");
    let only = socket_credentials(
        &config,
        &user,
        &["--slot", "50", "--out", out.to_str().unwrap()],
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(written, only);
    assert_eq!(written["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(written["credentials"][0], *photo);

    // Over MQTT: the same answer, and in pages keyed by the slot.
    let device = format!("device={DEVICE}");
    let user_arg = format!("user={user}");
    assert_eq!(
        mqtt_credentials(&broker, &admin.file, &[&device, &user_arg]),
        held
    );
    let first = mqtt_credentials(&broker, &admin.file, &[&device, &user_arg, "limit=1"]);
    assert_eq!(first["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(first["next"], "11");
    let second = mqtt_credentials(
        &broker,
        &admin.file,
        &[&device, &user_arg, "limit=1", "after=11"],
    );
    assert_eq!(second["credentials"][0], *photo);
    assert!(second["next"].is_null(), "{second}");

    // A value file that no longer matches its digest is reported, not returned; the card
    // still is.
    std::fs::write(&file, "x".repeat(value.len())).unwrap();
    let damaged = socket_credentials(&config, &user, &[]);
    let rows = damaged["credentials"].as_array().unwrap();
    assert_eq!(rows[0], *card);
    assert!(rows[1]["value"].is_null(), "a damaged value came back");
    let why = rows[1]["damaged"].as_str().unwrap();
    assert!(why.contains(digest), "{why}");
    agent.stop();
}
