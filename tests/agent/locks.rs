//! Device locks across hosts, through the real binaries: two `edge-agent run` processes with
//! `[lock] mode = "arbiter"` poll one emulated ZK terminal through one `edge-agent arbiter` and
//! a private mosquitto. The terminal's own command log shows that their sessions never
//! overlap; the arbiter's audit lines show tokens strictly increasing, also across a kill -9
//! and restart of the arbiter; a holder whose broker disappears stops at its deadline and says
//! so in its audit log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::agent::config_file::AgentToml;
use test_support::agent::running::{bin, local_json, RunningAgent};
use test_support::mosquitto::Broker;
use test_support::{tempdir, Emulator};

const DEVICE: &str = "zk-door";

/// An agent config at site `s1`: lock mode arbiter over the broker on `port`, polling the ZK
/// terminal at `address` every `poll`. Each agent has its own lock dir, as on separate hosts.
fn agent_config(dir: &Path, id: &str, port: u16, address: &str, poll: &str, lock: &str) -> PathBuf {
    AgentToml {
        agent: "site = \"s1\"\nshutdown_timeout = \"5s\"",
        log: "level = \"info\"",
        lock: &format!("mode = \"arbiter\"\n{lock}"),
        rest: &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\nkeep_alive = \"5s\"\n\
             [[device]]\nid = \"{DEVICE}\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
             poll_interval = \"{poll}\"\ncommand_timeout = \"20s\"\n"
        ),
    }
    .write(dir, id)
}

/// `edge-agent arbiter --config FILE`, killed when dropped.
struct Arbiter {
    child: Child,
    log: PathBuf,
}

impl Arbiter {
    fn start(dir: &Path, port: u16) -> Arbiter {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("arbiter.log");
        let config = dir.join("arbiter.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nid = \"arbiter\"\nsite = \"s1\"\ndata_dir = \"{data}\"\n\
                 runtime_dir = \"{run}\"\n\
                 [log]\nlevel = \"info\"\nfile = \"{log}\"\njournald = \"never\"\n\
                 [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\n\
                 [lock]\nlock_delay = \"1s\"\ndir = \"{locks}\"\n",
                data = dir.join("data").display(),
                run = dir.join("run").display(),
                log = log.display(),
                locks = dir.join("locks").display(),
            ),
        )
        .unwrap();
        let child = Command::new(bin())
            .args(["arbiter", "--config"])
            .arg(&config)
            .env("JOURNAL_STREAM", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("edge-agent arbiter starts");
        let arbiter = Arbiter { child, log };
        arbiter.wait_for("lock arbiter connected", 1);
        arbiter
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.text().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} ×{count} in the arbiter log:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Arbiter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tokens the arbiter granted, in the order it granted them (its audit lines).
fn granted_tokens(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains("lock acquired"))
        .filter_map(|line| {
            let at = line.find("token=")? + "token=".len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// The terminal's sessions as index ranges of its command log (first..=last packet carrying
/// each session id); panics if two of them interleave.
fn assert_sessions_never_overlap(entries: &[Value]) -> usize {
    let mut ranges: Vec<(u64, usize, usize)> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let session = entry["session_id"].as_u64().unwrap_or(0);
        if session == 0 || entry["name"] == "CONNECT" {
            continue;
        }
        match ranges.iter_mut().find(|(id, _, _)| *id == session) {
            Some(range) => range.2 = index,
            None => ranges.push((session, index, index)),
        }
    }
    ranges.sort_by_key(|&(_, first, _)| first);
    for pair in ranges.windows(2) {
        let ((a, _, a_last), (b, b_first, _)) = (pair[0], pair[1]);
        assert!(
            a_last < b_first,
            "sessions {a} and {b} overlap on the terminal (packets {b_first}..={a_last})"
        );
    }
    ranges.len()
}

#[test]
fn two_agents_take_turns_through_the_arbiter_and_tokens_survive_its_restart() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    // Reads of about two seconds: two unexcluded agents polling every second would overlap.
    let emulator = terminal("30");
    let address = emulator.tcp.expect("tcp listener").to_string();
    let mut arbiter = Arbiter::start(&dir.path().join("arbiter"), broker.port);
    let lock = "lease = \"3s\"\nlock_delay = \"1s\"\nacquire_retries = 10\n";
    let agents: Vec<RunningAgent> = ["gw-a", "gw-b"]
        .iter()
        .map(|id| {
            let home = dir.path().join(id);
            let config = agent_config(&home, id, broker.port, &address, "1s", lock);
            RunningAgent::on(&config, &home.join("agent.log"))
        })
        .collect();
    let mut agents = agents;
    for agent in &mut agents {
        agent.wait_for_log("lock acquired, token", 3);
        agent.wait_for_log("lock released, token", 2);
    }
    let before = granted_tokens(&arbiter.text());
    assert!(before.len() >= 6, "{before:?}");
    assert!(
        before.windows(2).all(|w| w[0] < w[1]),
        "tokens strictly increase: {before:?}"
    );

    // kill -9 of the arbiter, then a restart on the same store.
    arbiter.kill();
    let old_log = arbiter.text();
    std::fs::remove_file(&arbiter.log).unwrap();
    let arbiter = Arbiter::start(&dir.path().join("arbiter"), broker.port);
    arbiter.wait_for("lock acquired", 4);
    let after = granted_tokens(&arbiter.text());
    let last_before = *granted_tokens(&old_log).last().unwrap();
    assert!(
        after[0] > last_before,
        "tokens keep increasing across the restart: {last_before} then {after:?}"
    );
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");

    // `edge-agent locks --all` asks the arbiter for every lock of the site.
    let listed = local_json(
        &dir.path().join("gw-a").join("agent.toml"),
        &["locks", "--all"],
    );
    let door = listed["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lock| lock["device"] == DEVICE)
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(door["token"].as_u64().unwrap() >= after[0], "{listed}");

    let sessions = assert_sessions_never_overlap(&emulator.entries());
    assert!(
        sessions >= 10,
        "both agents read the terminal: {sessions} sessions"
    );
    for agent in &agents {
        let text = agent.log_text();
        assert!(!text.contains("lock lost"), "{text}");
    }
}

/// A terminal whose reads take a while (small bulk fragments, `pacing_ms` apart), so locks
/// are held long enough to overlap if they did not exclude each other.
fn terminal(pacing_ms: &str) -> Emulator {
    Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "100",
        "--inline-threshold",
        "0",
        "--tcp-fragment",
        "128",
        "--pacing-ms",
        pacing_ms,
    ])
}

