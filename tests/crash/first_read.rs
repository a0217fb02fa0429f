//! A big first read applied in steps, through the running agent killed with SIGKILL between
//! its steps: `edge-agent run` reads an emulated AI06 terminal of 3,000 users with
//! `[monitor] first_read_chunk = 200` and forwards to the upstream double; it is killed just
//! after its 1st, then 3rd, then 5th step of a run was committed. After every kill the store is
//! a consistent store that knows fewer users (snapshot = sync state = buffer, generation 0, a
//! whole number of steps); a final run completes the read, and every user reaches the buffer
//! and the upstream exactly once (one `user_discovered` fact each, all keyed at generation 1).
//!
//! Fails if the read is applied in one transaction again: no step is ever logged, and no kill
//! can find a partly applied read (see `edge_agent::sync::apply`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use edge_agent::sync::{buffer, history, snapshot, state};
use edge_agent::upstream::Outbox;
use test_support::agent::open_store;
use test_support::agent::running::RunningAgent;
use test_support::agent::sync::{config_text, emulator, DEVICE, PATIENCE};
use test_support::agent::upstream::{options, token_file, AgentSide, TOKEN};
use test_support::upstream_double::UpstreamDouble;

const USERS: u64 = 3_000;
const CHUNK: u64 = 200;
/// What the agent logs once a step is durable.
const STEP: &str = "first-read step committed";
const APPLIED: &str = "complete read applied";

#[test]
fn a_first_read_killed_between_its_steps_reaches_buffer_and_upstream_exactly_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let double = runtime.block_on(UpstreamDouble::start(TOKEN));
    let dir = tempfile::tempdir().expect("temporary directory");
    let token = token_file(dir.path(), TOKEN);
    let port = test_support::free_port();
    let log = dir.path().join("agent.log");
    let mut text = config_text(dir.path(), port, "poll_interval = \"1s\"\n").replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    text.push_str(&format!(
        "[monitor]\nfirst_read_chunk = {CHUNK}\n\
         [upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        double.url(),
        token.display()
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).expect("write the config");
    let users = USERS.to_string();
    let _terminal = emulator(
        port,
        &dir.path().join("terminal.jsonl"),
        &["--users", &users, "--photo-kb", "0"],
    );

    let mut between_steps = 0;
    for steps in [1, 3, 5] {
        let mut agent = RunningAgent::on(&config, &log);
        let before = agent.count(STEP);
        let deadline = Instant::now() + PATIENCE;
        while agent.count(STEP) < before + steps {
            assert!(
                Instant::now() < deadline,
                "no {steps} first-read step(s) committed (is the first read still stepped?):\n{}",
                agent.log_text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        agent.kill();
        let store = open_store(&dir.path().join("data"));
        let sync = state::load(&store, DEVICE).expect("sync state");
        let snapshot = snapshot::load(&store, DEVICE).expect("snapshot");
        let present: BTreeSet<String> = buffer::list(&store, Some(DEVICE), None)
            .expect("buffer")
            .into_iter()
            .map(|u| u.user_id)
            .collect();
        let known: BTreeSet<String> = snapshot.keys().cloned().collect();
        assert_eq!(present, known, "buffer vs snapshot after a kill");
        assert_eq!(snapshot.len() as u64, sync.users, "snapshot vs sync state");
        eprintln!(
            "killed after {steps} step(s) of a run: generation {}, {} users known",
            sync.generation, sync.users
        );
        if sync.generation == 0 {
            assert!(
                sync.users > 0 && sync.users % CHUNK == 0,
                "a first read is applied in whole steps: {} users",
                sync.users
            );
            assert!(history::list(&store, DEVICE).expect("history").is_empty());
            between_steps += u64::from(sync.users < USERS);
        } else {
            assert_eq!((sync.generation, sync.users), (1, USERS));
        }
    }
    assert!(
        between_steps > 0,
        "no kill landed between two steps of the first read: nothing was proved"
    );

    let mut agent = RunningAgent::on(&config, &log);
    let before = agent.count(APPLIED);
    agent.wait_for_log(APPLIED, before + 1);
    agent.stop();

    let store = open_store(&dir.path().join("data"));
    let epoch = store.epoch().expect("epoch");
    runtime.block_on(async {
        let outbox = Outbox::open(&store, u64::MAX).expect("outbox");
        let mut side = AgentSide::over(tempfile::tempdir().expect("dir"), store.clone(), outbox);
        side.start(&options(&double.url(), &token));
        side.drained(Duration::from_secs(60)).await;
        side.stop().await;
    });

    let buffered: BTreeSet<String> = buffer::list(&store, Some(DEVICE), None)
        .expect("buffer")
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    assert_eq!(
        buffered.len() as u64,
        USERS,
        "every user reaches the buffer"
    );
    let history = history::list(&store, DEVICE).expect("history");
    assert_eq!(history.len(), 1, "one complete read");
    let added: BTreeSet<String> = history[0].added.iter().cloned().collect();
    let unnamed = buffered.difference(&added).count();
    assert!(
        unnamed == 0 && added.len() == buffered.len(),
        "the read's history names every user it added: {unnamed} of {} missing from it",
        buffered.len()
    );

    let two_payloads = double.keys_with_two_payloads();
    assert!(
        two_payloads.is_empty(),
        "keys with two payloads: {two_payloads:?}"
    );
    let facts = double.fact_counts();
    let twice: BTreeMap<_, _> = facts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "facts applied more than once: {twice:?}");
    let discovered: BTreeSet<String> = facts
        .keys()
        .filter(|f| f.kind == "user_discovered")
        .inspect(|f| {
            assert_eq!((f.generation, f.epoch.as_str()), (1, epoch.id.as_str()));
        })
        .map(|f| f.user.clone())
        .collect();
    let unannounced: Vec<&String> = buffered.difference(&discovered).take(5).collect();
    assert!(
        unannounced.is_empty() && discovered.len() == buffered.len(),
        "every user reaches the upstream, once: {} discovered of {} buffered (first missing: \
         {unannounced:?})",
        discovered.len(),
        buffered.len()
    );
    println!(
        "{USERS} users read in steps of {CHUNK}, {between_steps} kill(s) between steps: every \
         user buffered and applied upstream once"
    );
}
