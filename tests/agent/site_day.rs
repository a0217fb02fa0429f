//! The site test (acceptance): one scripted day of a site through the real binaries.
//!
//! `edge-agent run` with a private mosquitto, the upstream double serving mappings, an
//! emulated AI06 terminal and an emulated ZK terminal lives through:
//!
//! 1. the first complete reads of both terminals, forwarded;
//! 2. upstream mappings: one with the device's attributes (mapped), one with another name (a
//!    conflict), resolved by an administrator through `edge-agent ctl` (a rename on the
//!    terminal, never a credential rewritten);
//! 3. punches, each `sendlog` frame carrying one malformed record (quarantined, the frame
//!    acknowledged);
//! 4. an upstream outage long enough to fill a small outbox, during which a keypad enrolment
//!    and a keypad deletion happen on the AI06;
//! 5. a kill -9 of the agent during the outage, a restart, the end of the outage.
//!
//! At the end the upstream's applied state equals the agent's buffer, which equals the
//! terminals' own truth; every fact was applied once and no key arrived with two payloads; no
//! destructive command reached a terminal; a backup of each terminal holds every user.
//! The test prints its wall time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use edge_agent::device::quarantine;
use serde_json::{json, Value};
use test_support::agent::mqtt::{ctl, keygen, texts, Agent};
use test_support::agent::open_store;
use test_support::agent::running::local_json;
use test_support::agent::sync::{emulator, DEVICE};
use test_support::agent::upstream::TOKEN;
use test_support::mosquitto::Broker;
use test_support::upstream_double::UpstreamDouble;
use test_support::wait::wait_until;
use test_support::{free_port, tempdir, Emulator};

use super::common::site_config;

/// The ZK terminal's device id in the site's config.
const ZK: &str = "zk-back";
/// Users the AI06 holds at the start of the day.
const AI06_USERS: u64 = 12;
/// Users of the ZK terminal (no changes during the day).
const ZK_USERS: usize = 7;
/// Attendance records the ZK terminal holds: its punches join the AI06's on the upstream.
const ZK_PUNCHES: usize = 3;
/// Generous: the CI machine is shared and loaded.
const PATIENCE: Duration = Duration::from_secs(90);

