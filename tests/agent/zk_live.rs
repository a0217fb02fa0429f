//! Live attendance events from a ZK terminal, through the running agent: with
//! `live_events = true`, `edge-agent run` keeps a session registered for `EF_ATTLOG` between
//! polls (under the device lock), stores each punch the terminal pushes through the same path
//! as the poll's records and acknowledges it; the punch reaches the upstream double long
//! before the next poll (10 minutes away), and the poll that follows finds the same record in
//! the log and sends nothing twice. A backup asked for through the control socket takes the
//! device from the listener, which comes back afterwards.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::zk_punches::{
    assert_exactly_once, config_with, last_line, punch_keys, stored, upstream_punches, DEVICE,
};
use test_support::agent::running::{bin, RunningAgent};
use test_support::agent::upstream::TOKEN;
use test_support::upstream_double::UpstreamDouble;
use test_support::{tempdir, Emulator};

const LISTENING: &str = "listening for live attendance events";

/// A punch at the terminal's keypad: `device-sim zk` punches on SIGUSR1.
fn punch_at(terminal: &Emulator) {
    // SAFETY: kill(2) on the emulator child this test started.
    let sent = unsafe { libc::kill(terminal.pid() as libc::pid_t, libc::SIGUSR1) };
    assert_eq!(sent, 0, "SIGUSR1 to the emulator");
}

/// `edge-agent WORDS --config CONFIG` against the running agent (its control socket).
fn agent_command(config: &Path, words: &[&str]) -> String {
    let out = Command::new(bin())
        .args(words)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run edge-agent");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "edge-agent {words:?}: {text}");
    text
}

/// A terminal with 7 users and 20 records, sending attendance events in `form` (bytes).
fn terminal(form: &str) -> Emulator {
    Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "7",
        "--logs",
        "20",
        "--pacing-ms",
        "0",
        "--event-format",
        form,
    ])
}

/// An agent listening to a terminal that sends events in `form`, with the terminal's 20 logged
/// punches already at the upstream double; the poll interval is 10 minutes, so anything that
/// arrives sooner came as a live event.
struct Listening {
    dir: test_support::TempDir,
    double: UpstreamDouble,
    terminal: Emulator,
    config: std::path::PathBuf,
    agent: RunningAgent,
}

impl Listening {
    async fn start(form: &str) -> Listening {
        Listening::start_with(form, "").await
    }

    /// As [`Listening::start`], with `lock` added to the config's `[lock]` table.
    async fn start_with(form: &str, lock: &str) -> Listening {
        let dir = tempdir().unwrap();
        let double = UpstreamDouble::start(TOKEN).await;
        let terminal = terminal(form);
        let address = terminal.tcp.unwrap().to_string();
        let (config, log) = config_with(
            dir.path(),
            &address,
            "10m",
            &double.url(),
            "64MB",
            "live_events = true\n",
        );
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replacen("[lock]\n", &format!("[lock]\n{lock}"), 1),
        )
        .unwrap();
        let mut agent = RunningAgent::on(&config, &log);
        agent.wait_for_log(LISTENING, 1);
        upstream_punches(&double, 20).await;
        Listening {
            dir,
            double,
            terminal,
            config,
            agent,
        }
    }
}

