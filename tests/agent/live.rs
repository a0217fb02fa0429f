//! The live picture through the running agent (issue 12, deliverables 2, 4 and 5): the retained
//! health message follows reads, users and the outbox; `edge-agent status --json` shows a slow
//! read's progress and exits 0/1/2 by level; `history --device` marks the read that lost users;
//! the opt-in metrics endpoint serves an exposition an independent parser accepts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::agent::mqtt::{Agent, Observer};
use test_support::agent::running::{bin, PATIENCE};
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::mosquitto::Broker;
use test_support::skip::skipped;
use test_support::{free_port, tempdir};

/// An agent config: gw1 at s1, one AI06 `door` on `port` with `device` lines, its log in
/// `dir/agent.log`, and `extra` tables appended.
fn agent_text(dir: &Path, port: u16, device: &str, extra: &str) -> String {
    let mut text = config_text(dir, port, device)
        .replace("id = \"gw-test\"", "id = \"gw1\"\nsite = \"s1\"")
        .replace(
            "[log]\nfile = \"\"",
            &format!(
                "[log]\nlevel = \"info\"\nfile = \"{}\"",
                dir.join("agent.log").display()
            ),
        );
    text.push_str(extra);
    text
}

/// `[upstream]` lines for an upstream nobody listens on: every event stays in the outbox.
fn unreachable_upstream(dir: &Path) -> String {
    format!(
        "[upstream]\nurl = \"http://127.0.0.1:{}\"\ntoken_file = \"{}\"\n",
        free_port(),
        token_file(dir, TOKEN).display()
    )
}

