//! Attendance punches from ZK terminals, through the running agent: `edge-agent run` dials an
//! emulated ZK terminal, reads its attendance log with the bulk reader in the same session as
//! its users, stores every record under its punch key with the device time unshifted, and
//! forwards each punch to the upstream double exactly once, across polls and restarts. A log
//! that breaks off mid-transfer stores nothing and is read whole at the next session; a log
//! that grows during the read is stored to its last record; pyzk and node-zklib read the same
//! records from the emulator as the agent stored.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_agent::device::punches::{self, StoredPunch};
use edge_agent::events::EventKey;
use test_support::agent::open_store;
use test_support::agent::running::RunningAgent;
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::peers::{pyzk_read, run_peer};
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir, Emulator};

pub(crate) const DEVICE: &str = "zk-door";

/// `edge-agent run` on one ZK terminal at `address`, polled every `poll`, forwarding to `url`.
fn config(dir: &Path, address: &str, poll: &str, url: &str) -> (PathBuf, PathBuf) {
    config_capped(dir, address, poll, url, "64MB")
}

/// As [`config`], with the outbox capped at `outbox_max_bytes`.
fn config_capped(
    dir: &Path,
    address: &str,
    poll: &str,
    url: &str,
    outbox_max_bytes: &str,
) -> (PathBuf, PathBuf) {
    config_with(dir, address, poll, url, outbox_max_bytes, "")
}

/// As [`config_capped`], with `device_extra` (TOML lines) added to the device's table.
pub(crate) fn config_with(
    dir: &Path,
    address: &str,
    poll: &str,
    url: &str,
    outbox_max_bytes: &str,
    device_extra: &str,
) -> (PathBuf, PathBuf) {
    let token = token_file(dir, TOKEN);
    let log = dir.join("agent.log");
    let text = format!(
        "[agent]\nid = \"gw-zk-punches\"\ndata_dir = \"{data}\"\nshutdown_timeout = \"5s\"\n\
         runtime_dir = \"{run}\"\n\
         [log]\nfile = \"{log}\"\njournald = \"never\"\n\
         [lock]\ndir = \"{locks}\"\n\
         [[device]]\nid = \"{DEVICE}\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
         poll_interval = \"{poll}\"\ncommand_timeout = \"3s\"\n{device_extra}\
         [upstream]\nurl = \"{url}\"\ntoken_file = \"{token}\"\nmax_backoff = \"1s\"\n\
         outbox_max_bytes = \"{outbox_max_bytes}\"\n",
        data = dir.join("data").display(),
        log = log.display(),
        locks = dir.join("locks").display(),
        run = dir.join("run").display(),
        token = token.display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    (path, log)
}

pub(crate) fn stored(dir: &Path) -> Vec<StoredPunch> {
    let store = open_store(&dir.join("data"));
    punches::of_device(&store, DEVICE).unwrap()
}

/// Waits until the upstream double has received `count` distinct punch keys.
pub(crate) async fn upstream_punches(double: &UpstreamDouble, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = punch_keys(double).len();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream received {seen} of {count} punches"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn punch_keys(double: &UpstreamDouble) -> Vec<String> {
    double
        .application_counts()
        .into_keys()
        .filter(|key| key.starts_with("punch"))
        .collect()
}

/// Every stored punch reached the upstream exactly once, and nothing else did.
pub(crate) fn assert_exactly_once(double: &UpstreamDouble, stored: &[StoredPunch]) {
    let mut keys: Vec<String> = stored.iter().map(|s| EventKey::punch(&s.punch)).collect();
    for key in &keys {
        assert_eq!(double.applications(key), 1, "{key}");
        assert_eq!(double.deliveries(key), 1, "{key} delivered more than once");
    }
    keys.sort();
    let mut upstream = punch_keys(double);
    upstream.sort();
    assert_eq!(upstream, keys);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

/// The emulator's log as `(user_id, time, verify, state)`, read by pyzk; `None` when pyzk is
/// not installed (a loud skip is recorded).
fn pyzk_attendance(terminal: &Emulator) -> Option<Vec<(String, String, String, String)>> {
    let out = pyzk_read(terminal, &[])?;
    Some(
        out["attendance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["user_id"].as_str().unwrap().to_string(),
                    a["timestamp"].as_str().unwrap().replace('T', " "),
                    // 40-byte records: pyzk's `status` is the verify byte, `punch` the state.
                    a["status"].to_string(),
                    a["punch"].to_string(),
                )
            })
            .collect(),
    )
}