/// A terminal whose reads take several seconds, so a lock is still held when the test strikes.
fn slow_terminal() -> Emulator {
    terminal("100")
}

#[test]
fn a_holder_whose_broker_dies_stops_at_its_deadline_and_nobody_gets_a_new_lock() {
    let dir = tempdir().unwrap();
    let mut broker = Broker::start(false);
    let emulator = slow_terminal();
    let address = emulator.tcp.expect("tcp listener").to_string();
    let _arbiter = Arbiter::start(&dir.path().join("arbiter"), broker.port);
    let home = dir.path().join("gw-a");
    let lock = "lease = \"3s\"\nlock_delay = \"1s\"\nacquire_retries = 2\n";
    let config = agent_config(&home, "gw-a", broker.port, &address, "1s", lock);
    let mut agent = RunningAgent::on(&config, &home.join("agent.log"));
    agent.wait_for_log("local control socket listening", 1);
    // `edge-agent locks` asks the running agent which locks it holds: strike while it holds one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let held = local_json(&config, &["locks"]);
        if let Some(token) = held["locks"][0]["token"].as_u64() {
            assert_eq!(held["locks"][0]["device"], DEVICE, "{held}");
            assert!(
                held["locks"][0]["remaining_ms"].as_u64().unwrap() > 0,
                "{held}"
            );
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never held the lock: {held}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let struck = Instant::now();
    broker.kill();
    agent.wait_for_log(&format!("lock lost, token {token}"), 1);
    let lost_after = struck.elapsed();
    assert!(
        lost_after < Duration::from_secs(3),
        "the holder stopped within its lease ({lost_after:?})"
    );
    let acquired = agent.count("lock acquired, token");
    agent.wait_for_log("the device lock is no longer held", 1);
    agent.wait_for_log("did not grant the lock of device zk-door", 1);
    assert_eq!(
        agent.count("lock acquired, token"),
        acquired,
        "no new lock without the broker"
    );
    agent.stop();
    let audit = local_json(
        &config,
        &["audit", "query", "--device", DEVICE, "--operation", "lock"],
    )
    .to_string();
    assert!(
        audit.contains(&format!("lock lost, token {token}")),
        "{audit}"
    );
    assert!(
        audit.contains(&format!("lock acquired, token {token}")),
        "{audit}"
    );
}

#[test]
fn after_kill_9_of_the_holder_the_other_agent_gets_the_lock_after_lease_and_lock_delay() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    let emulator = slow_terminal();
    let address = emulator.tcp.expect("tcp listener").to_string();
    let arbiter = Arbiter::start(&dir.path().join("arbiter"), broker.port);
    let lock = "lease = \"3s\"\nlock_delay = \"1s\"\nacquire_retries = 20\n";
    let start = |id: &str| {
        let home = dir.path().join(id);
        let config = agent_config(&home, id, broker.port, &address, "500ms", lock);
        RunningAgent::on(&config, &home.join("agent.log"))
    };
    let mut first = start("gw-a");
    first.wait_for_log("lock acquired, token 1", 1);
    let mut second = start("gw-b");
    second.wait_for_log("lock client connected", 1);
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    first.kill();
    second.wait_for_log("lock acquired, token", 1);
    let handover = killed.elapsed();
    println!("hand-over after kill -9 of the holder: {handover:?} (lease 3s, lock-delay 1s)");
    assert!(
        handover >= Duration::from_secs(2),
        "not before the dead holder's lease ran out ({handover:?})"
    );
    arbiter.wait_for("lock lost", 1);
    assert_sessions_never_overlap(&emulator.entries());
}

