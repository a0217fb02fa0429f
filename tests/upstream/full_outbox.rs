//! The picture survives a full outbox, through the running agent: with the upstream down and
//! a small outbox, `edge-agent run` keeps applying complete reads (buffer, history, missing
//! detection) when the outbox refuses their events, marks the device "upstream behind since
//! generation G" in its status, and once the upstream is back and the outbox has room it
//! queues a catch-up, so the upstream ends up knowing every user the buffer holds.
//!
//! Prints the catch-up's size and how long it took to drain after the outage ended.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::agent::running::{local_json, RunningAgent};
use test_support::agent::sync::{config_text, emulator};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir};

const PATIENCE: Duration = Duration::from_secs(60);
const FIRST_USERS: usize = 20;
const ENROLLED: usize = 30;

/// The status file the running agent rewrites every few seconds, once `condition` holds.
async fn status_where(data: &Path, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status: Value = std::fs::read_to_string(data.join("status.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        if condition(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Users the upstream double has applied a `user_discovered` for.
fn discovered_upstream(double: &UpstreamDouble) -> BTreeSet<String> {
    double
        .fact_counts()
        .into_keys()
        .filter(|fact| fact.kind == "user_discovered")
        .map(|fact| fact.user)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_while_the_outbox_is_full_and_a_catch_up_converges_the_upstream() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    double.set_outage(true);
    let token = token_file(dir.path(), TOKEN);
    let port = free_port();
    let log = dir.path().join("agent.log");
    let mut text = config_text(dir.path(), port, "poll_interval = \"1s\"\n").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    // Room for the first read's events (which fill more than half of it, so no catch-up fits
    // before the upstream is back), not for the enrolments that follow.
    text.push_str(&format!(
        "[upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\noutbox_max_bytes = \"4KB\"\n\
         max_backoff = \"1s\"\n",
        double.url(),
        token.display()
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();

    let mut agent = RunningAgent::on(&config, &log);
    let first = FIRST_USERS.to_string();
    let enrol = ENROLLED.to_string();
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &[
            "--users",
            &first,
            "--photo-kb",
            "0",
            "--enrol",
            &enrol,
            "--enrol-after-ms",
            "2000",
        ],
    );
    agent.wait_for_log_where("a read applied locally past a full outbox", |text| {
        text.contains("the outbox is full: the read is applied locally")
    });

    let data = dir.path().join("data");
    let status = status_where(
        &data,
        "the device behind and the outbox refusing",
        |status| {
            status["devices"][0]["upstream_behind_since_generation"].is_u64()
                && status["upstream"]["outbox"]["refusing"] == true
        },
    )
    .await;
    let behind_since = status["devices"][0]["upstream_behind_since_generation"]
        .as_u64()
        .unwrap();
    assert!(behind_since >= 2, "the first read fitted: {status:#}");
    let plain = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(
        plain.contains(&format!("upstream behind since read #{behind_since}")),
        "{plain}"
    );
    assert!(
        plain.contains("punches too: terminals keep them"),
        "{plain}"
    );

    // The upstream comes back: the queue drains, a catch-up follows and drains too.
    let outage_ended = Instant::now();
    double.set_outage(false);
    let all: BTreeSet<String> = (1..=FIRST_USERS + ENROLLED)
        .map(|n| n.to_string())
        .collect();
    test_support::wait_for(PATIENCE, "every buffered user upstream", || {
        discovered_upstream(&double) == all
    })
    .await;
    let converged_in = outage_ended.elapsed();
    agent.wait_for_log_where("the catch-up", |text| {
        text.contains("catch-up queued so the upstream converges")
    });
    status_where(&data, "the device level again", |status| {
        status["devices"][0]["upstream_behind_since_generation"].is_null()
            && status["upstream"]["outbox"]["depth"] == 0
    })
    .await;
    let catch_up_events = double
        .fact_counts()
        .into_keys()
        .filter(|fact| fact.kind == "user_discovered" && fact.generation > behind_since)
        .count();
    println!(
        "catch-up after the outage: {catch_up_events} events; the upstream knew every one of \
         the {} buffered users {converged_in:.2?} after the outage ended",
        all.len()
    );
    assert!(double.keys_with_two_payloads().is_empty());

    agent.stop();
    let listing = local_json(&config, &["buffer", "list"]);
    let buffered: BTreeSet<String> = listing["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        buffered, all,
        "the buffer holds every user the terminal has"
    );
    let audit = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["audit", "query", "--config"])
        .arg(&config)
        .args(["--operation", "upstream_catch_up", "--json"])
        .output()
        .unwrap();
    let audit_text = String::from_utf8_lossy(&audit.stdout);
    assert!(audit_text.contains("catch-up queued"), "{audit_text}");
    assert!(audit_text.contains("the outbox is full"), "{audit_text}");
}
