//! The real binary under real signals: SIGHUP with a broken config keeps the old config,
//! SIGHUP with a good one applies it, and SIGTERM stops cleanly with exit code 0 within the
//! configured bound.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::agent::config_file::AgentToml;
use test_support::agent::running::RunningAgent;

fn write_config(path: &Path, dir: &Path, level: &str) {
    let text = AgentToml {
        agent: "shutdown_timeout = \"5s\"",
        log: &format!("level = \"{level}\""),
        ..AgentToml::default()
    }
    .text(dir, "lifecycle");
    std::fs::write(path, text).unwrap();
}

#[test]
fn sighup_keeps_a_good_config_over_a_broken_one_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    write_config(&config, dir.path(), "info");
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("agent started", 1);

    // A broken config: the agent says why and keeps running on the old one.
    std::fs::write(&config, "[agent]\nid = \"lifecycle\"\nbogus = 1\n").unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_for_log("keeping the previous config", 1);
    let log = agent.log_text();
    assert!(log.contains("unknown key `bogus`"), "{log}");
    assert!(agent.child.try_wait().unwrap().is_none(), "agent died");

    // A good config with a new level is applied.
    write_config(&config, dir.path(), "debug");
    agent.signal(libc::SIGHUP);
    agent.wait_for_log("config reloaded", 1);
    let log = agent.log_text();
    assert!(log.contains("log level changed"), "{log}");

    // SIGTERM: exit 0 after a clean stop, within the 5 s bound (plus process start-up slack).
    agent.signal(libc::SIGTERM);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "agent still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let log = agent.log_text();
    assert!(log.contains("stopped cleanly"), "{log}");
}

#[test]
fn a_broken_config_at_start_exits_with_code_2_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"x\"\n[monitor]\ninterval = \"often\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":4: monitor.interval: invalid duration"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_reference_and_prints_the_resolved_config() {
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edge-agent.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["check-config", reference])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(stdout.contains("interval = \"5m\""), "{stdout}");
}
