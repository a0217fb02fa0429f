//! Invariant 6: every state-changing command is authenticated, replay-proof and audited.
//! Unsigned, forged, expired, not-yet-valid and replayed commands are refused and change
//! nothing; a redelivered request executes once; nonces survive an agent restart.
//!
//! The agent runs with `allow_unsigned_reads = true` so the test can look at the log level and
//! the audit log with unsigned reads, which leave no audit entry of their own.

use std::time::Duration;

use bytes::Bytes;
use edge_agent::ctl::{fresh_client_id, Client};
use edge_agent::mqtt::broker::BrokerSettings;
use edge_agent::mqtt::command::{ErrorCode, Reply};
use edge_agent::mqtt::signing::{AdminKeyFile, Scope};
use serde_json::{json, Value};
use support_mqtt::{agent_config, keygen, Agent};
use test_support::agent::mqtt as support_mqtt;
use test_support::mosquitto::Broker;

fn settings(broker: &Broker) -> BrokerSettings {
    BrokerSettings {
        host: "127.0.0.1".into(),
        port: broker.port,
        tls: None,
        credentials: None,
        client_id: fresh_client_id().unwrap(),
        keep_alive: Duration::from_secs(30),
    }
}

/// A `log-level` request setting `level`, signed by `key` for the given window.
fn set_level(
    key: &AdminKeyFile,
    level: &str,
    issued_at: i64,
    validity: i64,
    nonce: &str,
) -> Vec<u8> {
    let args = json!({ "level": level });
    let scope = Scope {
        site: "s1",
        agent: "gw1",
        command: "log-level",
        args: &args,
    };
    let auth = key.sign(scope, issued_at, validity, nonce.into());
    json!({ "args": args, "auth": auth })
        .to_string()
        .into_bytes()
}

struct Probe {
    client: Client,
    correlation: u32,
}

impl Probe {
    async fn connect(broker: &Broker) -> Probe {
        let client = Client::connect(&settings(broker), "s1", "gw1", Duration::from_secs(10))
            .await
            .unwrap();
        Probe {
            client,
            correlation: 0,
        }
    }

    /// Sends with fresh correlation data.
    async fn send(&mut self, command: &str, payload: Vec<u8>) -> Reply {
        self.correlation += 1;
        let correlation = Bytes::from(self.correlation.to_be_bytes().to_vec());
        self.send_as(command, payload, correlation).await
    }

    async fn send_as(&mut self, command: &str, payload: Vec<u8>, correlation: Bytes) -> Reply {
        self.client
            .send_raw(command, payload, correlation)
            .await
            .unwrap()
    }

    /// The level in force, read unsigned.
    async fn level(&mut self) -> String {
        let reply = self.send("log-level", br#"{"args":{}}"#.to_vec()).await;
        reply.result.unwrap()["level"].as_str().unwrap().to_owned()
    }

    /// The audit log's admin-command details, newest first, read unsigned.
    async fn audited(&mut self) -> Vec<String> {
        let reply = self
            .send(
                "audit query",
                br#"{"args":{"operation":"admin_command","limit":100}}"#.to_vec(),
            )
            .await;
        let result = reply.result.expect("audit query works unsigned");
        result["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["actor"].as_str().unwrap(),
                    e["detail"].as_str().unwrap()
                )
            })
            .collect()
    }
}

