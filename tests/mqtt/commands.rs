//! Every command round trip through the real `edge-agent ctl` against the real agent and a
//! private mosquitto; malformed requests and wrong argument types get errors that name the
//! problem.

use bytes::Bytes;
use edge_agent::ctl::{fresh_client_id, Client};
use edge_agent::mqtt::broker::BrokerSettings;
use edge_agent::mqtt::command::{ErrorCode, Reply};
use edge_agent::mqtt::signing::AdminKeyFile;
use serde_json::{json, Value};
use std::time::Duration;
use support_mqtt::{agent_config, ctl, keygen, texts, Agent};
use test_support::agent::mqtt as support_mqtt;
use test_support::mosquitto::Broker;

/// Commands whose service is not in this build, with arguments an operator would give them.
/// Served by the sync engine and the outbox; they answer even with nothing to show.
const READS: [(&[&str], &str); 4] = [
    (&["buffer", "list"], "stats"),
    (&["conflicts", "list"], "conflicts"),
    (&["backups", "list"], "backups"),
    (&["dead-letters", "list"], "dead_letters"),
];

/// Device-scoped sync commands naming a device the agent does not have: each is refused naming
/// the `device` argument.
const DEVICE_SCOPED: [&[&str]; 6] = [
    &["sync-now", "device=nope"],
    &["map", "device=nope", "user=42", "person=p-1"],
    &["history", "device=nope"],
    &["backups", "create", "device=nope"],
    &[
        "conflicts",
        "resolve",
        "device=nope",
        "user=42",
        "use=device",
    ],
    &[
        "backups",
        "restore",
        "device=nope",
        "file=b1",
        "dry_run=true",
    ],
];

#[test]
fn every_command_round_trips_through_ctl() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let _agent = Agent::start(
        dir.path(),
        &agent_config(dir.path(), broker.port, "", &admin),
    );
    let key = Some(admin.file.as_path());

    let ok = |words: &[&str]| {
        let out = ctl(&broker, key, words);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{words:?}: {stderr}");
        stdout
    };

    let status = ok(&["status"]);
    assert!(status.contains("agent: gw1"), "{status}");
    assert!(status.contains("devices_configured: 1"), "{status}");
    assert!(status.contains("mqtt_connected: true"), "{status}");

    let health = ok(&["health"]);
    assert!(health.contains("state: up"), "{health}");

    assert!(ok(&["log-level"]).contains("level: info"));
    let changed = ok(&["log-level", "level=debug"]);
    assert!(changed.contains("previous: info"), "{changed}");
    assert!(ok(&["log-level"]).contains("level: debug"));

    let tail = ok(&["logs", "tail", "lines=2", "filter=signed command accepted"]);
    let lines: Vec<&str> = tail.lines().filter(|l| l.contains("accepted")).collect();
    assert_eq!(lines.len(), 2, "{tail}");

    // The query is itself a signed command, audited before it runs: it sees itself first.
    let audit = ok(&["audit", "query", "operation=admin_command", "limit=5"]);
    let rows: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("admin_command"))
        .collect();
    assert_eq!(rows.len(), 5, "{audit}");
    assert!(rows[0].contains("audit query"), "{audit}");
    assert!(audit.contains("log-level {\"level\":\"debug\"}"), "{audit}");

    let as_json = ctl(&broker, key, &["--json", "status"]);
    assert!(as_json.status.success());
    let reply: Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["result"]["agent"], "gw1");

    for (words, field) in READS {
        let out = ctl(&broker, key, &[&["--json"], words].concat());
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{words:?}: {stderr}");
        let reply: Value = serde_json::from_str(&stdout).unwrap();
        assert!(!reply["result"][field].is_null(), "{words:?}: {stdout}");
    }
    for words in DEVICE_SCOPED {
        let out = ctl(&broker, key, words);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), refused(), "{words:?}: {stderr}");
        assert!(
            stderr.contains("refused (bad_arguments): argument `device`: no synced device"),
            "{words:?}: {stderr}"
        );
    }
    // The configured ZK device is synced: a poll can be requested (it fails later, offline).
    assert!(ok(&["sync-now", "device=zk-1"]).contains("requested"));
    let out = ctl(&broker, key, &["dead-letters", "requeue"]);
    assert!(
        texts(&out).1.contains("argument `sequence`"),
        "{:?}",
        texts(&out)
    );

    // A command refused for its arguments left no trace in the audit log.
    let audit = ok(&["audit", "query", "limit=100"]);
    assert!(!audit.contains("backups restore"), "{audit}");
}

#[test]
fn unavailable_commands_still_require_a_signature() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let _agent = Agent::start(
        dir.path(),
        &agent_config(dir.path(), broker.port, "", &admin),
    );
    let out = ctl(&broker, None, &["backups", "restore", "file=b1"]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), refused());
    assert!(stderr.contains("refused (unauthorised)"), "{stderr}");
}

