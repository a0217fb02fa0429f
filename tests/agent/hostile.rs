//! The running agent against hostile input (invariant 5): `edge-agent run` with an emulated
//! AI06 whose first user-list page claims records `0..=u64::MAX`, and an upstream whose first
//! batch reply is padded past the agent's body bound. The agent must call the read incomplete
//! (the paging guard's reason in its log, no panic, no task lost), read completely on the next
//! poll, abandon the oversized reply and deliver the events again, each applied once, then
//! stop cleanly. Fails if the paging arithmetic overflows (the debug binary panics in the sync
//! task) or if the body bound is not wired into the client the forwarder uses.

use std::time::{Duration, Instant};

use edge_agent::upstream::client::MAX_REPLY_BODY;
use test_support::agent::running::RunningAgent;
use test_support::agent::sync::{emulator, upstream_config_file};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir};

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_page_numbers_and_an_oversized_reply_are_refused_without_harm() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    double.pad_next(1, MAX_REPLY_BODY + 1);
    let token = token_file(dir.path(), TOKEN);
    let port = free_port();
    let (config, log) = upstream_config_file(
        dir.path(),
        port,
        "poll_interval = \"2s\"\n",
        &double.url(),
        &token,
        "",
    );
    let mut agent = RunningAgent::on(&config, &log);
    let terminal = emulator(
        port,
        &dir.path().join("hostile.jsonl"),
        &[
            "--users",
            "4",
            "--photo-kb",
            "1",
            "--fault",
            "overflow:getuserlist:1",
        ],
    );
    // The guard's reason names the impossible range; then the next poll reads completely.
    agent.wait_for_log("0..=18446744073709551615", 1);
    agent.wait_for_log("complete read applied", 1);
    agent.wait_for_log("larger than", 1);

    // The discovered users' events: the padded reply was abandoned, so they went twice and
    // were applied once.
    let deadline = Instant::now() + PATIENCE;
    let keys = loop {
        let keys: Vec<String> = double.application_counts().into_keys().collect();
        if !keys.is_empty() && keys.iter().all(|key| double.deliveries(key) >= 2) {
            break keys;
        }
        assert!(Instant::now() < deadline, "no redelivery: {keys:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(keys.iter().all(|key| double.applications(key) == 1));

    agent.stop();
    let text = agent.log_text();
    assert!(!text.contains("panicked"), "{text}");
    // Dropping the emulator checks its log: nothing destructive reached the terminal.
    drop(terminal);
}
