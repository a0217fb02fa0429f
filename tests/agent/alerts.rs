//! Alerts, supervision and refused settings through the running agent: the real `edge-agent
//! run` binary, a private mosquitto, the upstream double and the AI06 emulator. A subscriber
//! of `edge/s1/gw1/events/alert` sees what a fleet dashboard would see.
//!
//! Each test fails on a build where the fact is not turned into an alert (no subscriber of the
//! engine's changes, alarms that never leave the box, a device loop that dies for good, a
//! watchdog pinged regardless, settings accepted and ignored).

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::agent::mqtt::{Agent, Observer};
use test_support::agent::running::{bin, RunningAgent};
use test_support::agent::sync::{config_text, emulator};
use test_support::{free_port, tempdir};

use super::common::Site;

/// The alert topic of agent gw1 at site s1.
const ALERTS: &str = "edge/s1/gw1/events/alert";

/// The alert body of a payload seen on the alert topic.
fn alert_body(payload: &str) -> Value {
    let event: Value = serde_json::from_str(payload).expect("alerts are JSON");
    event["body"]["Alert"].clone()
}

/// Waits for the next alert of `kind`; returns the whole event.
async fn next_alert(observer: &mut Observer, kind: &str) -> Value {
    let seen = observer
        .wait_for(&format!("a {kind} alert"), |seen| {
            alert_body(&seen.payload)["kind"] == kind
        })
        .await;
    serde_json::from_str(&seen.payload).unwrap()
}

/// The keys of the `kind` alerts received within `quiet` (re-sent copies share a key).
async fn keys_within(observer: &mut Observer, kind: &str, quiet: Duration) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(Some(seen)) = tokio::time::timeout_at(deadline, observer.seen.recv()).await {
        if alert_body(&seen.payload)["kind"] == kind {
            let event: Value = serde_json::from_str(&seen.payload).unwrap();
            keys.insert(event["key"].as_str().unwrap().to_owned());
        }
    }
    keys
}

