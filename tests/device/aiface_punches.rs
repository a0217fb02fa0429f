//! D7 with real processes: a punch is acknowledged to the terminal only after it is durable.
//! The agent is killed (SIGKILL) after storing punches and before replying; the terminal gets
//! no reply, resends, the restarted agent acknowledges, and every punch is stored exactly once.

use edge_agent::device::punches;
use edge_agent::store::{Store, StoreOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_support::{free_port, Emulator};

fn start_agent(config: &Path, fault: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    command
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(fault) = fault {
        command.env("EDGE_AGENT_FAULT", fault);
    }
    command.spawn().unwrap()
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "agent did not exit in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `edge-agent status` until its output contains `needle`.
fn wait_for_status(config: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["status", "--config"])
            .arg(config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        // 0 ok or 1 warning (a machine without NTP is always a warning); 2 is critical.
        let answered = matches!(output.status.code(), Some(0 | 1));
        if answered && text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {needle:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_punch_is_acknowledged_only_after_it_is_durable_and_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"punch\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n\
             [lock]\ndir = \"{locks}\"\n[[device]]\nid = \"door\"\n\
             driver = \"aiface\"\nlisten = \"127.0.0.1:{port}\"\nallowed_sn = [\"SIM00000001\"]\n\
             [log]\nfile = \"{log}\"\njournald = \"never\"\n",
            data = dir.path().join("data").display(),
            run = dir.path().join("run").display(),
            locks = dir.path().join("locks").display(),
            log = dir.path().join("agent.log").display()
        ),
    )
    .unwrap();

    let mut agent = start_agent(&config, Some("kill-after-punch-store"));
    let emulator = Emulator::aiface(
        "punches",
        &format!("ws://127.0.0.1:{port}/pub/chat"),
        &[
            // One punch per user: two punches of one user in the same second with the same
            // mode and in/out are by definition the same punch.
            "--users",
            "3",
            "--punches",
            "3",
            "--punch-rate",
            "20",
            "--punch-resend-ms",
            "400",
            "--reconnect-delay-ms",
            "100",
            "--run-for",
            "8",
        ],
    );
    let status = wait_exit(&mut agent, Duration::from_secs(20));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the fault point did not fire: {status}"
    );

    let mut agent = start_agent(&config, None);
    let status = wait_for_status(&config, "connected");
    assert!(status.contains("door"), "{status}");
    assert!(status.contains("Outbox:"), "{status}");
    let summary = emulator.stop_after_run();
    unsafe {
        libc::kill(agent.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(wait_exit(&mut agent, Duration::from_secs(20)).success());

    let stats = &summary["stats"];
    assert_eq!(stats["punches_made"], 3, "{summary}");
    assert_eq!(stats["punches_acked"], 3, "{summary}");
    assert!(stats["sendlog_resends"].as_u64().unwrap() >= 1, "{summary}");

    let store = Store::open(&StoreOptions::at(dir.path().join("data/store")))
        .unwrap()
        .store;
    let punches = punches::of_device(&store, "door").unwrap();
    let queued: Vec<_> = store
        .scan_prefix::<edge_agent::events::Event>(edge_agent::store::TreeName::Outbox, [])
        .map(|entry| entry.unwrap().1)
        .filter(|event| matches!(event.body, edge_agent::events::EventBody::Punch(_)))
        .collect();
    assert_eq!(
        queued.len(),
        3,
        "each punch queued upstream exactly once: {queued:#?}"
    );
    assert_eq!(punches.len(), 3, "{punches:#?}");
    let mut times: Vec<_> = punches
        .iter()
        .map(|p| (&p.punch.user_id, &p.punch.time))
        .collect();
    times.dedup();
    assert_eq!(times.len(), 3);
}