/// The emulator's log as `(user_id, time)`, read by node-zklib; `None` when it is missing.
fn zklib_attendance(terminal: &Emulator) -> Option<Vec<(String, String)>> {
    let port = terminal.tcp.unwrap().port().to_string();
    let out = run_peer(
        "node",
        "zklib_check.js",
        &["--port".into(), port, "--read-only".into()],
    )?;
    Some(
        out["attendance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["deviceUserId"].as_str().unwrap().to_string(),
                    a["recordTime"].as_str().unwrap().replace('T', " "),
                )
            })
            .collect(),
    )
}

fn as_tuples(stored: &[StoredPunch]) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = stored
        .iter()
        .map(|s| {
            let p = &s.punch;
            (
                p.user_id.clone(),
                p.time.clone(),
                p.mode.clone(),
                p.inout.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The agent's last log line containing `needle`.
pub(crate) fn last_line(agent: &RunningAgent, needle: &str) -> String {
    agent
        .log_text()
        .lines()
        .rfind(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the log"))
        .to_string()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// The number of attendance downloads the terminal served (`PREPARE_BUFFER` for the log).
fn attendance_reads(terminal: &Emulator) -> usize {
    terminal
        .commands()
        .iter()
        .filter(|c| c["name"] == "PREPARE_BUFFER" && c["inner"] == "ATTLOG_RRQ")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_punches_reach_the_upstream_once_and_survive_a_restart() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    let terminal = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "7",
        "--logs",
        "605",
        "--pacing-ms",
        "0",
    ]);
    let address = terminal.tcp.unwrap().to_string();
    let (config, log) = config(dir.path(), &address, "1s", &double.url());

    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 1);
    upstream_punches(&double, 605).await;
    // Later polls find the record count unchanged and download nothing.
    let polls = agent.count("complete read applied");
    agent.wait_for_log("complete read applied", polls + 2);
    agent.stop();
    let first = stored(dir.path());
    assert_eq!(first.len(), 605);
    assert!(
        first.iter().all(|s| s.punch.sn == "DSIM000001"
            && s.punch.time.starts_with("20")
            && s.punch.raw["layout"] == "40"),
        "{:?}",
        &first[..2]
    );
    assert_exactly_once(&double, &first);

    // A restart: the durable cursor says the log is stored; nothing new goes upstream.
    let mut agent = RunningAgent::on(&config, &log);
    let polls = agent.count("complete read applied");
    agent.wait_for_log("complete read applied", polls + 2);
    agent.stop();
    assert_eq!(
        stored(dir.path()),
        first,
        "a restart changes no stored punch"
    );
    assert_exactly_once(&double, &first);
    let text = agent.log_text();
    assert_eq!(text.matches("zk punches stored").count(), 1, "{text}");
    assert_eq!(
        attendance_reads(&terminal),
        1,
        "only the first poll downloads the log"
    );
    terminal.assert_nothing_destructive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_growing_zk_log_is_stored_exactly_once_and_matches_pyzk_and_node_zklib() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let shape = ["--users", "7", "--logs", "300", "--seed", "5"];
    let (config, log) = config(dir.path(), &listen, "1s", &double.url());

    // The terminal breaks off every multi-packet transfer: the log (12 kB) never arrives whole,
    // so nothing is stored and the users read is incomplete.
    let mut args = vec!["--tcp", &listen, "--fault", "drop-mid-transfer"];
    args.extend_from_slice(&shape);
    let broken = Emulator::zk(&args);
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("attendance log not read", 1);
    agent.stop();
    broken.assert_nothing_destructive();
    drop(broken);
    assert!(stored(dir.path()).is_empty());

    // The same terminal, healthy, punching 2 records during every attendance read (after the
    // agent read the count): the reconnection backfills the whole log, growth included.
    let mut args = vec!["--tcp", &listen, "--log-growth", "2"];
    args.extend_from_slice(&shape);
    let terminal = Emulator::zk(&args);
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 1);
    let polls = agent.count("complete read applied");
    agent.wait_for_log("complete read applied", polls + 1);
    upstream_punches(&double, 302).await;
    agent.stop();
    let first = stored(dir.path());
    assert_eq!(
        first.len(),
        302,
        "the whole log, with the 2 punched during the read"
    );
    assert_exactly_once(&double, &first);

    // pyzk reads the same records (its own read grows the log by 2 more: records 303–304).
    let Some(theirs) = pyzk_attendance(&terminal) else {
        return; // recorded as a loud skip
    };
    assert_eq!(theirs.len(), 304);
    assert_eq!(as_tuples(&first), sorted(theirs[..302].to_vec()));

    // The agent's next session stores exactly the new records: pyzk's 2 and the 2 punched
    // during its own read.
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 2);
    let polls = agent.count("complete read applied");
    agent.wait_for_log("complete read applied", polls + 1);
    upstream_punches(&double, 306).await;
    agent.stop();
    let second = stored(dir.path());
    assert_eq!(second.len(), 306);
    let ours = as_tuples(&second);
    for record in &theirs {
        assert!(
            ours.contains(record),
            "pyzk read {record:?}, the agent did not"
        );
    }
    assert_exactly_once(&double, &second);

    // node-zklib reads the same records too (its read grows the log by 2 more).
    if let Some(zklib) = zklib_attendance(&terminal) {
        let ours: Vec<(String, String)> = ours
            .into_iter()
            .map(|(user, time, _, _)| (user, time))
            .collect();
        assert_eq!(zklib.len(), second.len() + 2);
        assert_eq!(sorted(zklib[..second.len()].to_vec()), ours);
    }
    terminal.assert_nothing_destructive();
}

