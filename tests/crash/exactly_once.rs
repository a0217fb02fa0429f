//! The exactly-once proof through the running agent: `edge-agent run` reads an emulated AI06
//! terminal, applies the read and forwards its events to the upstream double, and is killed
//! with SIGKILL during read → apply → forward, 30 times: in every other round at a random
//! moment, in the others just after the upstream received the round's first event. Between
//! rounds the terminal's users change (another range of ids, other names), so a read
//! generation that were reused after a crash would describe other changes under the same keys.
//!
//! The judge is the double's own count of *facts* (device, user, type, store epoch, read
//! generation), compared with what the agent's store durably recorded (its read history):
//! every recorded fact applied exactly once, no fact the store does not have (one forwarded
//! before it was durable, then lost with the crash), and no key seen with two payloads.
//!
//! The store's group-commit window is widened to 150 ms so that many kills land between a
//! read's commit and its fsync: the gap "durable, then forwarded" closes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use edge_agent::store::{EpochCause, Store};
use edge_agent::sync::history;
use edge_agent::upstream::Outbox;
use rand::Rng;
use test_support::agent::open_store;
use test_support::agent::running::RunningAgent;
use test_support::agent::sync::{config_text, emulator, DEVICE};
use test_support::agent::upstream::{options, token_file, AgentSide, TOKEN};
use test_support::upstream_double::{Fact, UpstreamDouble};
use test_support::Emulator;

const ROUNDS: u32 = 30;

/// A fact without the store epoch, in the words of the agent's read history.
type Recorded = (String, String, &'static str, u64);

/// The terminal of one round: `users` users from `first`, names tagged with `tag`.
fn terminal(port: u16, dir: &Path, round: u32, users: u64, first: u64, tag: u32) -> Emulator {
    let names: Vec<String> = (0..users).map(|n| format!("u{n}-v{tag}")).collect();
    let users = users.to_string();
    let first = first.to_string();
    let names = names.join(",");
    emulator(
        port,
        &dir.join(format!("terminal-{round}.jsonl")),
        &[
            "--users",
            &users,
            "--first-enrollid",
            &first,
            "--names",
            &names,
            "--photo-kb",
            "0",
        ],
    )
}

/// What the agent logs when it applied a complete read.
const APPLIED: &str = "complete read applied";

fn applied_reads(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(APPLIED)
        .count()
}

/// The user-change facts the store durably recorded, from its read history.
fn recorded_facts(store: &Store) -> BTreeSet<Recorded> {
    let mut facts = BTreeSet::new();
    for entry in history::list(store, DEVICE).expect("history") {
        let mut add = |users: &[String], class: &'static str| {
            for user in users {
                facts.insert((DEVICE.to_string(), user.clone(), class, entry.generation));
            }
        };
        add(&entry.added, "appeared");
        add(&entry.missing, "user_missing");
        add(&entry.changed, "user_changed");
    }
    facts
}

/// The double's fact in the history's words (discovered and reappeared are both "appeared").
fn as_recorded(fact: &Fact) -> Recorded {
    let class = match fact.kind.as_str() {
        "user_discovered" | "user_reappeared" => "appeared",
        "user_missing" => "user_missing",
        "user_changed" => "user_changed",
        other => panic!("unexpected fact type {other}"),
    };
    (
        fact.device.clone(),
        fact.user.clone(),
        class,
        fact.generation,
    )
}

#[test]
fn every_fact_the_running_agent_records_reaches_the_upstream_exactly_once_across_sigkills() {
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
    // Each round swaps the terminal's users wholesale, which the mass-disappearance guard
    // would hold for an administrator (tested in `agent::guard`); here every recorded fact must
    // be forwarded, so the guard is set out of reach (no round drops to 0 users).
    text.push_str(&format!(
        "[monitor]\nmass_missing_min = 1000000\n\
         [store]\ngroup_commit_window = \"150ms\"\n\
         [upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
        double.url(),
        token.display()
    ));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).expect("write the config");

    let mut rng = rand::rng();
    let started = Instant::now();
    let mut kills_after_an_apply = 0;
    for round in 0..ROUNDS {
        let users = rng.random_range(3..15);
        let first = rng.random_range(1..8);
        let _terminal = terminal(
            port,
            dir.path(),
            round,
            users,
            first,
            rng.random_range(0..3),
        );
        let before = applied_reads(&log);
        let delivered = double.total_deliveries();
        let mut agent = RunningAgent::on(&config, &log);
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_millis(rng.random_range(150..1500)));
        } else {
            // Just after the upstream received something of this round: the moment a forward
            // made before the fsync would be lost with the store.
            let deadline = Instant::now() + Duration::from_secs(5);
            while double.total_deliveries() == delivered && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..20)));
        }
        agent.kill();
        if applied_reads(&log) > before {
            kills_after_an_apply += 1;
        }
    }

    // A last, clean run: it reads the final terminal and forwards what is queued.
    let _terminal = terminal(port, dir.path(), ROUNDS, 6, 2, 9);
    let before = applied_reads(&log);
    let mut agent = RunningAgent::on(&config, &log);
    agent.wait_for_log(APPLIED, before + 1);
    agent.stop();

    // Forward whatever is still queued, then judge.
    let store = open_store(&dir.path().join("data"));
    let epoch = store.epoch().expect("epoch");
    assert_ne!(
        epoch.cause,
        EpochCause::Salvaged,
        "a SIGKILL damaged the store"
    );
    runtime.block_on(async {
        let outbox = Outbox::open(&store, u64::MAX).expect("outbox");
        let mut side = AgentSide::over(tempfile::tempdir().expect("dir"), store.clone(), outbox);
        side.start(&options(&double.url(), &token));
        side.drained(Duration::from_secs(30)).await;
        side.stop().await;
    });

    let two_payloads = double.keys_with_two_payloads();
    assert!(
        two_payloads.is_empty(),
        "keys seen with two payloads: {two_payloads:?}"
    );
    let facts = double.fact_counts();
    let twice: BTreeMap<_, _> = facts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "facts applied more than once: {twice:?}");
    let other_epochs: Vec<_> = facts.keys().filter(|f| f.epoch != epoch.id).collect();
    assert!(
        other_epochs.is_empty(),
        "facts of another epoch: {other_epochs:?}"
    );
    let upstream: BTreeSet<Recorded> = facts.keys().map(as_recorded).collect();
    let recorded = recorded_facts(&store);
    let phantoms: Vec<_> = upstream.difference(&recorded).collect();
    assert!(
        phantoms.is_empty(),
        "the upstream applied facts the store never made durable (forwarded before the fsync, \
         lost with the crash): {phantoms:?}"
    );
    let lost: Vec<_> = recorded.difference(&upstream).collect();
    assert!(
        lost.is_empty(),
        "recorded but never applied upstream: {lost:?}"
    );
    assert!(!recorded.is_empty(), "no fact at all: nothing was proved");
    println!(
        "{ROUNDS} SIGKILL rounds of the running agent in {:.1?} ({kills_after_an_apply} after a \
         read was applied): {} facts recorded, each applied exactly once; {} deliveries in all",
        started.elapsed(),
        recorded.len(),
        double.total_deliveries()
    );
}
