//! One unreadable punch record cannot wedge a terminal, through the running agent: an emulated
//! AI06 sends every `sendlog` frame with one good punch and one record without a `time` and
//! with a non-numeric `enrollid`. `edge-agent run` stores the good punches, keeps the bad
//! records in quarantine (raw JSON, audited) and answers each frame once, so the terminal
//! never resends.

use std::process::Command;
use std::time::Duration;

use edge_agent::device::{punches, quarantine};
use test_support::agent::open_store;
use test_support::agent::running::RunningAgent;
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::{free_port, tempdir};

#[test]
fn a_malformed_punch_record_is_quarantined_and_the_frame_acknowledged() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("agent.log");
    let text = config_text(dir.path(), port, "poll_interval = \"1h\"\n").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let mut agent = RunningAgent::on(&config, &log);
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &[
            "--users",
            "2",
            "--photo-kb",
            "1",
            "--punches",
            "2",
            "--punch-rate",
            "20",
            "--punch-resend-ms",
            "500",
            "--malformed-punches",
            "true",
        ],
    );
    agent.wait_for_log("punches stored", 2);
    // Long enough for the terminal to resend an unanswered frame (500 ms).
    std::thread::sleep(Duration::from_millis(1200));
    agent.stop();
    let report = terminal.stop();
    let stats = &report["stats"];
    assert_eq!(
        stats["sendlog_resends"], 0,
        "every frame answered once: {report}"
    );

    let store = open_store(&dir.path().join("data"));
    let punches = punches::of_device(&store, DEVICE).unwrap();
    assert_eq!(punches.len(), 2, "both good punches stored");
    let kept = quarantine::list(&store, Some(DEVICE)).unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter()
            .all(|record| record.raw_json.contains("\"x7\"") && record.report == "sendlog"),
        "{kept:?}"
    );
    drop(store);
    let audit = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args([
            "audit",
            "query",
            "--operation",
            "quarantine",
            "--json",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(audit.status.success(), "{audit:?}");
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("x7"),
        "{audit:?}"
    );
}

/// `edge-agent run` on one AI06 `door` and the upstream double, with an outbox capped at
/// `outbox_max_bytes`.
fn outbox_config(
    dir: &std::path::Path,
    port: u16,
    url: &str,
    outbox_max_bytes: &str,
) -> std::path::PathBuf {
    let token =
        test_support::agent::upstream::token_file(dir, test_support::agent::upstream::TOKEN);
    let mut text = config_text(dir, port, "poll_interval = \"1h\"\n").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", dir.join("agent.log").display()),
    );
    text.push_str(&format!(
        "[upstream]\nurl = \"{url}\"\ntoken_file = \"{}\"\noutbox_max_bytes = \"{outbox_max_bytes}\"\n\
         max_backoff = \"1s\"\n",
        token.display()
    ));
    let config = dir.join("agent.toml");
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backfill_store_is_retried_from_getalllog() {
    let dir = tempdir().unwrap();
    let double =
        test_support::upstream_double::UpstreamDouble::start(test_support::agent::upstream::TOKEN)
            .await;
    double.set_outage(true);
    let port = free_port();
    let config = outbox_config(dir.path(), port, &double.url(), "64MB");
    let log = dir.path().join("agent.log");

    // The upstream is down; the first read's events stay queued.
    let mut agent = RunningAgent::on(&config, &log);
    let first = emulator(
        port,
        &dir.path().join("first.jsonl"),
        &["--users", "5", "--photo-kb", "1"],
    );
    agent.wait_for_log("complete read applied", 1);
    agent.stop();
    drop(first);

    // With a smaller cap the queued events fill the outbox. The terminal comes back with 3
    // punches it has not delivered: `getnewlog` serves them (and counts them delivered), but
    // the full outbox refuses them.
    let config = outbox_config(dir.path(), port, &double.url(), "400B");
    let mut agent = RunningAgent::on(&config, &log);
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "5", "--photo-kb", "1", "--new-logs", "3"],
    );
    agent.wait_for_log("punch backfill could not be stored", 1);
    // The upstream returns, the outbox drains, and the retry from getalllog stores them.
    double.set_outage(false);
    agent.wait_for_log("owed punch backfill stored from getalllog", 1);
    agent.stop();
    drop(terminal);

    let store = open_store(&dir.path().join("data"));
    assert_eq!(punches::of_device(&store, DEVICE).unwrap().len(), 3);
}
