//! One unreadable punch record cannot wedge a terminal, through the running agent: an emulated
//! AI06 sends every `sendlog` frame with one good punch and one record without a `time` and
//! with a non-numeric `enrollid`. `edge-agent run` stores the good punches, keeps the bad
//! records in quarantine (raw JSON, audited) and answers each frame once, so the terminal
//! never resends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_agent::device::{punches, quarantine};
use edge_agent::store::{Store, StoreOptions};
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
    let mut agent = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches("punches stored").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "punches never stored:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Long enough for the terminal to resend an unanswered frame (500 ms).
    std::thread::sleep(Duration::from_millis(1200));
    let rc = unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(agent.wait().unwrap().success());
    let report = terminal.stop();
    let stats = &report["stats"];
    assert_eq!(
        stats["sendlog_resends"], 0,
        "every frame answered once: {report}"
    );

    let store = Store::open(&StoreOptions::at(dir.path().join("data").join("store")))
        .unwrap()
        .store;
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

fn wait_for_log(log: &std::path::Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(config: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(config)
        .env("JOURNAL_STREAM", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(mut agent: std::process::Child) {
    let rc = unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(agent.wait().unwrap().success());
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
    let agent = run(&config);
    let first = emulator(
        port,
        &dir.path().join("first.jsonl"),
        &["--users", "5", "--photo-kb", "1"],
    );
    wait_for_log(&log, "complete read applied");
    sigterm(agent);
    drop(first);

    // With a smaller cap the queued events fill the outbox. The terminal comes back with 3
    // punches it has not delivered: `getnewlog` serves them (and counts them delivered), but
    // the full outbox refuses them.
    let config = outbox_config(dir.path(), port, &double.url(), "400B");
    let agent = run(&config);
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "5", "--photo-kb", "1", "--new-logs", "3"],
    );
    wait_for_log(&log, "punch backfill could not be stored");
    // The upstream returns, the outbox drains, and the retry from getalllog stores them.
    double.set_outage(false);
    wait_for_log(&log, "owed punch backfill stored from getalllog");
    sigterm(agent);
    drop(terminal);

    let store = Store::open(&StoreOptions::at(dir.path().join("data").join("store")))
        .unwrap()
        .store;
    assert_eq!(punches::of_device(&store, DEVICE).unwrap().len(), 3);
}
