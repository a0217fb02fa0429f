//! Heap trimming in the running agent: `edge-agent run` hands its free heap back to the system
//! after the store's start-up and again after each read (`ops::memory::trim_after_reads`), which
//! is what keeps the polling agent's resident set low (README "Performance", footprint row).
//! The trim logs a debug line with the resident set before and after; this test watches for it.
//! A read that finds the device unchanged is applied from the snapshot's digest without
//! loading the snapshot (`sync::snapshot::SnapshotDigest`); the read's log line says which.
//! A first read of more than `first_read_chunk` new users (default 100, the size that keeps its
//! peak under 32 MB in `benches/footprint.rs`) is committed in steps of that many users.

use std::path::Path;

use test_support::agent::running::RunningAgent as Agent;
use test_support::agent::sync::{config_text, emulator};
use test_support::{free_port, tempdir};

const TRIMMED: &str = "free heap returned to the system";

/// One AI06 `door` on `port` polled every second, the memory module's debug lines in the log.
fn config(dir: &Path, port: u16) -> String {
    config_text(dir, port, "poll_interval = \"1s\"\n").replace(
        "[log]\nfile = \"\"",
        &format!(
            "[log]\nlevel = \"info,edge_agent::ops::memory=debug\"\nfile = \"{}\"",
            dir.join("agent.log").display()
        ),
    )
}

#[test]
fn the_running_agent_returns_free_heap_after_start_up_and_after_each_read() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let mut agent = Agent::spawn(dir.path(), &config(dir.path(), port));
    agent.wait_for_log(TRIMMED, 1);
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "20", "--photo-kb", "8", "--cards", "true"],
    );
    agent.wait_for_log("complete read applied", 2);
    let log = agent.log_text();
    let applied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("complete read applied"))
        .collect();
    assert!(
        applied[0].contains("snapshot_loaded=true"),
        "the first read diffs against the (empty) snapshot: {}",
        applied[0]
    );
    assert!(
        applied[1].contains("snapshot_loaded=false"),
        "an unchanged read is applied from the digest, not by loading the snapshot: {}",
        applied[1]
    );
    // One trim at start-up, then one after the reads (a burst of facts shares a trim).
    agent.wait_for_log(TRIMMED, 3);
    let log = agent.log_text();
    let line = log.lines().find(|l| l.contains(TRIMMED)).unwrap();
    assert!(
        line.contains("before_kib") && line.contains("after_kib"),
        "{line}"
    );
    agent.stop();
}

#[test]
fn the_running_agent_commits_a_big_first_read_in_steps_of_the_default_size() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let mut agent = Agent::spawn(dir.path(), &config(dir.path(), port));
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "250", "--photo-kb", "1", "--cards", "true"],
    );
    agent.wait_for_log("complete read applied", 1);
    let log = agent.log_text();
    let stepped = log
        .lines()
        .find(|l| l.contains("first read: new users committed in steps"))
        .unwrap_or_else(|| panic!("the 250-user first read was not stepped:\n{log}"));
    assert!(
        stepped.contains("chunk=100") && stepped.contains("users=250"),
        "all 250 new users in steps of the default 100: {stepped}"
    );
    agent.stop();
}