/// Runs `edge-agent WORDS --config CONFIG`; returns (exit code, stdout).
fn run(config: &Path, words: &[&str]) -> (i32, String) {
    let output = Command::new(bin())
        .args(words)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run edge-agent");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `edge-agent status --json`: (exit code, report).
fn status(config: &Path) -> (i32, Value) {
    let (code, stdout) = run(config, &["status", "--json"]);
    (code, serde_json::from_str(&stdout).unwrap_or(Value::Null))
}

/// Polls `status --json` until `wanted` holds of the report; returns the exit code and report.
fn status_until(config: &Path, what: &str, wanted: impl Fn(&Value) -> bool) -> (i32, Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, report) = status(config);
        if wanted(&report) {
            return (code, report);
        }
        assert!(
            Instant::now() < deadline,
            "no status with {what} within {PATIENCE:?}; last: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn level_code(report: &Value) -> i32 {
    match report["assessment"]["level"].as_str() {
        Some("ok") => 0,
        Some("warning") => 1,
        Some("critical") => 2,
        other => panic!("no level in the report: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_reads_users_and_the_outbox_and_history_marks_the_loss() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    let port = free_port();
    let text = agent_text(
        dir.path(),
        port,
        "poll_interval = \"2s\"\n",
        &format!(
            "{}[mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\nkeep_alive = \"5s\"\n",
            unreachable_upstream(dir.path()),
            broker.port
        ),
    );
    let mut health = Observer::start(broker.port, "edge/s1/gw1/health", None).await;
    let mut agent = tokio::task::block_in_place(|| Agent::start(dir.path(), &text));
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &[
            "--users",
            "5",
            "--photo-kb",
            "0",
            "--delete-users",
            "4,5",
            "--delete-after-ms",
            "8000",
        ],
    );
    let parse = |payload: &str| serde_json::from_str::<Value>(payload).unwrap_or_default();
    let first = health
        .wait_for("health after the first complete read", |m| {
            let json = parse(&m.payload);
            json["devices"][0]["last_complete_read"].is_string()
                && json["devices"][0]["users"]["total"] == 5
        })
        .await;
    let first = parse(&first.payload);
    assert_eq!(first["devices"][0]["id"], DEVICE);
    assert_eq!(first["devices"][0]["users"]["unmapped"], 5, "{first:#}");
    assert_eq!(first["devices"][0]["users"]["missing"], 0, "{first:#}");
    assert_eq!(first["buffer_users"], 5, "{first:#}");
    let depth = first["outbox_depth"].as_u64().expect("outbox_depth");
    assert!(depth >= 5, "5 discoveries wait for the upstream: {first:#}");

    // Two users are deleted on the keypad: the next complete read finds them gone, and health
    // is republished without waiting for the 60 s refresh.
    let after = health
        .wait_for("health after users vanished", |m| {
            parse(&m.payload)["devices"][0]["users"]["missing"] == 2
        })
        .await;
    let after = parse(&after.payload);
    assert_eq!(after["devices"][0]["users"]["total"], 5, "{after:#}");
    assert_eq!(after["devices"][0]["last_read_lost"], 2, "{after:#}");
    assert!(
        after["outbox_depth"].as_u64().unwrap() >= depth + 2,
        "the user_missing events are counted live: {after:#}"
    );
    assert_eq!(after["level"], "warning", "{after:#}");
    assert!(after["devices"][0]["last_complete_read"] != first["devices"][0]["last_complete_read"]);

    // The retained message is the current one.
    let mut late = Observer::start(broker.port, "edge/s1/gw1/health", None).await;
    let retained = late.wait_for("retained health", |m| m.retain).await;
    assert_eq!(
        parse(&retained.payload)["devices"][0]["users"]["missing"],
        2
    );

    tokio::task::block_in_place(|| agent.stop());
    let config = dir.path().join("agent.toml");
    let (code, drawing) = run(&config, &["history", "--device", DEVICE]);
    assert_eq!(code, 0, "{drawing}");
    let lines: Vec<&str> = drawing.lines().collect();
    let bars = lines[1].trim_start();
    assert!(
        bars.chars().all(|c| ('▁'..='█').contains(&c)) && bars.len() >= 2,
        "{drawing}"
    );
    let marks = lines[2];
    let lost_at = marks.find('^').expect("a marked read") - 2;
    assert_eq!(
        bars.chars().nth(lost_at),
        Some('▁'),
        "the mark is under the read that dropped to 3 users:\n{drawing}"
    );
    assert!(drawing.contains("3 users, 2 gone (4, 5)"), "{drawing}");
}

#[test]
fn status_shows_a_slow_reads_progress_and_exits_by_level() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let text = agent_text(dir.path(), port, "poll_interval = \"1h\"\n", "");
    let config = dir.path().join("agent.toml");
    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("agent started", 1);
    // 60 users with a card each, every reply 100 ms late: about 6 s of credential fetches.
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "60", "--photo-kb", "0", "--latency-ms", "100"],
    );
    let (_, during) = status_until(&config, "credentials part done", |report| {
        let reading = &report["devices"][0]["reading"];
        reading["phase"] == "credentials"
            && reading["credentials_done"].as_u64().unwrap_or(0) > 0
            && reading["credentials_done"].as_u64() < reading["credentials_total"].as_u64()
    });
    let reading = &during["devices"][0]["reading"];
    assert_eq!(reading["credentials_total"], 60, "{during:#}");
    assert!(reading["rate_per_s"].as_f64().unwrap() > 0.0, "{during:#}");
    assert!(reading["eta_s"].is_u64(), "{during:#}");
    assert!(reading["pages"].as_u64().unwrap() >= 1, "{during:#}");
    assert!(during["devices"][0]["lock_token"].is_u64(), "{during:#}");
    let (_, words) = run(&config, &["status"]);
    assert!(
        words.contains("credentials") && words.contains("of 60")
            || words.contains("last complete read"),
        "{words}"
    );

    // The store records the applied read a moment before the live picture closes the read
    // and drops the lock: wait for both.
    let (code, done) = status_until(&config, "the complete read", |report| {
        report["devices"][0]["last_complete_read_ms"].is_i64()
            && report["devices"][0]["reading"].is_null()
    });
    let device = &done["devices"][0];
    assert_eq!(device["users"]["total"], 60, "{done:#}");
    assert_eq!(device["last_read_users"], 60, "{done:#}");
    assert!(device["reading"].is_null(), "{done:#}");
    assert!(device["lock_token"].is_null(), "{done:#}");
    assert!(device["last_complete_read_age_s"].is_i64(), "{done:#}");
    assert_ne!(done["assessment"]["level"], "critical", "{done:#}");
    assert_eq!(code, level_code(&done), "{done:#}");
    let (_, words) = run(&config, &["status"]);
    assert!(words.contains("60 unmapped"), "{words}");

    // The terminal goes away: a warning (exit status 1).
    drop(terminal);
    let (code, gone) = status_until(&config, "the device not connected", |report| {
        report["devices"][0]["connected"] == false
    });
    assert_eq!(gone["assessment"]["level"], "warning", "{gone:#}");
    assert_eq!(code, 1, "{gone:#}");

    // The agent stops writing (killed, long ago): critical (exit status 2).
    agent.kill();
    let path = dir.path().join("data").join("status.json");
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    report["updated_at_ms"] = Value::from(report["updated_at_ms"].as_i64().unwrap() - 120_000);
    std::fs::write(&path, serde_json::to_vec(&report).unwrap()).unwrap();
    let (code, stale) = status(&config);
    assert_eq!(code, 2, "{stale:#}");
    assert_eq!(stale["stale"], true, "{stale:#}");
    let (code, words) = run(&config, &["status"]);
    assert_eq!(code, 2);
    assert!(
        words.contains("STALE") && words.contains("CRITICAL"),
        "{words}"
    );
}

