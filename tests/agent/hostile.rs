//! The running agent against hostile input (invariant 5): `edge-agent run` with an emulated
//! AI06 whose first user-list page claims records `0..=u64::MAX`, and an upstream whose first
//! batch reply is padded past the agent's body bound. The agent must call the read incomplete
//! (the paging guard's reason in its log, no panic, no task lost), read completely on the next
//! poll, abandon the oversized reply and deliver the events again, each applied once, then
//! stop cleanly. Fails if the paging arithmetic overflows (the debug binary panics in the sync
//! task) or if the body bound is not wired into the client the forwarder uses.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_agent::upstream::client::MAX_REPLY_BODY;
use test_support::agent::sync::{config_text, emulator};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir};

const PATIENCE: Duration = Duration::from_secs(60);

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the agent's log holds `needle`; panics with the log if it never does.
async fn wait_for_log(agent: &mut Running, log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if let Ok(Some(status)) = agent.0.try_wait() {
            panic!("agent exited ({status}) before logging {needle:?}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} after {PATIENCE:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_page_numbers_and_an_oversized_reply_are_refused_without_harm() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    double.pad_next(1, MAX_REPLY_BODY + 1);
    let token = token_file(dir.path(), TOKEN);
    let port = free_port();
    let log = dir.path().join("agent.log");
    let mut text = config_text(dir.path(), port, "poll_interval = \"2s\"\n");
    text = text.replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    text.push_str(&format!(
        "[upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        double.url(),
        token.display()
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();

    let mut agent = Running(
        Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("JOURNAL_STREAM", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let terminal = emulator(
        port,
        &dir.path().join("hostile.jsonl"),
        &[
            "--users",
            "4",
            "--photo-kb",
            "1",
            "--fault",
            "overflow:getuserlist:1",
        ],
    );
    // The guard's reason names the impossible range; then the next poll reads completely.
    wait_for_log(&mut agent, &log, "0..=18446744073709551615").await;
    wait_for_log(&mut agent, &log, "complete read applied").await;
    wait_for_log(&mut agent, &log, "larger than").await;

    // The discovered users' events: the padded reply was abandoned, so they went twice and
    // were applied once.
    let deadline = Instant::now() + PATIENCE;
    let keys = loop {
        let keys: Vec<String> = double.application_counts().into_keys().collect();
        if !keys.is_empty() && keys.iter().all(|key| double.deliveries(key) >= 2) {
            break keys;
        }
        assert!(Instant::now() < deadline, "no redelivery: {keys:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(keys.iter().all(|key| double.applications(key) == 1));

    // SAFETY: kill(2) with the pid of our child, which has not been reaped.
    let rc = unsafe { libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = agent.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "agent stopped with {status}:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    // Dropping the emulator checks its log: nothing destructive reached the terminal.
    drop(terminal);
}