fn code(reply: &Reply) -> ErrorCode {
    reply
        .error
        .as_ref()
        .map(|e| e.code)
        .expect("an error reply")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn start_agent(dir: &std::path::Path, broker: &Broker, admin: &support_mqtt::AdminKey) -> Agent {
    let config = agent_config(
        dir,
        broker.port,
        "allow_unsigned_reads = true\nclock_skew = \"30s\"",
        admin,
    );
    tokio::task::block_in_place(|| Agent::start(dir, &config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_change_nothing_and_accepted_ones_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let _agent = start_agent(dir.path(), &broker, &admin);
    let key = AdminKeyFile::read(&admin.file).unwrap();
    let mut probe = Probe::connect(&broker).await;
    assert_eq!(probe.level().await, "info");
    assert!(probe.audited().await.is_empty());

    // Unsigned: a read would pass (allow_unsigned_reads), a change never does.
    let reply = probe
        .send("log-level", br#"{"args":{"level":"debug"}}"#.to_vec())
        .await;
    assert_eq!(code(&reply), ErrorCode::Unauthorised, "{reply:?}");

    // Forged: signed by a stranger's key that claims the admin's name.
    let stranger = AdminKeyFile::generate("ops").unwrap();
    let reply = probe
        .send(
            "log-level",
            set_level(&stranger, "debug", now(), 60, "forged-0001"),
        )
        .await;
    assert_eq!(code(&reply), ErrorCode::Unauthorised, "{reply:?}");
    assert!(reply.error.unwrap().message.contains("does not verify"));

    // Tampered: a valid signature over other arguments.
    let mut tampered: Value =
        serde_json::from_slice(&set_level(&key, "warn", now(), 60, "tamper-0001")).unwrap();
    tampered["args"]["level"] = json!("trace");
    let reply = probe
        .send("log-level", tampered.to_string().into_bytes())
        .await;
    assert_eq!(code(&reply), ErrorCode::Unauthorised, "{reply:?}");

    // Expired beyond the 30 s skew tolerance, and signed too far in the future.
    let reply = probe
        .send(
            "log-level",
            set_level(&key, "debug", now() - 200, 60, "expired-001"),
        )
        .await;
    assert_eq!(code(&reply), ErrorCode::Expired, "{reply:?}");
    let reply = probe
        .send(
            "log-level",
            set_level(&key, "debug", now() + 300, 60, "future-0001"),
        )
        .await;
    assert_eq!(code(&reply), ErrorCode::NotYetValid, "{reply:?}");
    // Within the tolerance, an expired window is still accepted (clocks differ a little).
    let late = set_level(&key, "warn", now() - 70, 60, "late-000001");
    let reply = probe.send("log-level", late).await;
    assert!(reply.ok, "{reply:?}");

    // A signature for another command does not carry over.
    let mut moved: Value =
        serde_json::from_slice(&set_level(&key, "debug", now(), 60, "moved-00001")).unwrap();
    moved["args"] = json!({});
    let reply = probe.send("status", moved.to_string().into_bytes()).await;
    assert_eq!(code(&reply), ErrorCode::Unauthorised, "{reply:?}");

    assert_eq!(probe.level().await, "warn");
    assert_eq!(probe.audited().await, [r#"ops log-level {"level":"warn"}"#]);

    // Replayed: the same signed command again (new correlation data, as an attacker would).
    let first = set_level(&key, "debug", now(), 600, "replay-0001");
    assert!(probe.send("log-level", first.clone()).await.ok);
    let back = set_level(&key, "info", now(), 600, "replay-0002");
    assert!(probe.send("log-level", back).await.ok);
    let reply = probe.send("log-level", first.clone()).await;
    assert_eq!(code(&reply), ErrorCode::Replayed, "{reply:?}");
    assert_eq!(probe.level().await, "info", "the replay must not have run");
    assert_eq!(probe.audited().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_request_executes_once_and_nonces_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let mut agent = start_agent(dir.path(), &broker, &admin);
    let key = AdminKeyFile::read(&admin.file).unwrap();
    let mut probe = Probe::connect(&broker).await;

    // The same request with the same correlation data, as a QoS 1 redelivery looks.
    let request = set_level(&key, "debug", now(), 600, "dup-0000001");
    let correlation = Bytes::from_static(b"same-correlation");
    let first = probe
        .send_as("log-level", request.clone(), correlation.clone())
        .await;
    let second = probe
        .send_as("log-level", request.clone(), correlation.clone())
        .await;
    assert!(first.ok, "{first:?}");
    assert_eq!(first, second, "the duplicate is answered from the cache");
    assert_eq!(probe.audited().await.len(), 1, "executed once");

    // Reusing that correlation data for a different request is refused, not answered from
    // the cache.
    let other = set_level(&key, "warn", now(), 600, "dup-0000002");
    let reply = probe.send_as("log-level", other, correlation).await;
    assert_eq!(code(&reply), ErrorCode::CorrelationReused, "{reply:?}");
    assert_eq!(probe.level().await, "debug");

    // After a restart the reply cache is gone, but the nonce is in the store.
    probe.client.disconnect().await;
    agent.signal(libc::SIGTERM);
    let _ = tokio::task::block_in_place(|| agent.child.wait());
    drop(agent);
    let _agent = start_agent(dir.path(), &broker, &admin);
    let mut probe = Probe::connect(&broker).await;
    let reply = probe.send("log-level", request).await;
    assert_eq!(code(&reply), ErrorCode::Replayed, "{reply:?}");
    assert_eq!(
        probe.level().await,
        "info",
        "restart reset the level; replay did not set it"
    );
    assert_eq!(probe.audited().await.len(), 1);
}
