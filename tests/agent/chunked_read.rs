//! A first read larger than one apply chunk, through the running agent: `edge-agent run`
//! applies the read of 600 users from the AI06 emulator in chunks; a crash right after the
//! first chunk was made durable (the debug build's `apply:crash-between-chunks` fault, an
//! abort like `kill -9`) loses nothing and sends nothing twice: after a restart the store is
//! consistent and every user was announced upstream exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_agent::events::EventBody;
use test_support::agent::open_store;
use test_support::agent::running::RunningAgent as Agent;
use test_support::agent::sync::{assert_consistent, config_text, emulator, queued_events, DEVICE};
use test_support::{free_port, tempdir};

const USERS: usize = 600;

#[test]
fn a_crash_between_chunks_of_a_first_read_loses_and_repeats_nothing() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let text = config_text(dir.path(), port, "poll_interval = \"1h\"\n").replace(
        "[log]\nfile = \"\"",
        &format!(
            "[log]\nfile = \"{}\"",
            dir.path().join("agent.log").display()
        ),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = Agent::on_with_env(
        &config,
        &log,
        &[("EDGE_AGENT_TEST_FAULT", "apply:crash-between-chunks")],
    );
    let users = USERS.to_string();
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", &users, "--photo-kb", "1", "--cards", "true"],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let crashed = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never died between two chunks (was the read applied in one piece?):\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!crashed.success(), "{crashed}");
    assert!(agent.log_text().contains("dies between two chunks"));

    let mut agent = Agent::on(&config, &log);
    agent.wait_for_log("complete read applied", 1);
    agent.stop();
    drop(terminal);

    let store = open_store(&dir.path().join("data"));
    assert_consistent(&store, DEVICE);
    let mut announced: BTreeMap<String, usize> = BTreeMap::new();
    for event in queued_events(&store) {
        if let EventBody::UserDiscovered(user) = event.body {
            *announced.entry(user.user_id).or_default() += 1;
        }
    }
    assert_eq!(announced.len(), USERS, "every user announced");
    assert!(
        announced.values().all(|&n| n == 1),
        "a user announced twice: {:?}",
        announced
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
}