async fn live_punches_reach_the_upstream_once(form: &str) {
    let Listening {
        dir,
        double,
        terminal,
        config,
        mut agent,
    } = Listening::start(form).await;

    // A punch while the agent listens arrives without a poll (the next one is 10 min away).
    punch_at(&terminal);
    upstream_punches(&double, 21).await;
    agent.wait_for_log("live punch stored", 1);

    // The agent's own backup takes the device from the listener; the listener comes back.
    let listening = agent.count(LISTENING);
    // Backup file names are per second, and the first round was a backup.
    std::thread::sleep(Duration::from_millis(1100));
    let backup = agent_command(&config, &["backup", "create", "--device", DEVICE]);
    assert!(backup.contains("backup written"), "{backup}");
    agent.wait_for_log(LISTENING, listening + 1);
    punch_at(&terminal);
    upstream_punches(&double, 22).await;
    agent.wait_for_log("live punch stored", 2);

    // The next poll finds both punches in the log and stores and sends nothing new.
    let stores = agent.count("zk punches stored");
    let polled = agent_command(&config, &["sync-now", "--device", DEVICE]);
    assert!(polled.contains("requested"), "{polled}");
    agent.wait_for_log("zk punches stored", stores + 1);
    let last = last_line(&agent, "zk punches stored");
    assert!(last.contains("new=0"), "{last}");
    agent.stop();

    let all = stored(dir.path());
    assert_eq!(all.len(), 22);
    let live: Vec<_> = all
        .iter()
        .filter(|s| s.punch.raw.get("source").map(String::as_str) == Some("live_event"))
        .collect();
    assert_eq!(live.len(), 2, "two punches were stored from events");
    assert!(live.iter().all(|s| s.punch.sn == "DSIM000001"));
    assert_exactly_once(&double, &all);
    assert_eq!(punch_keys(&double).len(), 22);

    // The terminal saw the registration and acknowledgements with the events' reply ids.
    let commands = terminal.commands();
    assert!(commands.iter().any(|c| c["name"] == "REG_EVENT"));
    let acks = commands.iter().filter(|c| c["name"] == "ACK_OK").count();
    assert!(acks >= 2, "events acknowledged: {acks}");
    terminal.assert_nothing_destructive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_live_punches_in_the_user_id_form_reach_the_upstream_before_the_poll_and_once() {
    live_punches_reach_the_upstream_once("32").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_live_punches_in_the_small_uid_form_reach_the_upstream_before_the_poll_and_once() {
    live_punches_reach_the_upstream_once("10").await;
}

/// Punch → stored (the agent's "live punch stored" log line appears) and punch → upstream
/// (the double has the punch) for 40 punches made one after another while the agent listens.
/// Run with `cargo nextest run --run-ignored only -E 'test(zk_live_latency)'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints figures"]
async fn zk_live_latency() {
    let Listening {
        double,
        terminal,
        mut agent,
        ..
    } = Listening::start("32").await;
    let (mut to_stored, mut to_upstream) = (Vec::new(), Vec::new());
    for n in 1..=40usize {
        // One punch per second at most: the punch key has a one-second time.
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        let start = Instant::now();
        punch_at(&terminal);
        let mut stored_at = None;
        loop {
            if stored_at.is_none() && agent.count("live punch stored") >= n {
                stored_at = Some(start.elapsed());
            }
            if punch_keys(&double).len() >= 20 + n {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "punch {n} lost");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        to_upstream.push(start.elapsed());
        agent.wait_for_log("live punch stored", n);
        to_stored.push(stored_at.unwrap_or_else(|| start.elapsed()));
    }
    agent.stop();
    let print = |what: &str, mut v: Vec<Duration>| {
        v.sort();
        let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "zk live punch -> {what}: n={} p50={:?} p99={:?} max={:?}",
            v.len(),
            p(0.5),
            p(0.99),
            v[v.len() - 1]
        );
    };
    print("stored (agent log line)", to_stored);
    print("upstream double", to_upstream);
}

/// `check-config` names the trade-off of `live_events` and refuses it off tcp.
#[test]
fn check_config_names_the_live_events_trade_off_and_refuses_it_off_tcp() {
    let dir = tempdir().unwrap();
    let (config, _) = config_with(
        dir.path(),
        "127.0.0.1:4370",
        "10m",
        "http://127.0.0.1:9",
        "64MB",
        "live_events = true\n",
    );
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("device[0].live_events") && stderr.contains("holds its device lock"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("live_events", "transport = \"udp\"\nlive_events"),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("live events are for zk terminals over tcp"),
        "{stderr}"
    );
}

/// A listening session ends before its lock's fence (`lock.max_hold` here) and a new one,
/// under a new lock, takes over: no session outlives its lock, and punches keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zk_listening_session_ends_before_its_lock_fence_and_another_takes_over() {
    // max_hold 10 s, command timeout 3 s: each listening session ends after about 2 s.
    let Listening {
        dir,
        double,
        terminal,
        mut agent,
        ..
    } = Listening::start_with("36", "max_hold = \"10s\"\n").await;
    agent.wait_for_log("the device lock is about to end", 1);
    agent.wait_for_log(LISTENING, 2);
    punch_at(&terminal);
    upstream_punches(&double, 21).await;
    agent.stop();
    let text = agent.log_text();
    assert!(!text.contains("held longer than lock.max_hold"), "{text}");
    assert!(!text.contains("no longer held"), "{text}");
    let all = stored(dir.path());
    assert_eq!(all.len(), 21);
    assert_exactly_once(&double, &all);
    terminal.assert_nothing_destructive();
}