/// The user ids an alert names.
fn user_ids(event: &Value) -> Vec<String> {
    event["body"]["Alert"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Small users: a 1 KB photo each (a user with no credential at all is not listed), no card.
const NO_PHOTOS: [&str; 4] = ["--photo-kb", "1", "--cards", "false"];

fn knobs(users: &str) -> Vec<&str> {
    let mut knobs = vec!["--users", users];
    knobs.extend(NO_PHOTOS);
    knobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vanishing_raise_one_users_missing_alert_then_reappeared_then_a_held_mass_loss() {
    let site = Site::start().await;
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    let terminal = emulator(site.port, &site.dir.path().join("t1.jsonl"), &knobs("10"));
    agent.wait_for_log("complete read applied", 1);
    drop(terminal);

    // Users 9 and 10 vanish: 2 of 10 is below the mass-disappearance share.
    let terminal = emulator(site.port, &site.dir.path().join("t2.jsonl"), &knobs("8"));
    let missing = next_alert(&mut observer, "users_missing").await;
    assert_eq!(missing["device_id"], "door");
    assert_eq!(missing["body"]["Alert"]["severity"], "warning");
    let mut ids = user_ids(&missing);
    ids.sort();
    assert_eq!(ids, ["10", "9"], "{missing}");
    for user in missing["body"]["Alert"]["users"].as_array().unwrap() {
        assert!(
            user["last_seen_at_ms"].as_i64().unwrap() > 1_700_000_000_000,
            "{user}"
        );
    }
    let others = keys_within(&mut observer, "users_missing", Duration::from_secs(2)).await;
    assert!(
        others
            .iter()
            .all(|key| key == missing["key"].as_str().unwrap()),
        "one alert per read, not one per user: {others:?}"
    );
    drop(terminal);

    // They come back.
    let terminal = emulator(site.port, &site.dir.path().join("t3.jsonl"), &knobs("10"));
    let back = next_alert(&mut observer, "users_reappeared").await;
    let mut ids = user_ids(&back);
    ids.sort();
    assert_eq!(ids, ["10", "9"], "{back}");
    drop(terminal);

    // A reset terminal: every user gone at once is held, with one critical alert and no
    // users_missing alert for the held users.
    let _terminal = emulator(site.port, &site.dir.path().join("t4.jsonl"), &knobs("0"));
    let held = next_alert(&mut observer, "mass_disappearance_held").await;
    assert_eq!(held["body"]["Alert"]["severity"], "critical");
    assert_eq!(held["body"]["Alert"]["details"]["missing"], "10");
    assert_eq!(held["device_id"], "door");
    let missing_keys = keys_within(&mut observer, "users_missing", Duration::from_secs(2)).await;
    assert!(
        missing_keys
            .iter()
            .all(|key| key == missing["key"].as_str().unwrap()),
        "held users are not announced as missing: {missing_keys:?}"
    );
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_upstream_raises_an_upstream_unauthorized_alert() {
    let site = Site::start().await;
    site.double.answer_next(&[401; 50]);
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    let _terminal = emulator(site.port, &site.dir.path().join("t.jsonl"), &knobs("2"));
    let alert = next_alert(&mut observer, "upstream_unauthorized").await;
    assert_eq!(alert["body"]["Alert"]["details"]["status"], "401");
    assert_eq!(alert["body"]["Alert"]["severity"], "critical");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_raises_an_outbox_refusing_alert() {
    let site = Site::start().await;
    site.double.set_outage(true);
    let text = site.text.replace(
        "mapping_pull_interval = \"1s\"\n",
        "mapping_pull_interval = \"1s\"\noutbox_max_bytes = \"4KB\"\n",
    );
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &text);
    let _terminal = emulator(site.port, &site.dir.path().join("t.jsonl"), &knobs("60"));
    let alert = next_alert(&mut observer, "outbox_refusing").await;
    let max: u64 = alert["body"]["Alert"]["details"]["max_bytes"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((4000..=4096).contains(&max), "{alert}");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_upstream_refuses_raises_a_dead_letters_alert() {
    let site = Site::start().await;
    // Every batch refused for a while: halved down to single events, which become dead letters.
    site.double.answer_next(&[422; 6]);
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    let _terminal = emulator(site.port, &site.dir.path().join("t.jsonl"), &knobs("2"));
    let alert = next_alert(&mut observer, "dead_letters").await;
    let new: u64 = alert["body"]["Alert"]["details"]["new"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new >= 1, "{alert}");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_not_read_for_longer_than_the_threshold_and_incomplete_reads_are_alerted() {
    let site = Site::start().await;
    let text = format!(
        "{}\n[monitor]\nunread_alert_after = \"2s\"\nincomplete_alert_after = 2\n",
        site.text
            .replace("poll_interval = \"1h\"", "poll_interval = \"1s\"")
    );
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &text);
    // Nothing dials in: not connected for longer than 2 s.
    let unread = next_alert(&mut observer, "device_unread").await;
    assert_eq!(unread["device_id"], "door");
    assert_eq!(
        unread["body"]["Alert"]["details"]["reason"], "not connected since the agent started",
        "{unread}"
    );
    // A terminal that refuses every user listing for a while: reads end incomplete.
    let mut refusing = NO_PHOTOS.to_vec();
    refusing.extend(["--users", "3"]);
    let faults: Vec<String> = (1..=6).map(|n| format!("refuse:getuserlist:{n}")).collect();
    for fault in &faults {
        refusing.extend(["--fault", fault.as_str()]);
    }
    let _terminal = emulator(site.port, &site.dir.path().join("t.jsonl"), &refusing);
    let incomplete = next_alert(&mut observer, "reads_incomplete").await;
    assert_eq!(incomplete["device_id"], "door");
    let in_a_row: u32 = incomplete["body"]["Alert"]["details"]["in_a_row"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(in_a_row >= 2, "{incomplete}");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salvaged_store_is_alerted_after_the_restart() {
    let site = Site::start().await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    agent.stop();
    let store_dir = site.dir.path().join("data").join("store");
    std::fs::write(store_dir.join("snap.00000000FFFFFFFF"), [0x5a; 300]).unwrap();
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    let alert = next_alert(&mut observer, "store_salvaged").await;
    assert_eq!(alert["body"]["Alert"]["severity"], "critical");
    assert!(
        alert["body"]["Alert"]["details"]["moved_to"]
            .as_str()
            .unwrap()
            .contains("store"),
        "{alert}"
    );
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_loop_that_panics_is_restarted_and_alerted() {
    let site = Site::start().await;
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    std::fs::write(&site.config, &site.text).unwrap();
    let log = site.dir.path().join("agent.log");
    // Debug builds only: the poll loop of `door` panics the first time it wakes.
    let mut agent = RunningAgent::on_with_env(
        &site.config,
        &log,
        &[("EDGE_AGENT_TEST_FAULT", "device-loop:door")],
    );
    let alert = next_alert(&mut observer, "task_restarted").await;
    assert_eq!(alert["device_id"], "door");
    assert_eq!(
        alert["body"]["Alert"]["details"]["task"],
        "sync-device:door"
    );
    assert!(
        alert["body"]["Alert"]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{alert}"
    );
    // The restarted loop reads the terminal.
    let _terminal = emulator(site.port, &site.dir.path().join("t.jsonl"), &knobs("3"));
    agent.wait_for_log("complete read applied", 1);
    agent.stop();
}

/// Every `WATCHDOG=1` received on `socket` within `span`.
fn pings_within(socket: &UnixDatagram, span: Duration) -> usize {
    let deadline = Instant::now() + span;
    let mut buf = [0u8; 4096];
    let mut pings = 0;
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            pings += String::from_utf8_lossy(&buf[..n])
                .lines()
                .filter(|line| *line == "WATCHDOG=1")
                .count();
        }
    }
    pings
}

#[test]
fn the_watchdog_goes_quiet_when_a_critical_task_dies() {
    let dir = tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let log = dir.path().join("agent.log");
    let text = config_text(dir.path(), free_port(), "").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    // Debug builds only: the AI06 listener panics two seconds after it starts.
    let mut agent = RunningAgent::on_with_env(
        &config,
        &log,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
            ("EDGE_AGENT_TEST_FAULT", "task:aiface-listener"),
        ],
    );
    assert!(
        pings_within(&socket, Duration::from_millis(1500)) >= 2,
        "pinged while all is well"
    );
    agent.wait_for_log("critical task `aiface-listener` is dead", 1);
    // A ping already on its way may still arrive.
    pings_within(&socket, Duration::from_millis(300));
    assert_eq!(
        pings_within(&socket, Duration::from_secs(2)),
        0,
        "no ping once a critical task died:\n{}",
        agent.log_text()
    );
}

#[test]
fn check_config_refuses_an_incomplete_shelf_label_adapter_and_a_lease_too_short_to_renew() {
    let dir = tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw1\"\ndata_dir = \"{}\"\n\
             [lock]\nlease = \"1s\"\n\
             [esl]\nenabled = true\nurl = \"https://aims.example\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    // An enabled shelf-label adapter without its AIMS settings or an upstream feed, and a
    // lease too short to renew, are refused by name.
    for key in [
        "esl.enabled",
        "esl.company",
        "esl.password_file",
        "lock.lease",
    ] {
        assert!(text.contains(key), "{key} refused: {text}");
    }
    assert!(text.contains("set upstream.url"), "{text}");
    assert!(text.contains("must be at least 3s"), "{text}");

    // The same keys at their defaults, unwritten, pass.
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw1\"\ndata_dir = \"{}\"\n[lock]\nacquire_retries = 3\n\
             [esl]\nenabled = false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The time of the `n`-th (1-based) log line holding `needle`.
fn logged_at(log: &str, needle: &str, n: usize) -> chrono::DateTime<chrono::Utc> {
    let line = log
        .lines()
        .filter(|line| line.contains(needle))
        .nth(n - 1)
        .expect("the log line");
    let stamp = line.split_whitespace().next().unwrap();
    chrono::DateTime::parse_from_rfc3339(stamp)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Measures (does not assert) the time from a complete read that lost users being applied
/// (its "complete read applied" log line) to the `users_missing` alert reaching a subscriber,
/// over 20 reads. `cargo nextest run --workspace -E 'test(measure_users_missing)'
/// --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_users_missing_alert_latency() {
    const RUNS: usize = 20;
    let site = Site::start().await;
    let mut observer = Observer::start(site.broker.port, ALERTS, None).await;
    let mut agent = Agent::start(site.dir.path(), &site.text);
    let terminal = emulator(site.port, &site.dir.path().join("t.jsonl"), &knobs("10"));
    agent.wait_for_log("complete read applied", 1);
    drop(terminal);
    let mut reads = 1;
    let mut latencies = Vec::new();
    for run in 0..RUNS {
        let fewer = emulator(
            site.port,
            &site.dir.path().join(format!("fewer{run}.jsonl")),
            &knobs("9"),
        );
        next_alert(&mut observer, "users_missing").await;
        let arrived = chrono::Utc::now();
        reads += 1;
        agent.wait_for_log("complete read applied", reads);
        let applied = logged_at(&agent.log_text(), "complete read applied", reads);
        latencies.push((arrived - applied).num_microseconds().unwrap() as f64 / 1000.0);
        drop(fewer);
        let all = emulator(
            site.port,
            &site.dir.path().join(format!("all{run}.jsonl")),
            &knobs("10"),
        );
        next_alert(&mut observer, "users_reappeared").await;
        reads += 1;
        agent.wait_for_log("complete read applied", reads);
        drop(all);
    }
    agent.stop();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "users_missing alert, read applied -> subscriber, {} reads: p50 {:.1} ms, p99 {:.1} ms, \
         min {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[0],
        latencies[latencies.len() - 1]
    );
}
