//! `Type=notify` and `WatchdogSec=` in `systemd/edge-agent.service` only work if the running
//! agent speaks the protocol: this test is systemd's side of it. It binds a datagram socket,
//! starts the real `edge-agent run` with `NOTIFY_SOCKET` and `WATCHDOG_USEC` set as systemd sets
//! them, and requires `READY=1`, then repeated `WATCHDOG=1` pings, then `STOPPING=1` on
//! SIGTERM. Fails if readiness or the watchdog is not wired into the agent.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::tempdir;

/// Waits for the next datagram holding `needle`, collecting what came before.
fn wait_for(socket: &UnixDatagram, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = text.lines().any(|line| line == needle);
                seen.push(text);
                if found {
                    return;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
            Err(err) => panic!("notify socket: {err}"),
        }
    }
    let last: Vec<_> = seen.iter().rev().take(5).collect();
    panic!(
        "no {needle:?} on the notify socket; {} datagrams received, the last: {last:?}",
        seen.len()
    );
}

#[test]
fn the_running_agent_reports_ready_pings_the_watchdog_and_says_it_is_stopping() {
    let dir = tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-notify\"\ndata_dir = \"{}\"\nruntime_dir = \"{}\"\n\
             [log]\nfile = \"\"\n[lock]\ndir = \"{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("run").display(),
            dir.path().join("locks").display()
        ),
    )
    .unwrap();

    let mut agent = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        // systemd's WatchdogSec=1s; the agent pings at half the period.
        .env("WATCHDOG_USEC", "1000000")
        .env("JOURNAL_STREAM", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    wait_for(&socket, "READY=1", &mut seen);
    wait_for(&socket, "WATCHDOG=1", &mut seen);
    wait_for(&socket, "WATCHDOG=1", &mut seen);

    let rc = unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    wait_for(&socket, "STOPPING=1", &mut seen);
    let status = agent.wait().unwrap();
    assert!(
        status.success(),
        "agent stopped with {status}; notifications: {seen:?}"
    );
    let ready_at = seen.iter().position(|s| s.lines().any(|l| l == "READY=1"));
    let first_ping = seen
        .iter()
        .position(|s| s.lines().any(|l| l == "WATCHDOG=1"));
    assert!(ready_at.is_some() && first_ping.is_some(), "{seen:?}");
}