/// `edge-agent check-config FILE`: (success, everything it printed).
fn check_config(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[test]
fn check_config_accepts_the_arbiter_settings_and_refuses_nonsense() {
    let dir = tempdir().unwrap();
    let head = format!(
        "[agent]\nid = \"gw1\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    let broker = "[mqtt]\nhost = \"broker.local\"\ntls = false\n";
    let good = format!(
        "{head}{broker}[lock]\nmode = \"arbiter\"\nlease = \"10s\"\nlock_delay = \"5s\"\n\
         max_hold = \"10m\"\nacquire_retries = 3\n"
    );
    let (ok, text) = check_config(dir.path(), &good);
    assert!(ok, "{text}");
    for (lock, key, why) in [
        ("lease = \"1s\"", "lock.lease", "at least 3s"),
        ("lease = \"2h\"", "lock.lease", "at most 10min"),
        (
            "lease = \"30s\"\nmax_hold = \"10s\"",
            "lock.max_hold",
            "renewal period",
        ),
        ("acquire_retries = 0", "lock.acquire_retries", "at least 1"),
        ("lock_delay = \"1h\"", "lock.lock_delay", "at most 10min"),
    ] {
        let text = format!("{head}{broker}[lock]\nmode = \"arbiter\"\n{lock}\n");
        let (ok, printed) = check_config(dir.path(), &text);
        assert!(!ok, "{lock} accepted: {printed}");
        assert!(
            printed.contains(key) && printed.contains(why),
            "{lock}: {printed}"
        );
    }
    let without_broker = format!("{head}[lock]\nmode = \"arbiter\"\n");
    let (ok, printed) = check_config(dir.path(), &without_broker);
    assert!(!ok && printed.contains("set mqtt.host"), "{printed}");
}

/// Measures uncontended acquire latency on loopback: a real `edge-agent arbiter` and mosquitto,
/// the agent's lock client in this process; each acquire is of a fresh device, so none waits.
/// Run with `cargo nextest run --run-ignored only -E 'test(acquire_latency)' --no-capture`.
#[test]
#[ignore = "measurement: prints figures"]
fn acquire_latency_uncontended_on_loopback() {
    use edge_agent::arbiter::ArbiterLock;
    use edge_agent::lock::{DeviceLock, LockJournal};
    let dir = tempdir().unwrap();
    let broker = Broker::start(false);
    let _arbiter = Arbiter::start(&dir.path().join("arbiter"), broker.port);
    let mut config = test_support::agent::mqtt::in_process_config(broker.port);
    config.lock.mode = edge_agent::config::LockMode::Arbiter;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut samples = runtime.block_on(async {
        let lock =
            ArbiterLock::from_config(&config, LockJournal::new(None, "bench"), "bench").unwrap();
        // Wait for the client's connection.
        while lock.list().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut samples = Vec::new();
        for i in 0..500 {
            let device = format!("bench-{i}");
            let started = Instant::now();
            let guard = lock.acquire(&device).await.expect("uncontended");
            samples.push(started.elapsed());
            drop(guard);
        }
        samples
    });
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "uncontended acquire over loopback (mosquitto + edge-agent arbiter, {} samples): \
         p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}
