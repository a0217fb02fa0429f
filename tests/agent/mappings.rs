//! Mappings and conflicts end to end, through the real binaries: `edge-agent run` with the
//! upstream double, an emulated AI06 terminal, a private mosquitto and `edge-agent ctl`, and
//! `edge-agent migrate`.
//!
//! - The upstream maps users the agent has not read yet: the mappings are kept (not dropped
//!   while the cursor moves on) and `migrate`, the first complete read, shows the matching one
//!   `mapped` and the different one `conflict`.
//! - An admin `map` asks `GET /persons/{id}`: a 503 leaves it `pending` and it is asked again
//!   (backoff) until the 200 maps it; a 404 refuses it with the reason, audited.
//! - A mapping the upstream removes puts the user back to `unmapped`; nothing destructive
//!   reaches the terminal (the emulator checks every command it received when dropped).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use test_support::agent::mqtt::{ctl, keygen, texts, Agent};
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::mosquitto::Broker;
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir};

const PULLED: &str = "pulled mapping changes from the upstream";

fn cli(config: &Path, words: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(words)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{words:?}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Each buffered user's status.
fn statuses(config: &Path) -> Vec<(String, String)> {
    let listing = cli(config, &["buffer", "list"]);
    let mut found: Vec<(String, String)> = listing["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_string(),
                u["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

fn stop(agent: &mut Agent) {
    agent.signal(libc::SIGTERM);
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "agent stopped with {status}");
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, s)| (u.to_string(), s.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_map_conflict_refuse_retry_and_unmap_through_the_running_agent() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let double = UpstreamDouble::start(TOKEN).await;
    let token = token_file(dir.path(), TOKEN);
    let port = free_port();
    let mut text = config_text(dir.path(), port, "poll_interval = \"1h\"\n")
        .replace("id = \"gw-test\"", "id = \"gw1\"\nsite = \"s1\"")
        .replace(
            "[log]\nfile = \"\"",
            &format!(
                "[log]\nlevel = \"info\"\nfile = \"{}\"",
                dir.path().join("agent.log").display()
            ),
        );
    text.push_str(&format!(
        "[upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\nmapping_pull_interval = \"1s\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\nkeep_alive = \"5s\"\n{}\n",
        double.url(),
        token.display(),
        broker.port,
        admin.config_lines
    ));
    let config = dir.path().join("agent.toml");

    // 1. The upstream maps users 3 (same attributes) and 4 (another name) before the agent
    //    has read the terminal: nothing is buffered, yet the mappings must not be lost.
    double.add_mapping(
        DEVICE,
        "3",
        json!({"person_id": "P3", "name": "user3", "privilege": 0, "card": null}),
        false,
    );
    double.add_mapping(
        DEVICE,
        "4",
        json!({"person_id": "P4", "name": "Someone Else", "privilege": 0, "card": null}),
        false,
    );
    let mut agent = Agent::start(dir.path(), &text);
    agent.wait_for_log(PULLED, 1);
    stop(&mut agent);

    // 2. Migration, the first complete read, links the kept mappings.
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "4", "--photo-kb", "1", "--cards", "false"],
    );
    let migrated = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["migrate", "--wait", "30s", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    assert_eq!(
        statuses(&config),
        pairs(&[
            ("1", "unmapped"),
            ("2", "unmapped"),
            ("3", "mapped"),
            ("4", "conflict")
        ])
    );

    // 3. Admin maps through signed commands: P2 exists (after one 503), NOPE does not.
    let reads_before = std::fs::read_to_string(dir.path().join("agent.log"))
        .unwrap_or_default()
        .matches("complete read applied")
        .count();
    let mut agent = Agent::start(dir.path(), &text);
    agent.wait_for_log("complete read applied", reads_before + 1);
    let key = Some(admin.file.as_path());
    let out = ctl(&broker, key, &["conflicts", "list"]);
    let (listed, _) = texts(&out);
    assert!(
        out.status.success() && listed.contains("Someone Else") && listed.contains("has_password"),
        "the conflict keeps both versions: {:?}",
        texts(&out)
    );
    double.add_person(json!({"person_id": "P2", "name": "user2", "privilege": 0, "card": null}));
    double.persons_unavailable_next(1);
    let out = ctl(
        &broker,
        key,
        &["map", &format!("device={DEVICE}"), "user=2", "person=P2"],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    agent.wait_for_log("the mapping stays pending", 1);
    agent.wait_for_log("the upstream answered a pending map request", 1);
    let out = ctl(
        &broker,
        key,
        &["map", &format!("device={DEVICE}"), "user=1", "person=NOPE"],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    agent.wait_for_log("map refused: the upstream has no person NOPE", 1);

    // 4. The upstream removes the link of user 3.
    double.add_mapping(
        DEVICE,
        "3",
        json!({"person_id": "P3", "name": "user3", "privilege": 0, "card": null}),
        true,
    );
    agent.wait_for_log(PULLED, 2);
    stop(&mut agent);
    drop(terminal);

    assert_eq!(
        statuses(&config),
        pairs(&[
            ("1", "unmapped"),
            ("2", "mapped"),
            ("3", "unmapped"),
            ("4", "conflict")
        ])
    );
    let persons = double
        .requests()
        .iter()
        .filter(|seen| seen.endpoint == "persons")
        .map(|seen| seen.status)
        .collect::<Vec<_>>();
    assert_eq!(persons, vec![503, 200, 404], "GET /persons/{{id}} answers");
    let audit = cli(&config, &["audit", "query", "--user", "1"]).to_string();
    assert!(
        audit.contains("upstream has no person NOPE"),
        "the refusal is audited with its reason: {audit}"
    );
}
