//! The running agent joins its parts: `edge-agent run` with an emulated AI06 terminal and the
//! upstream double. A mapping the upstream serves for a user the agent has read reaches the
//! sync engine (the one owner of mappings) through the puller `agent::run` wired to it, and
//! the buffer shows the user as mapped. Fails if the puller writes anywhere else, or is not
//! handed the engine.

use serde_json::json;
use test_support::agent::running::{local_json, RunningAgent};
use test_support::agent::sync::{emulator, upstream_config_file, DEVICE};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_pulled_by_the_running_agent_maps_the_buffered_user() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    let token = token_file(dir.path(), TOKEN);
    let port = free_port();
    let (config, log) = upstream_config_file(
        dir.path(),
        port,
        "poll_interval = \"1h\"\n",
        &double.url(),
        &token,
        "mapping_pull_interval = \"1s\"\n",
    );
    let mut agent = RunningAgent::on(&config, &log);
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "4", "--photo-kb", "1", "--cards", "false"],
    );
    agent.wait_for_log("complete read applied", 1);

    // The user is buffered now; the upstream links it to a person with the same attributes.
    double.add_mapping(
        DEVICE,
        "3",
        json!({"person_id": "P3", "name": "user3", "privilege": 0, "card": null}),
        false,
    );
    agent.wait_for_log("pulled mapping changes from the upstream", 1);

    agent.stop();
    drop(terminal);

    let listing = local_json(&config, &["buffer", "list"]);
    let status_of = |user: &str| {
        listing["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user_id"] == user)
            .map(|u| u["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of("3").as_deref(), Some("mapped"), "{listing:#}");
    assert_eq!(status_of("2").as_deref(), Some("unmapped"), "{listing:#}");
}