/// A terminal on `listen` holding `logs` records generated from `seed`.
fn terminal_on(listen: &str, logs: &str, seed: &str) -> Emulator {
    Emulator::zk(&[
        "--tcp",
        listen,
        "--users",
        "7",
        "--logs",
        logs,
        "--seed",
        seed,
        "--pacing-ms",
        "0",
    ])
}

/// The rewritten-log alarms recorded so far, as `(stored, on_device)`.
fn rewritten_alarms(dir: &Path) -> Vec<(u64, u64)> {
    let store = open_store(&dir.join("data"));
    store
        .alarms()
        .unwrap()
        .into_iter()
        .filter_map(|(_, alarm)| match alarm.kind {
            edge_agent::store::AlarmKind::AttendanceLogRewritten {
                stored, on_device, ..
            } => Some((stored, on_device)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zk_log_cleared_at_the_terminal_is_noticed_re_read_de_duplicated_and_alarmed() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let (config, log) = config(dir.path(), &listen, "1s", &double.url());

    let terminal = terminal_on(&listen, "20", "5");
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 1);
    upstream_punches(&double, 20).await;
    agent.stop();
    drop(terminal);
    let first = stored(dir.path());
    assert_eq!(first.len(), 20);
    assert!(rewritten_alarms(dir.path()).is_empty());

    // The log was cleared and partly rewritten at the terminal: it holds 10 of the records
    // stored before. The agent notices, re-reads it whole, stores nothing twice and alarms.
    let terminal = terminal_on(&listen, "10", "5");
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 2);
    agent.stop();
    drop(terminal);
    assert_eq!(
        stored(dir.path()),
        first,
        "nothing stored twice, nothing lost"
    );
    assert_eq!(rewritten_alarms(dir.path()), [(20, 10)]);
    assert!(agent
        .log_text()
        .contains("no longer starts with the records stored before"));

    // Cleared again, then 3 new punches: all 3 are stored and sent, once.
    let terminal = terminal_on(&listen, "3", "9");
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 3);
    upstream_punches(&double, 23).await;
    agent.stop();
    let now = stored(dir.path());
    assert_eq!(now.len(), 23);
    assert!(
        first.iter().all(|p| now.contains(p)),
        "a stored punch was lost"
    );
    assert_exactly_once(&double, &now);
    assert_eq!(rewritten_alarms(dir.path()), [(20, 10), (10, 3)]);
    terminal.assert_nothing_destructive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zk_log_refilled_to_the_stored_count_is_noticed_at_the_next_backup() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let (config, log) = config(dir.path(), &listen, "1s", &double.url());
    let terminal = terminal_on(&listen, "20", "5");
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 1);
    upstream_punches(&double, 20).await;

    // Cleared at the terminal and refilled with 20 other punches: the count the cursor holds.
    // Polls see the same count and download nothing; the next backup reads the log anyway.
    drop(terminal);
    let terminal = terminal_on(&listen, "20", "9");
    let polls = agent.count("complete read applied");
    agent.wait_for_log("complete read applied", polls + 2);
    assert_eq!(attendance_reads(&terminal), 0, "polls do not download");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = std::process::Command::new(test_support::agent::running::bin())
        .args(["backup", "create", "--device", DEVICE, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    agent.wait_for_log("no longer starts with the records stored before", 1);
    agent.wait_for_log("zk punches stored", 2);
    // Punches of the two logs may share a key (same user, second, verify and state).
    let line = last_line(&agent, "zk punches stored");
    let new: usize = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("new="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(new >= 15, "most refilled punches are new: {line}");
    upstream_punches(&double, 20 + new).await;
    agent.stop();
    assert_eq!(
        attendance_reads(&terminal),
        1,
        "the backup downloaded the log"
    );
    let now = stored(dir.path());
    assert_eq!(now.len(), 20 + new, "the refilled punches are stored too");
    assert_exactly_once(&double, &now);
    assert_eq!(rewritten_alarms(dir.path()), [(20, 20)]);
    terminal.assert_nothing_destructive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_punches_refused_by_a_full_outbox_stay_on_the_terminal_until_room_returns() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    double.set_outage(true);
    let listen = format!("127.0.0.1:{}", free_port());

    // The upstream is down: the first read's users and 20 punches stay queued.
    let (config, log) = config(dir.path(), &listen, "1s", &double.url());
    let terminal = terminal_on(&listen, "20", "5");
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 1);
    agent.stop();
    drop(terminal);
    assert_eq!(stored(dir.path()).len(), 20);

    // With a cap below what is queued, the outbox refuses the 2 new punches: nothing of them
    // is stored, the cursor stays, and they stay on the terminal.
    let (config, log) = config_capped(dir.path(), &listen, "1s", &double.url(), "4KB");
    let terminal = terminal_on(&listen, "22", "5");
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches could not be stored", 1);
    assert!(
        !agent.log_text().contains("new=2 repeated"),
        "stored in a full outbox: {}",
        agent.log_text()
    );

    // The upstream returns, the outbox drains, and a later poll stores and sends the 2.
    double.set_outage(false);
    upstream_punches(&double, 22).await;
    agent.stop();
    let now = stored(dir.path());
    assert_eq!(now.len(), 22);
    assert_exactly_once(&double, &now);
    terminal.assert_nothing_destructive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_serial_line_zk_punches_and_templates_reach_the_store_and_the_backup() {
    let dir = tempdir().unwrap();
    let double = UpstreamDouble::start(TOKEN).await;
    let cable = test_support::pty::SerialCable::new();
    let terminal = Emulator::zk(&[
        "--serial",
        cable.device_end(),
        "--rs485",
        "--device-id",
        "3",
        "--users",
        "7",
        "--logs",
        "30",
        "--fingers",
        "1",
    ]);
    let (config, log) = config(dir.path(), "unused", "1h", &double.url());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "address = \"unused\"",
        &format!(
            "transport = \"serial\"\nserial_port = \"{}\"\nrs485_address = 3",
            cable.agent_end()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log("zk punches stored", 1);
    agent.wait_for_log("backup written", 1);
    upstream_punches(&double, 30).await;
    agent.stop();
    let now = stored(dir.path());
    assert_eq!(now.len(), 30);
    assert_exactly_once(&double, &now);
    // Users 1, 3, 5 and 7 have finger 0: four templates in the backup, as over TCP.
    let backup = std::fs::read_dir(dir.path().join("data").join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
        .unwrap();
    let templates = std::fs::read_to_string(backup)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l.get("slot").is_some_and(|s| s.as_u64().unwrap() <= 9))
        .count();
    assert_eq!(templates, 4);
    terminal.assert_nothing_destructive();
}