/// How many lines of `text` hold all of `needles`.
fn lines_with(text: &str, needles: &[&str]) -> usize {
    text.lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

/// How many complete reads of `device` the log shows.
fn read_lines(log: &str, device: &str) -> usize {
    lines_with(
        log,
        &["complete read applied", &format!("device=\"{device}\"")],
    )
}

/// Waits until the log holds a line with all of `needles`, more than `before` times.
fn wait_for_line(agent: &mut Agent, needles: &[&str], before: usize) {
    agent.wait_for_log_where(&format!("{needles:?} ×{}", before + 1), |text| {
        lines_with(text, needles) > before
    });
}

/// The users the upstream holds present for `device`, with their names.
fn upstream_present(double: &UpstreamDouble, device: &str) -> BTreeMap<String, String> {
    double
        .user_states()
        .into_iter()
        .filter(|((d, _), _)| d == device)
        .filter_map(|((_, user), name)| name.map(|name| (user, name)))
        .collect()
}

/// The buffer as `edge-agent buffer list --json` shows it after the agent stopped:
/// (device, user) → (status, name).
fn buffer(config: &Path) -> BTreeMap<(String, String), (String, String)> {
    let listing = local_json(config, &["buffer", "list"]);
    listing["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                (
                    u["device_id"].as_str().unwrap().to_string(),
                    u["user_id"].as_str().unwrap().to_string(),
                ),
                (
                    u["status"].as_str().unwrap().to_string(),
                    u["name"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// The present users of `device` in the buffer, with their names.
fn buffer_present(
    buffer: &BTreeMap<(String, String), (String, String)>,
    device: &str,
) -> BTreeMap<String, String> {
    buffer
        .iter()
        .filter(|((d, _), (status, _))| d == device && status != "missing")
        .map(|((_, user), (_, name))| (user.clone(), name.clone()))
        .collect()
}

/// Every backup file's user lines and trailer count, by file name.
fn backups(dir: &Path) -> Vec<(String, usize, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("data").join("backups")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".backup.jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let users = lines
            .iter()
            .filter(|line| line.get("user").is_some())
            .count();
        let trailer = lines.last().and_then(|l| l["trailer"]["users"].as_u64());
        found.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            users,
            trailer.unwrap_or(u64::MAX),
        ));
    }
    found.sort();
    found
}

fn config_for_the_day(
    dir: &Path,
    port: u16,
    zk: &Emulator,
    double: &UpstreamDouble,
    broker: &Broker,
    admin: &str,
) -> String {
    let zk_address = zk.tcp.expect("zk emulator tcp address");
    site_config(dir, port, double, broker, admin)
        .replace("poll_interval = \"1h\"", "poll_interval = \"2s\"")
        .replace(
            "[upstream]\n",
            &format!(
                "[[device]]\nid = \"{ZK}\"\ndriver = \"zk\"\naddress = \"{zk_address}\"\n\
                 poll_interval = \"2s\"\ncommand_timeout = \"3s\"\n\
                 [upstream]\noutbox_max_bytes = \"1KB\"\nmax_backoff = \"1s\"\n"
            ),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_at_the_site_ends_with_upstream_buffer_and_terminals_agreeing() {
    let started = Instant::now();
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let double = UpstreamDouble::start(TOKEN).await;
    let port = free_port();
    let zk = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        &ZK_USERS.to_string(),
        "--logs",
        &ZK_PUNCHES.to_string(),
        "--pacing-ms",
        "0",
    ]);
    let text = config_for_the_day(dir.path(), port, &zk, &double, &broker, &admin.config_lines);
    let config = dir.path().join("agent.toml");
    let key = Some(admin.file.as_path());

    // Morning: the agent starts, both terminals are read completely and forwarded.
    let mut agent = Agent::start(dir.path(), &text).with_patience(PATIENCE);
    let users = AI06_USERS.to_string();
    let ai06 = emulator(
        port,
        &dir.path().join("ai06.jsonl"),
        &[
            "--users",
            &users,
            "--photo-kb",
            "1",
            "--punches",
            "6",
            "--punch-rate",
            "0.3",
            "--punch-resend-ms",
            "1000",
            "--malformed-punches",
            "true",
            // A keypad enrolment and a keypad deletion, late enough to fall in the outage.
            "--enrol",
            "1",
            "--enrol-after-ms",
            "25000",
            "--delete-users",
            "7",
            "--delete-after-ms",
            "26000",
        ],
    );
    wait_until(PATIENCE, "both terminals' users at the upstream", || {
        upstream_present(&double, DEVICE).len() == AI06_USERS as usize
            && upstream_present(&double, ZK).len() == ZK_USERS
    });

    // The upstream maps user 3 as the device has it and user 4 under another name.
    double.add_mapping(
        DEVICE,
        "3",
        json!({"person_id": "P3", "name": "user3", "privilege": 0, "card": "3000000003"}),
        false,
    );
    double.add_mapping(
        DEVICE,
        "4",
        json!({"person_id": "P4", "name": "Dana Four", "privilege": 0, "card": "3000000004"}),
        false,
    );
    let mut listed = String::new();
    let deadline = Instant::now() + PATIENCE;
    while !listed.contains("Dana Four") {
        assert!(
            Instant::now() < deadline,
            "user 4 never in conflict: {listed}\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
        let out = ctl(&broker, key, &["conflicts", "list"]);
        let (stdout, stderr) = texts(&out);
        listed = format!("{stdout}{stderr}");
    }
    // The administrator takes the upstream's name: a rename on the terminal.
    let out = ctl(
        &broker,
        key,
        &[
            "conflicts",
            "resolve",
            &format!("device={DEVICE}"),
            "user=4",
            "use=database",
        ],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    wait_until(PATIENCE, "the rename reaches the upstream", || {
        upstream_present(&double, DEVICE)
            .get("4")
            .map(String::as_str)
            == Some("Dana Four")
    });

    // Midday: the upstream goes away; the keypad enrolment and deletion happen meanwhile
    // and the small outbox fills.
    double.set_outage(true);
    wait_for_line(&mut agent, &["the outbox is full"], 0);
    wait_for_line(
        &mut agent,
        &["users vanished from the device", "device=\"door\""],
        0,
    );

    // The agent is killed during the outage and started again.
    let reads_before: Vec<usize> = [DEVICE, ZK]
        .iter()
        .map(|device| read_lines(&agent.log_text(), device))
        .collect();
    agent.kill();
    let mut agent = Agent::start(dir.path(), &text).with_patience(PATIENCE);
    double.set_outage(false);

    // Afternoon: the upstream converges on what the terminals hold.
    let enrolled = (AI06_USERS + 1).to_string();
    wait_until(PATIENCE, "the upstream caught up with the day", || {
        let door = upstream_present(&double, DEVICE);
        door.len() == AI06_USERS as usize
            && !door.contains_key("7")
            && door.contains_key(&enrolled)
            && double.applied_of_kind("punch") == 6 + ZK_PUNCHES
    });
    // The upstream may converge from the outbox alone, before the terminals are back: the
    // backups below need each one connected again, which a complete read since the restart
    // shows (the AI06 terminal redials with its own backoff).
    for (device, before) in [DEVICE, ZK].into_iter().zip(reads_before) {
        let needle = format!("device=\"{device}\"");
        wait_for_line(&mut agent, &["complete read applied", &needle], before);
    }
    let catch_ups = lines_with(&agent.log_text(), &["catch-up queued"]);
    let refusals = lines_with(&agent.log_text(), &["the outbox is full"]);
    for device in [DEVICE, ZK] {
        let out = ctl(
            &broker,
            key,
            &["backups", "create", &format!("device={device}")],
        );
        assert!(out.status.success(), "{device}: {:?}", texts(&out));
    }

    agent.stop();
    let truth = ai06.stop();
    zk.assert_nothing_destructive();
    drop(zk);

    // The three pictures agree.
    let buffered = buffer(&config);
    let terminal: BTreeMap<String, String> = truth["users"]
        .as_object()
        .expect("the emulator's summary lists its users")
        .iter()
        .map(|(id, name)| (id.clone(), name.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        buffer_present(&buffered, DEVICE),
        terminal,
        "buffer vs AI06"
    );
    assert_eq!(
        upstream_present(&double, DEVICE),
        terminal,
        "upstream vs AI06"
    );
    assert_eq!(
        buffered[&(DEVICE.to_string(), "7".to_string())].0,
        "missing"
    );
    assert_eq!(
        double.user_states()[&(DEVICE.to_string(), "7".to_string())],
        None,
        "the upstream knows user 7 is gone"
    );
    let zk_buffered = buffer_present(&buffered, ZK);
    assert_eq!(zk_buffered.len(), ZK_USERS);
    assert_eq!(upstream_present(&double, ZK), zk_buffered, "upstream vs ZK");

    // Exactly once, and the contract kept.
    let twice: Vec<_> = double
        .fact_counts()
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "facts applied more than once: {twice:?}");
    assert!(double.keys_with_two_payloads().is_empty());
    assert!(double.violations().is_empty(), "{:?}", double.violations());

    // Every malformed record kept aside; every backup holds every user.
    let store = open_store(&dir.path().join("data"));
    assert!(!quarantine::list(&store, None).unwrap().is_empty());
    drop(store);
    let files = backups(dir.path());
    assert!(files.len() >= 2, "{files:?}");
    for (name, users, trailer) in &files {
        assert_eq!(*users as u64, *trailer, "{name}");
        // A backup is of one complete read: 12 AI06 users all day (one left, one enrolled).
        let expected = if name.contains(ZK) {
            ZK_USERS
        } else {
            AI06_USERS as usize
        };
        assert_eq!(*users, expected, "{name}");
    }
    println!(
        "site day: {:.1} s wall, {} facts applied, {} punches, {refusals} outbox refusal(s) \
         logged, {catch_ups} catch-up(s)",
        started.elapsed().as_secs_f64(),
        double.fact_counts().len(),
        double.applied_of_kind("punch")
    );
}
