//! Keys that stay unique forever, through the running agent: after its store is salvaged
//! (damaged, moved aside, replaced by an empty one), `edge-agent run` starts a new store epoch.
//! The users it reads again are new facts under new keys, which the upstream double applies
//! (rather than answering `duplicate` because read generation 1 came round again), and a
//! signed command issued before the salvage is refused even though the nonce that would have
//! caught its replay was lost with the old store.

use std::time::Duration;

use bytes::Bytes;
use edge_agent::ctl::{fresh_client_id, Client};
use edge_agent::mqtt::broker::BrokerSettings;
use edge_agent::mqtt::command::ErrorCode;
use edge_agent::mqtt::signing::AdminKeyFile;
use serde_json::json;
use test_support::agent::mqtt::{keygen, CONNECTED};
use test_support::agent::running::RunningAgent;
use test_support::agent::sync::{config_text, emulator};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::mosquitto::Broker;
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir};

const PATIENCE: Duration = Duration::from_secs(60);
const USERS: usize = 4;

/// `user_discovered` applications the double counted, per store epoch.
fn discovered_per_epoch(double: &UpstreamDouble) -> std::collections::BTreeMap<String, usize> {
    let mut per_epoch = std::collections::BTreeMap::new();
    for (fact, applied) in double.fact_counts() {
        if fact.kind == "user_discovered" {
            *per_epoch.entry(fact.epoch).or_default() += applied as usize;
        }
    }
    per_epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_salvage_new_facts_get_new_keys_and_commands_signed_before_are_refused() {
    let dir = tempdir().unwrap();
    let broker = tokio::task::block_in_place(|| Broker::start(false));
    let admin = tokio::task::block_in_place(|| keygen(dir.path(), "ops"));
    let double = UpstreamDouble::start(TOKEN).await;
    let token = token_file(dir.path(), TOKEN);
    let port = free_port();
    let log = dir.path().join("agent.log");
    let mut text = config_text(dir.path(), port, "poll_interval = \"1h\"\n").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nlevel = \"info\"\nfile = \"{}\"", log.display()),
    );
    text = text.replace(
        "[agent]\nid = \"gw-test\"",
        "[agent]\nid = \"gw-test\"\nsite = \"s1\"",
    );
    text.push_str(&format!(
        "[upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\nkeep_alive = \"5s\"\n{}\n",
        double.url(),
        token.display(),
        broker.port,
        admin.config_lines
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let users = USERS.to_string();
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", &users, "--photo-kb", "0"],
    );

    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log(CONNECTED, 1);
    agent.wait_for_log("complete read applied", 1);
    test_support::wait_for(PATIENCE, "the first epoch's users upstream", || {
        discovered_per_epoch(&double).values().sum::<usize>() == USERS
    })
    .await;

    // A signed command, accepted once; its exact bytes are kept for a replay.
    let settings = BrokerSettings {
        host: "127.0.0.1".into(),
        port: broker.port,
        tls: None,
        credentials: None,
        client_id: fresh_client_id().unwrap(),
        keep_alive: Duration::from_secs(30),
    };
    let key = AdminKeyFile::read(&admin.file).unwrap();
    let mut client = Client::connect(&settings, "s1", "gw-test", Duration::from_secs(10))
        .await
        .unwrap();
    let signed = client
        .request_payload(
            "log-level",
            &json!({}),
            Some(&key),
            Duration::from_secs(600),
        )
        .unwrap();
    let reply = client
        .send_raw("log-level", signed.clone(), Bytes::from_static(b"first"))
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    client.disconnect().await;
    agent.stop();

    // Damage the store: sled refuses a garbage snapshot file, so the next start salvages it.
    tokio::time::sleep(Duration::from_millis(1100)).await; // the salvage is strictly later
    let store_dir = dir.path().join("data").join("store");
    std::fs::write(store_dir.join("snap.00000000FFFFFFFF"), [0x5a; 300]).unwrap();
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("the store was damaged", 1);
    agent.wait_for_log(CONNECTED, 2);
    agent.wait_for_log("complete read applied", 2);
    test_support::wait_for(PATIENCE, "the new epoch's users upstream", || {
        discovered_per_epoch(&double).values().sum::<usize>() == 2 * USERS
    })
    .await;
    let per_epoch = discovered_per_epoch(&double);
    assert_eq!(per_epoch.len(), 2, "two epochs: {per_epoch:?}");
    assert!(per_epoch.values().all(|n| *n == USERS), "{per_epoch:?}");
    assert!(double.keys_with_two_payloads().is_empty());

    // The replay of the command signed before the salvage is refused; a fresh one runs.
    let mut client = Client::connect(
        &BrokerSettings {
            client_id: fresh_client_id().unwrap(),
            ..settings
        },
        "s1",
        "gw-test",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let reply = client
        .send_raw("log-level", signed, Bytes::from_static(b"replay"))
        .await
        .unwrap();
    let error = reply.error.expect("the replay is refused");
    assert_eq!(error.code, ErrorCode::Replayed, "{error:?}");
    assert!(error.message.contains("salvaged"), "{}", error.message);
    let fresh = client
        .call("log-level", &json!({}), Some(&key), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(fresh.ok, "{fresh:?}");
    client.disconnect().await;
    agent.stop();
}
