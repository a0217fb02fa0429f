//! A store written without compression (by an older build, or with `[store] compression =
//! false`) is rewritten by `edge-agent run` at start-up, and a `kill -9` during that rewrite
//! loses nothing: the next start finishes it. The states between the rewrite's later steps,
//! which last microseconds, are each produced and resumed by the store's unit tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_agent::store::TreeName;
use edge_agent::sync::credentials::{self, StoredCredential};
use serde_json::Value;
use test_support::agent::running::{local_json, RunningAgent as Agent};
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::{free_port, tempdir};

const USERS: &str = "4000";

/// One AI06 `door` on `port`, its log in `dir/agent.log`, with the store's compression as given.
fn config(dir: &Path, port: u16, compression: bool) -> String {
    config_text(
        dir,
        port,
        &format!("poll_interval = \"1h\"\n[store]\ncompression = {compression}\n"),
    )
    .replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", dir.join("agent.log").display()),
    )
}

fn store_dir(dir: &Path) -> PathBuf {
    dir.join("data").join("store")
}

/// What sled recorded about the store's compression in its `conf` file.
fn recorded_compression(dir: &Path) -> String {
    let conf = std::fs::read(store_dir(dir).join("conf")).unwrap();
    String::from_utf8_lossy(&conf)
        .lines()
        .find(|line| line.starts_with("use_compression:"))
        .unwrap()
        .to_string()
}

/// Everything an operator could read back: the buffer listing and every credential with its
/// value resolved from its value file.
fn contents(dir: &Path, config: &Path, compression: bool) -> (Value, Vec<(Vec<u8>, String)>) {
    let listing = local_json(config, &["buffer", "list", "--device", DEVICE]);
    let options = edge_agent::store::StoreOptions {
        compression,
        ..edge_agent::store::StoreOptions::at(store_dir(dir))
    };
    let store = edge_agent::store::Store::open(&options).unwrap().store;
    let credentials = store
        .scan_prefix::<StoredCredential>(TreeName::Credentials, b"")
        .map(|entry| {
            let (key, stored) = entry.unwrap();
            let value = credentials::value(&store, &stored).unwrap();
            (key.to_vec(), value.as_text().to_string())
        })
        .collect();
    (listing, credentials)
}

#[test]
fn an_uncompressed_store_is_rewritten_at_start_up_and_a_kill_during_the_rewrite_loses_nothing() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let config_file = dir.path().join("agent.toml");

    // An agent with compression off reads a terminal's users into its store.
    let mut agent = Agent::spawn(dir.path(), &config(dir.path(), port, false));
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", USERS, "--photo-kb", "1", "--cards", "true"],
    );
    agent.wait_for_log("complete read applied", 1);
    agent.stop();
    drop(terminal);
    assert_eq!(recorded_compression(dir.path()), "use_compression: false");
    let before = contents(dir.path(), &config_file, false);
    assert_eq!(
        before.0["users"].as_array().unwrap().len(),
        USERS.parse::<usize>().unwrap()
    );

    // Compression on: the start rewrites the store; kill -9 while the copy is being written.
    let text = config(dir.path(), port, true);
    let copy = PathBuf::from(format!("{}.recompressing", store_dir(dir.path()).display()));
    let mut agent = Agent::spawn(dir.path(), &text);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !copy.join("db").exists() {
        assert!(Instant::now() < deadline, "no copy appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    agent.kill();
    assert!(
        !agent.log_text().contains("store rewritten"),
        "the rewrite finished before the kill; nothing was interrupted"
    );
    assert_eq!(recorded_compression(dir.path()), "use_compression: false");

    // The next start discards the partial copy and rewrites the store completely.
    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("store rewritten with compression on", 1);
    // One log file for all the starts: the first agent's start was the first line.
    agent.wait_for_log("agent started", 2);
    agent.stop();
    assert!(
        agent.log_text().contains("discarding the partial copy"),
        "{}",
        agent.log_text()
    );
    let rewritten = agent.log_text();
    let rewritten = rewritten
        .lines()
        .find(|line| line.contains("store rewritten"));
    println!("{}", rewritten.unwrap_or_default());
    assert_eq!(recorded_compression(dir.path()), "use_compression: true");
    assert!(!copy.exists(), "the copy was left beside the store");

    // Once rewritten, a start finds nothing to do.
    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("agent started", 3);
    agent.stop();
    assert_eq!(agent.count("rewriting it"), 2, "{}", agent.log_text());

    let after = contents(dir.path(), &config_file, true);
    assert_eq!(before.0, after.0, "the buffer listing changed");
    assert_eq!(before.1.len(), after.1.len(), "credentials lost");
    assert!(before.1 == after.1, "a credential or its value changed");
}