#[test]
fn wrong_arguments_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let _agent = Agent::start(
        dir.path(),
        &agent_config(dir.path(), broker.port, "", &admin),
    );
    let key = Some(admin.file.as_path());
    let refused = |words: &[&str]| {
        let out = ctl(&broker, key, words);
        assert_eq!(out.status.code(), refused(), "{words:?}");
        texts(&out).1
    };

    let err = refused(&["logs", "tail", "lines=abc"]);
    assert!(
        err.contains("refused (bad_arguments): argument `lines`: expected a whole number"),
        "{err}"
    );
    let err = refused(&["logs", "tail", "lines=0"]);
    assert!(err.contains("argument `lines`"), "{err}");
    let err = refused(&["logs", "tail", "bogus=1"]);
    assert!(
        err.contains("argument `bogus`: unknown argument; expected one of: filter, lines"),
        "{err}"
    );
    let err = refused(&["audit", "query", "operation=deletion"]);
    assert!(
        err.contains("argument `operation`: unknown audit operation"),
        "{err}"
    );
    let err = refused(&["audit", "query", "since=yesterday"]);
    assert!(
        err.contains("argument `since`: expected an RFC 3339 time"),
        "{err}"
    );
    let err = refused(&["log-level", "level=loud"]);
    assert!(err.contains("argument `level`"), "{err}");
    let err = refused(&["frobnicate"]);
    assert!(err.contains("refused (unknown_command)"), "{err}");
    assert!(err.contains("logs tail"), "{err}");

    // The level did not change through any of that.
    let out = ctl(&broker, key, &["log-level"]);
    assert!(texts(&out).0.contains("level: info"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_errors_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let config = agent_config(dir.path(), broker.port, "", &admin);
    let _agent = tokio::task::block_in_place(|| Agent::start(dir.path(), &config));
    let settings = BrokerSettings {
        host: "127.0.0.1".into(),
        port: broker.port,
        tls: None,
        credentials: None,
        client_id: fresh_client_id().unwrap(),
        keep_alive: Duration::from_secs(30),
    };
    let mut client = Client::connect(&settings, "s1", "gw1", Duration::from_secs(10))
        .await
        .unwrap();
    let error = |reply: Reply| reply.error.expect("an error reply");

    let err = error(send(&mut client, 1, b"{not json").await);
    assert_eq!(err.code, ErrorCode::MalformedRequest);
    assert!(err.message.contains("not valid JSON"), "{}", err.message);

    let err = error(send(&mut client, 2, b"[1,2]").await);
    assert_eq!(err.code, ErrorCode::MalformedRequest);
    assert!(err.message.contains("not a JSON object"), "{}", err.message);

    let err = error(send(&mut client, 3, br#"{"argz": {}}"#).await);
    assert_eq!(err.code, ErrorCode::MalformedRequest);
    assert!(err.message.contains("\"argz\""), "{}", err.message);

    let err = error(send(&mut client, 4, br#"{"args": "all"}"#).await);
    assert_eq!(err.code, ErrorCode::BadArguments);
    assert_eq!(err.field.as_deref(), Some("args"));

    let bad_auth = json!({"args": {}, "auth": {"key": "ops", "issued_at": "now",
        "expires_at": 1, "nonce": "n-00000001", "signature": "x"}});
    let err = error(send(&mut client, 5, bad_auth.to_string().as_bytes()).await);
    assert_eq!(err.code, ErrorCode::BadArguments);
    assert_eq!(err.field.as_deref(), Some("auth.issued_at"));

    // A well-formed signed request on the same connection still works.
    let key = AdminKeyFile::read(&admin.file).unwrap();
    let reply = client
        .call("status", &json!({}), Some(&key), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
}

/// Sends `payload` to `status` with one-byte correlation data `n`.
async fn send(client: &mut Client, n: u8, payload: &[u8]) -> Reply {
    client
        .send_raw("status", payload.to_vec(), Bytes::from(vec![n]))
        .await
        .unwrap()
}

#[test]
fn a_reply_over_the_brokers_packet_limit_becomes_a_too_large_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::with_config(|port, _| {
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_packet_size 4096\n")
    });
    let admin = keygen(dir.path(), "ops");
    let filler: String = (0..200)
        .map(|i| {
            format!(
                "2026-11-22T00:00:00.000Z INFO filler line {i:04} {}\n",
                "x".repeat(60)
            )
        })
        .collect();
    std::fs::write(dir.path().join("agent.log"), filler).unwrap();
    let agent = Agent::start(
        dir.path(),
        &agent_config(dir.path(), broker.port, "", &admin),
    );
    let key = Some(admin.file.as_path());

    let out = ctl(
        &broker,
        key,
        &["logs", "tail", "lines=200", "filter=filler"],
    );
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), refused(), "{stderr}");
    assert!(stderr.contains("refused (too_large)"), "{stderr}");

    // The connection survived (an oversized packet would have broken it) and small replies
    // still fit.
    let out = ctl(&broker, key, &["logs", "tail", "lines=3", "filter=filler"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("filler line 0199"), "{stdout}");
    assert_eq!(agent.log_text().matches(support_mqtt::CONNECTED).count(), 1);
}

/// The exit code of `ctl` when the agent refuses a command.
fn refused() -> Option<i32> {
    Some(i32::from(edge_agent::cli::ExitStatus::Refused.code()))
}
