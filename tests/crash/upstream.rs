//! Exactly-once effect across real crashes: the agent side is a separate process, killed with
//! SIGKILL at random moments while it enqueues and forwards; the upstream double lives in this
//! test process for the whole run and counts deliveries and applications per key.
//!
//! The test binary re-executes itself: with `EDGE_AGENT_UPSTREAM_CHILD=<dir>` set, the
//! `agent_child` test becomes the agent: it opens the store in `<dir>`, starts the forwarder
//! (batches of 10) against the double, and enqueues punches, printing `ACK <key>` only after
//! each is durable. After 30 rounds this process drains what is left and checks that every
//! acknowledged event was applied exactly once and that no event was applied twice.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edge_agent::lifecycle::Tasks;
use edge_agent::upstream::{self, Outbox, UpstreamClient};
use rand::Rng;
use test_support::agent::open_store;
use test_support::agent::upstream::{options, punch, token_file, AgentSide, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::wait_for;

const CHILD_ENV: &str = "EDGE_AGENT_UPSTREAM_CHILD";
const URL_ENV: &str = "EDGE_AGENT_UPSTREAM_URL";
const ROUND_ENV: &str = "EDGE_AGENT_UPSTREAM_ROUND";
/// The full name of the child entry point below, for `--exact`.
const CHILD_TEST: &str = "upstream::agent_child";
const ACK: &str = "ACK ";
const SALVAGED: &str = "SALVAGED";
const CAP: u64 = 64_000_000;
const ROUNDS: u64 = 30;

/// The agent process: forward, enqueue, acknowledge, until killed.
#[test]
fn agent_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir).to_path_buf();
    let url = std::env::var(URL_ENV).expect("url");
    let round: u64 = std::env::var(ROUND_ENV)
        .expect("round")
        .parse()
        .expect("round");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        // Never outlive a parent that died.
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            std::process::exit(3);
        });
        let opened =
            edge_agent::store::Store::open(&edge_agent::store::StoreOptions::at(dir.join("store")))
                .expect("child opens the store");
        if opened.salvage.is_some() {
            println!("{SALVAGED}");
        }
        let store = opened.store;
        let outbox = Outbox::open(&store, CAP).expect("outbox");
        let mut options = options(&url, &dir.join("upstream.token"));
        options.batch_size = 10;
        let client = UpstreamClient::new(&options.client).expect("client");
        let mut tasks = Tasks::new();
        let engine = test_support::agent::upstream::engine(&dir, &store, &outbox);
        let _upstream = upstream::spawn(&mut tasks, outbox.clone(), client, engine, &options);
        for i in 0.. {
            let event = punch(&format!("dev{}", i % 3), round * 1_000_000 + i, 1);
            let key = event.key.clone();
            outbox.enqueue(event).await.expect("enqueue");
            let mut out = std::io::stdout().lock();
            writeln!(out, "{ACK}{key}").expect("stdout");
            out.flush().expect("stdout");
            drop(out);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

fn spawn_child(dir: &Path, url: &str, round: u64) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(URL_ENV, url)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the agent child")
}

/// Lines of the child's stdout: `Some(key)` per complete ACK line, `None` for a salvage.
fn child_lines(child: &mut Child) -> mpsc::Receiver<Option<String>> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(complete) = line.strip_suffix('\n') {
                let message = if complete.contains(SALVAGED) {
                    Some(None)
                } else {
                    complete
                        .split_once(ACK)
                        .map(|(_, key)| Some(key.to_string()))
                };
                if let Some(message) = message {
                    if sender.send(message).is_err() {
                        return;
                    }
                }
            }
            line.clear();
        }
    });
    receiver
}

#[test]
fn every_acknowledged_event_is_applied_exactly_once_across_sigkills() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let double = runtime.block_on(UpstreamDouble::start(TOKEN));
    let dir = tempfile::tempdir().expect("temporary directory");
    token_file(dir.path(), TOKEN);
    let mut rng = rand::rng();
    let mut acknowledged: Vec<String> = Vec::new();
    let started = Instant::now();

    for round in 0..ROUNDS {
        // Widen the window between "applied upstream" and "settled locally" now and then.
        match round % 3 {
            0 => double.slow_next(1, Duration::from_millis(rng.random_range(50..300))),
            1 => double.drop_next(1),
            _ => {}
        }
        let mut child = spawn_child(dir.path(), &double.url(), round);
        let lines = child_lines(&mut child);
        if round % 2 == 0 {
            let first = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("round {round}: the child acknowledged nothing"));
            acknowledged.extend(first.map(Some).expect("store salvaged after SIGKILL"));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        for line in lines.iter() {
            let key = line.unwrap_or_else(|| panic!("round {round}: the store was salvaged"));
            acknowledged.push(key);
        }
    }

    // Drain what is left in this process, then judge.
    runtime.block_on(async {
        let store = open_store(dir.path());
        let outbox = Outbox::open(&store, CAP).expect("outbox");
        let mut agent =
            AgentSide::over(tempfile::tempdir().expect("spare directory"), store, outbox);
        agent.start(&options(&double.url(), &dir.path().join("upstream.token")));
        agent.drained(Duration::from_secs(30)).await;
        let outbox = agent.outbox.clone();
        wait_for(Duration::from_secs(5), "no dead letters", || {
            outbox.dead_letters().expect("dead letters").is_empty()
        })
        .await;
        agent.stop().await;
    });

    assert!(double.violations().is_empty(), "{:?}", double.violations());
    let counts = double.application_counts();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|key| double.applications(key) != 1)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never applied: {missing:?}"
    );
    let redelivered = counts
        .keys()
        .filter(|key| double.deliveries(key) > 1)
        .count();
    println!(
        "{ROUNDS} SIGKILL rounds in {:.1?}: {} events acknowledged, {} applied once each, \
         {} deliveries in all, {redelivered} events delivered more than once",
        started.elapsed(),
        acknowledged.len(),
        counts.len(),
        double.total_deliveries()
    );
    assert!(
        acknowledged.len() as u64 >= ROUNDS,
        "too few acknowledgements ({}) to prove anything",
        acknowledged.len()
    );
}
