//! The mass-disappearance guard through the running agent: an AI06 with 10 users is read, then
//! a unit with the same `sn` and only 2 users dials in (a replaced terminal, or an impostor).
//! The read is recorded (8 users `missing` in the buffer), but no `user_missing` event reaches
//! the upstream and a critical alarm is raised, until an administrator confirms with a signed
//! `missing confirm`; then all 8 are forwarded.

use std::time::Duration;

use edge_agent::store::AlarmKind;
use test_support::agent::mqtt::{ctl, texts, Agent};
use test_support::agent::open_store;
use test_support::agent::running::PATIENCE;
use test_support::agent::sync::{emulator, DEVICE};
use test_support::upstream_double::UpstreamDouble;
use test_support::wait::wait_until;
use test_support::{free_port, tempdir};

use super::common::{statuses, Site};

/// Keys of the events of `kind` the upstream applied.
fn applied(double: &UpstreamDouble, kind: &str) -> usize {
    double
        .applied_order()
        .iter()
        .filter(|key| key.starts_with(kind))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_disappearance_is_held_until_an_admin_confirms() {
    let site = Site::start().await;
    let mut agent = Agent::start(site.dir.path(), &site.text);

    let first = emulator(
        site.port,
        &site.dir.path().join("first.jsonl"),
        &["--users", "10", "--photo-kb", "1", "--cards", "false"],
    );
    agent.wait_for_log("complete read applied", 1);
    wait_until(PATIENCE, "10 discoveries forwarded", || {
        applied(&site.double, "user_discovered") == 10
    });
    drop(first);

    // The same sn dials in with 2 users.
    let second = emulator(
        site.port,
        &site.dir.path().join("second.jsonl"),
        &["--users", "2", "--photo-kb", "1", "--cards", "false"],
    );
    agent.wait_for_log("CRITICAL: 8 of 10 users vanished at once", 1);
    // Time enough for the forwarder to deliver anything that was queued.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        applied(&site.double, "user_missing"),
        0,
        "held, not forwarded"
    );

    let key = Some(site.admin.file.as_path());
    let out = ctl(
        &site.broker,
        key,
        &["missing", "confirm", &format!("device={DEVICE}")],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    assert!(texts(&out).0.contains('8'), "{:?}", texts(&out));
    wait_until(
        PATIENCE,
        "8 user_missing events forwarded after the confirmation",
        || applied(&site.double, "user_missing") == 8,
    );

    agent.stop();
    drop(second);
    let missing = statuses(&site.config)
        .into_iter()
        .filter(|(_, status)| status == "missing")
        .count();
    assert_eq!(missing, 8, "the read was recorded");
    let store = open_store(&site.dir.path().join("data"));
    let alarms = store.alarms().unwrap();
    assert!(
        alarms.iter().any(|(_, alarm)| matches!(
            &alarm.kind,
            AlarmKind::MassDisappearance { device_id, missing: 8, previous: 10 }
                if device_id == DEVICE
        )),
        "{alarms:?}"
    );
}

#[test]
fn a_terminal_outside_allowed_peers_is_refused_even_with_a_good_sn() {
    let dir = tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("agent.log");
    let text = test_support::agent::sync::config_text(
        dir.path(),
        port,
        "poll_interval = \"1h\"\nallowed_peers = [\"192.0.2.0/24\"]\n",
    )
    .replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    let mut agent = Agent::spawn(dir.path(), &text);
    let terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", "3", "--photo-kb", "1"],
    );
    agent.wait_for_log("not in the device's allowed_peers", 1);
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();
    drop(terminal);
    let config = dir.path().join("agent.toml");
    assert!(
        statuses(&config).is_empty(),
        "nothing read from a refused peer"
    );
    assert!(!agent.log_text().contains("complete read applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_events_are_dropped_when_the_users_come_back() {
    let site = Site::start().await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    let ten = ["--users", "10", "--photo-kb", "1", "--cards", "false"];
    let first = emulator(site.port, &site.dir.path().join("first.jsonl"), &ten);
    agent.wait_for_log("complete read applied", 1);
    drop(first);
    let second = emulator(
        site.port,
        &site.dir.path().join("second.jsonl"),
        &["--users", "0", "--photo-kb", "1", "--cards", "false"],
    );
    agent.wait_for_log("CRITICAL: 10 of 10 users vanished at once", 1);
    drop(second);
    // The real terminal is back with every user.
    let back = emulator(site.port, &site.dir.path().join("back.jsonl"), &ten);
    agent.wait_for_log("complete read applied", 3);
    let out = ctl(
        &site.broker,
        Some(site.admin.file.as_path()),
        &["missing", "confirm", &format!("device={DEVICE}")],
    );
    let (stdout, stderr) = texts(&out);
    assert!(
        !out.status.success() && format!("{stdout}{stderr}").contains("no user_missing events"),
        "nothing is held any more: {stdout}{stderr}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        applied(&site.double, "user_missing"),
        0,
        "the upstream never heard of it"
    );
    agent.stop();
    drop(back);
}
