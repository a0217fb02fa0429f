//! Heap trimming in the running agent: `edge-agent run` hands its free heap back to the system
//! after the store's start-up and again after each read (`ops::memory::trim_after_reads`), which
//! is what keeps the polling agent's resident set low (README "Performance", footprint row).
//! The trim logs a debug line with the resident set before and after; this test watches for it.
//! A read that finds the device unchanged is applied from the snapshot's digest without
//! loading the snapshot (`sync::snapshot::SnapshotDigest`); the read's log line says which.
//! A first read of more than `first_read_chunk` new users (default 100, the size that keeps its
//! peak under 32 MB in `benches/footprint.rs`) is committed in steps of that many users.
//! A poll whose device lists exactly what the last complete read listed is applied without
//! looking up a cached credential (`listed_as_before=true` in its log line), until the device's
//! list or the credential cache moves (`device::PolledUsers`, `sync::listed`), and across a
//! restart, since the named list is kept in the store.

use std::path::Path;
use std::process::Command;

use test_support::agent::running::{bin, local_json, RunningAgent as Agent};
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

const APPLIED: &str = "complete read applied";

/// The agent's "complete read applied" lines so far.
fn applied_lines(agent: &Agent) -> Vec<String> {
    agent
        .log_text()
        .lines()
        .filter(|line| line.contains(APPLIED))
        .map(str::to_string)
        .collect()
}

/// Waits for a "complete read applied" line holding `needle`; returns the lines so far and
/// the index of the first such line.
fn wait_for_applied(agent: &mut Agent, needle: &str) -> (Vec<String>, usize) {
    agent.wait_for_log_where(needle, |log| {
        log.lines()
            .any(|line| line.contains(APPLIED) && line.contains(needle))
    });
    let lines = applied_lines(agent);
    let found = lines.iter().position(|line| line.contains(needle)).unwrap();
    (lines, found)
}

/// The user names the buffer holds, in user-id order (read from the store, agent stopped).
fn buffered_names(config: &Path) -> Vec<String> {
    let listing = local_json(config, &["buffer", "list"]);
    let mut users: Vec<(String, String)> = listing["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_string(),
                u["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    users.sort();
    users.into_iter().map(|(_, name)| name).collect()
}

#[test]
fn an_unchanged_list_skips_the_credential_lookups_until_the_credential_cache_moves() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let mut agent = Agent::spawn(dir.path(), &config(dir.path(), port));
    let knobs = ["--users", "3", "--photo-kb", "1", "--cards", "true"];
    let first = emulator(
        port,
        &dir.path().join("terminal-1.jsonl"),
        &[&knobs[..], &["--names", "Ann,Bob,Cid"]].concat(),
    );
    // The first read is the first backup (due at once), which fetches and caches every
    // credential; the poll after it finds the same list.
    let (lines, cheap) = wait_for_applied(&mut agent, "listed_as_before=true");
    assert!(
        cheap == 1 && lines[cheap].contains("changed=0"),
        "the first poll after the first backup named the backup's list: {lines:#?}"
    );
    first.stop();
    // The same terminal with its users renamed: the list (ids, slots, privileges) is the same,
    // and it refuses the second credential fetch it is asked for.
    let _second = emulator(
        port,
        &dir.path().join("terminal-2.jsonl"),
        &[
            &knobs[..],
            &[
                "--names",
                "Ann2,Bob2,Cid2",
                "--fault",
                "refuse:getuserinfo:2",
            ],
        ]
        .concat(),
    );
    let seen = applied_lines(&agent).len();
    agent.wait_for_log(APPLIED, seen + 1);
    let line = applied_lines(&agent)[seen].clone();
    assert!(
        line.contains("listed_as_before=true") && line.contains("changed=0"),
        "a poll fetches no held credential, so it cannot see a rename: {line}"
    );
    // A backup fetches every credential: the first comes back with the new name and is
    // cached, the second is refused, so the backup fails and applies nothing.
    let backup = Command::new(bin())
        .args(["backup", "create", "--device", "door", "--config"])
        .arg(dir.path().join("agent.toml"))
        .output()
        .unwrap();
    assert!(
        !backup.status.success(),
        "the backup was refused: {backup:?}"
    );
    let seen = applied_lines(&agent).len();
    agent.wait_for_log(APPLIED, seen + 1);
    let line = applied_lines(&agent)[seen].clone();
    assert!(
        line.contains("listed_as_before=false") && line.contains("changed=1"),
        "the credential cache moved, so the poll read in full and found the rename: {line}"
    );
    agent.wait_for_log(APPLIED, seen + 2);
    let line = applied_lines(&agent)[seen + 1].clone();
    assert!(line.contains("listed_as_before=true"), "{line}");
    agent.stop();
    let config = dir.path().join("agent.toml");
    assert_eq!(buffered_names(&config), ["Ann2", "Bob", "Cid"]);
}

#[test]
fn a_user_deleted_at_the_terminal_ends_the_cheap_polls_and_is_reported_missing() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let mut agent = Agent::spawn(dir.path(), &config(dir.path(), port));
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &[
            "--users",
            "3",
            "--photo-kb",
            "1",
            "--delete-users",
            "2",
            "--delete-after-ms",
            "4500",
        ],
    );
    let (lines, missing) = wait_for_applied(&mut agent, "missing=1");
    assert!(
        lines[..missing]
            .iter()
            .any(|line| line.contains("listed_as_before=true")),
        "a cheap poll came before the deletion: {lines:#?}"
    );
    assert!(
        lines[missing].contains("listed_as_before=false"),
        "the changed list was read in full: {}",
        lines[missing]
    );
    agent.stop();
}

#[test]
fn the_first_poll_after_a_restart_is_cheap_when_nothing_moved_meanwhile() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let config_text = config(dir.path(), port);
    let mut agent = Agent::spawn(dir.path(), &config_text);
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "3", "--photo-kb", "1", "--cards", "true"],
    );
    wait_for_applied(&mut agent, "listed_as_before=true");
    agent.stop();
    let before = applied_lines(&agent).len();
    // The same store and terminal: the list named by the last poll is kept in the store.
    let mut agent = Agent::spawn(dir.path(), &config_text);
    agent.wait_for_log(APPLIED, before + 1);
    let line = applied_lines(&agent)[before].clone();
    assert!(
        line.contains("listed_as_before=true") && line.contains("changed=0"),
        "the first poll after the restart named the list kept in the store: {line}"
    );
    agent.stop();
}