/// The Python with `prometheus_client`: `PEER_PYTHON` (the test script's virtualenv), the
/// virtualenv under `target/`, or `python3`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("PEER_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// One scrape: (status line, body).
fn scrape(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        out[f"{sample.name}|{labels}"] = sample.value
    out[f"type|{family.name}"] = family.type
print(json.dumps(out))
"#;

#[test]
fn metrics_are_served_on_loopback_and_parse_with_prometheus_client() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{}", free_port());
    let text = agent_text(
        dir.path(),
        port,
        "poll_interval = \"1h\"\n",
        &format!(
            "{}[metrics]\nlisten = \"{address}\"\n",
            unreachable_upstream(dir.path())
        ),
    );
    let mut agent = Agent::spawn(dir.path(), &text);
    agent.wait_for_log("serving Prometheus metrics", 1);
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "4", "--photo-kb", "0"],
    );
    agent.wait_for_log("complete read applied", 1);
    // The outcome is reported just after the apply is logged.
    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let (status_line, body) = scrape(&address, "/metrics");
        assert!(status_line.contains("200"), "{status_line}");
        if body.contains("edge_agent_device_reads_total{device=\"door\",outcome=\"complete\"} 1") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no complete read counted:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (not_found, _) = scrape(&address, "/other");
    assert!(not_found.contains("404"), "{not_found}");

    let python = python();
    let check = Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .output();
    if !check.is_ok_and(|out| out.status.success()) {
        skipped(
            "prometheus_client",
            "metrics_are_served_on_loopback_and_parse_with_prometheus_client",
            &format!(
                "{} cannot import prometheus_client (pip install -r tests/peers/requirements.txt)",
                python.display()
            ),
        );
        return;
    }
    let mut parser = Command::new(&python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "prometheus_client refused the exposition: {}\n{body}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let samples: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let sample = |key: &str| {
        samples[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no sample {key} in {samples:#}"))
    };
    assert_eq!(
        sample("edge_agent_device_reads_total|device=door,outcome=complete"),
        1.0
    );
    assert_eq!(
        sample("edge_agent_device_users|device=door,status=unmapped"),
        4.0
    );
    assert_eq!(sample("edge_agent_device_lock_held|device=door"), 0.0);
    assert_eq!(
        sample("edge_agent_device_read_duration_seconds_count|device=door"),
        1.0
    );
    assert_eq!(
        sample("edge_agent_device_read_duration_seconds_bucket|device=door,le=+Inf"),
        1.0
    );
    assert!(sample("edge_agent_outbox_depth|") >= 4.0);
    assert!(sample("edge_agent_outbox_bytes|") > 0.0);
    sample("edge_agent_outbox_oldest_age_seconds|");
    sample("edge_agent_forward_events_total|result=delivered");
    sample("edge_agent_device_missing_users_total|device=door");
    sample("edge_agent_alerts_pending|");
    assert!(sample("edge_agent_store_durable_flushes_total|") >= 1.0);
    sample("edge_agent_store_bytes|");
    sample("edge_agent_log_dropped_lines_total|");
    assert_eq!(
        samples["type|edge_agent_device_read_duration_seconds"],
        "histogram"
    );
    assert_eq!(samples["type|edge_agent_device_reads"], "counter");
    agent.stop();
}

#[test]
fn a_metrics_address_off_loopback_is_refused_unless_allowed() {
    let dir = tempdir().unwrap();
    let text = agent_text(
        dir.path(),
        free_port(),
        "",
        "[metrics]\nlisten = \"0.0.0.0:9464\"\n",
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text).unwrap();
    let output = Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("metrics.listen") && stderr.contains("not a loopback address"),
        "{stderr}"
    );
    std::fs::write(
        &config,
        text.replace("[metrics]\n", "[metrics]\nallow_non_loopback = true\n"),
    )
    .unwrap();
    let output = Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

/// Kills the agent process when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_log_file_that_cannot_be_written_shows_in_status() {
    let dir = tempdir().unwrap();
    // A regular file where the log directory should be: the agent runs, its log file cannot.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "not a directory").unwrap();
    let log = blocker.join("agent.log");
    let text = config_text(dir.path(), free_port(), "").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let _agent = Killed(
        Command::new(bin())
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (code, report) = status_until(&config, "the log file's error", |report| {
        report["log"]["file_error"].is_string()
    });
    assert!(
        code >= 1,
        "a log that cannot be written is a warning: {report:#}"
    );
    assert_eq!(
        report["log"]["file"],
        log.display().to_string(),
        "{report:#}"
    );
    let reasons = report["assessment"]["reasons"].to_string();
    assert!(
        reasons.contains("the log file cannot be written"),
        "{report:#}"
    );
    let (_, text) = run(&config, &["status"]);
    assert!(text.contains("CANNOT BE WRITTEN"), "{text}");
}
