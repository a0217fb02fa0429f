//! The Jepsen-style proof of the device lock: at least three real `edge-agent run` processes
//! contend for two emulated ZK terminals through one real mosquitto while a nemesis injects
//! faults at random from a printed seed (`JEPSEN_SEED` replays one): kill -9 of a holder,
//! SIGSTOP of a holder past any lease then SIGCONT, kill -9 of the broker and a restart on the
//! same port, and per-agent partitions, delays, duplicated and reordered packets through a
//! fault proxy in front of the broker.
//!
//! The terminals are the witness: each records every session (open, close, client address) on
//! its own monotonic clock; the agents log the local address of each session inside the span of
//! the lock it runs under. The checkers then find overlapping sessions on one terminal (with
//! their length), sessions run outside a lock, fencing tokens that do not strictly rise or come
//! back (not applicable to the same-box `flock` lock, whose token is always 0: the run says so),
//! the hand-over time after a holder is killed (p50/p99) and whether every lock converged to free
//! or one live holder once the faults stopped.
//!
//! `jepsen_bounded` is the CI run (about two minutes); `jepsen_long` is the long one
//! (`JEPSEN_SECONDS`, default 1800), ignored by default; `jepsen_sees_overlaps_when_the_lock_is_broken`
//! gives each agent its own lock directory and proves the overlap checker reports what follows.

mod history;
mod lab;

use std::io::Write;
use std::time::Duration;

use history::{percentile, Span, Tokens};
use lab::{Lab, LockKind, Options};
use test_support::paths::target_tmp;

/// The seed of this run: `JEPSEN_SEED` to replay one, otherwise fresh.
fn seed() -> u64 {
    match std::env::var("JEPSEN_SEED") {
        Ok(text) => text.trim().parse().expect("JEPSEN_SEED is a number"),
        Err(_) => rand::random(),
    }
}

/// What a run found.
struct Verdict {
    summary: String,
    overlaps: usize,
    unguarded: usize,
    token_problems: usize,
    missing_handovers: usize,
}

/// Writes `text` where it cannot be missed: stderr (shown with the test's output) and
/// `target/tmp/jepsen/<test>.txt`, which the test script prints in its summary.
fn publish(test: &str, text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
    let dir = target_tmp().join("jepsen");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{test}.txt")), text).unwrap();
}

/// Runs the lab with `options` and judges its history.
fn run(test: &str, options: Options) -> Verdict {
    // A run whose lock is meant to work keeps its directory when a checker objects.
    let lock_works = options.shared_lock || options.lock == LockKind::Arbiter;
    let seed = options.seed;
    let faults = options.faults;
    let (agents, devices) = (options.agents, options.devices);
    let duration = options.duration;
    let _ = std::io::stderr()
        .write_all(format!("{test}: seed {seed} (replay with JEPSEN_SEED={seed})\n").as_bytes());
    let mut lab = Lab::start(options);
    lab.run_nemesis();
    let healed = lab.heal_all_and_converge(Duration::from_secs(90));
    let holders = lab.lock_holders();
    let end = lab.stop();

    let sessions = lab.sessions();
    let records = lab.agent_records();
    let joined = history::join(&sessions, &records);
    let overlaps = history::overlaps(&sessions, end, Span::Active);
    let idle_overlaps = history::overlaps(&sessions, end, Span::Connected);
    let unguarded = history::unguarded(&joined);
    let tokens = history::tokens(&joined);
    let handovers = history::handovers(&joined, &lab.faults.kills, end);
    let gaps: Vec<Duration> = handovers.iter().filter_map(|h| h.gap).collect();
    let missing_handovers = handovers.iter().filter(|h| h.gap.is_none()).count();
    let ambiguous = joined.iter().filter(|j| j.ambiguous).count();

    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!(
        "== {test}: {agents} agents, {devices} terminals, {:.0} s of {}, seed {seed}",
        duration.as_secs_f64(),
        if faults { "faults" } else { "contention only" }
    ));
    line(match lab.lock() {
        LockKind::Flock if lab.shared_lock() => "lock: flock (one box, one lock.dir)".to_string(),
        LockKind::Flock => {
            "lock: none in effect (each agent its own flock lock.dir: broken on purpose)"
                .to_string()
        }
        LockKind::Arbiter => format!(
            "lock: arbiter (each agent its own lock.dir), lease {:?}, lock-delay {:?}",
            lab::LEASE,
            lab::LOCK_DELAY
        ),
    });
    line(
        "network namespaces: not used (skip recorded); partitions through the fault proxy"
            .to_string(),
    );
    test_support::skip::skipped(
        "netns",
        test,
        "partitions in network namespaces are not built; the fault proxy partitions instead",
    );
    let per_device: Vec<String> = holders
        .iter()
        .map(|(name, _)| {
            let n = sessions.iter().filter(|s| &s.device == name).count();
            format!("{name}: {n} sessions")
        })
        .collect();
    line(format!(
        "sessions: {} ({})",
        sessions.len(),
        per_device.join(", ")
    ));
    let mut per_agent = std::collections::BTreeMap::<String, usize>::new();
    for j in &joined {
        let agent = j.agent.map_or("?".to_string(), |a| format!("agent {a}"));
        *per_agent.entry(agent).or_default() += 1;
    }
    line(format!(
        "sessions per agent (fairness, not judged): {per_agent:?}"
    ));
    line(format!("faults: {:?}", lab.faults.counts));
    let stats = lab.proxy_stats();
    line(format!(
        "proxies: {} connections, {} packets, {} duplicated, {} reordered, {} severed",
        stats.iter().map(|s| s.connections).sum::<u64>(),
        stats.iter().map(|s| s.packets).sum::<u64>(),
        stats.iter().map(|s| s.duplicated).sum::<u64>(),
        stats.iter().map(|s| s.reordered).sum::<u64>(),
        stats.iter().map(|s| s.severed).sum::<u64>(),
    ));
    line(format!(
        "checker overlaps (two sessions touching one terminal at once): {}",
        overlaps.len()
    ));
    let who = |device: &str, seq: u64| {
        joined
            .iter()
            .find(|j| j.session.device == device && j.session.seq == seq)
            .map_or("?".to_string(), |j| {
                format!(
                    "agent {:?} token {:?}, opened +{:.2}s, last command +{:.2}s, closed +{:.2}s",
                    j.agent,
                    j.token,
                    j.session.open_ns.saturating_sub(lab.started_ns) as f64 / 1e9,
                    j.session
                        .last_command_ns
                        .unwrap_or(0)
                        .saturating_sub(lab.started_ns) as f64
                        / 1e9,
                    j.session
                        .close_ns
                        .unwrap_or(end)
                        .saturating_sub(lab.started_ns) as f64
                        / 1e9,
                )
            })
    };
    for o in overlaps.iter().take(20) {
        line(format!(
            "  OVERLAP {}: session {} ({}; {}) and session {} ({}; {}) both active for {:?}",
            o.device,
            o.first.0,
            o.first.1,
            who(&o.device, o.first.0),
            o.second.0,
            o.second.1,
            who(&o.device, o.second.0),
            o.length
        ));
    }
    line(format!(
        "  (connections open at once, idle time included, e.g. a paused holder's: {})",
        idle_overlaps.len()
    ));
    line(format!(
        "checker guarded: {} sessions outside a lock ({ambiguous} not attributable: reused client port)",
        unguarded.len()
    ));
    for u in unguarded.iter().take(20) {
        line(format!("  UNGUARDED {u}"));
    }
    let token_problems = match &tokens {
        Tokens::NoArbiter => {
            line("checker tokens: not applicable (every token 0: no arbiter; only the overlap checker judges this run)".into());
            0
        }
        Tokens::Checked { holds, problems } => {
            line(format!(
                "checker tokens: {holds} holds, {} problems",
                problems.len()
            ));
            for p in problems.iter().take(20) {
                line(format!("  TOKEN {p}"));
            }
            problems.len()
        }
    };
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
    line(format!(
        "checker hand-over after kill -9 of a holder: {} hand-overs, p50 {}, p99 {}, max {}, \
         bound {} ms, {} never handed over",
        handovers.len(),
        ms(percentile(&gaps, 50.0)),
        ms(percentile(&gaps, 99.0)),
        ms(gaps.iter().max().copied()),
        lab.handover_bound().as_millis(),
        missing_handovers
    ));
    for h in handovers
        .iter()
        .filter(|h| h.gap.is_none_or(|g| g > lab.handover_bound()))
    {
        line(format!(
            "  SLOW HAND-OVER {} after agent {} was killed: {}",
            h.device,
            h.dead,
            ms(h.gap)
        ));
    }
    line(format!(
        "checker convergence: every terminal served again after the faults stopped; lock holders {:?}",
        holders
    ));
    let _ = healed;
    if !lab.faults.lines.is_empty() {
        line(format!("fault schedule: {}", lab.faults.lines.join("; ")));
    }
    let failed = !overlaps.is_empty()
        || !unguarded.is_empty()
        || token_problems > 0
        || missing_handovers > 0;
    if failed && lock_works {
        s.push_str(&format!("lab kept for a look: {}\n", lab.keep().display()));
    }
    publish(test, &s);
    Verdict {
        summary: s,
        overlaps: overlaps.len(),
        unguarded: unguarded.len(),
        token_problems,
        missing_handovers,
    }
}

fn assert_safe(verdict: &Verdict) {
    assert_eq!(
        verdict.overlaps, 0,
        "overlapping sessions:\n{}",
        verdict.summary
    );
    assert_eq!(
        verdict.unguarded, 0,
        "sessions outside a lock:\n{}",
        verdict.summary
    );
    assert_eq!(
        verdict.token_problems, 0,
        "fencing tokens:\n{}",
        verdict.summary
    );
    assert_eq!(
        verdict.missing_handovers, 0,
        "a killed holder's terminal was never served again:\n{}",
        verdict.summary
    );
}

/// The CI run: three agents, two terminals, one arbiter, about a minute and a quarter of
/// random faults.
#[test]
fn jepsen_bounded() {
    let verdict = run(
        "jepsen_bounded",
        Options {
            lock: LockKind::Arbiter,
            agents: 3,
            devices: 2,
            shared_lock: false,
            duration: Duration::from_secs(75),
            seed: seed(),
            faults: true,
        },
    );
    assert_safe(&verdict);
}

/// The same-box lock under the same faults: three agents sharing one `lock.dir`.
#[test]
fn jepsen_bounded_flock() {
    let verdict = run(
        "jepsen_bounded_flock",
        Options {
            lock: LockKind::Flock,
            agents: 3,
            devices: 2,
            shared_lock: true,
            duration: Duration::from_secs(40),
            seed: seed(),
            faults: true,
        },
    );
    assert_safe(&verdict);
}

/// The long run, with the arbiter:
/// `JEPSEN_SECONDS=1800 cargo nextest run -E 'test(jepsen_long)' --run-ignored only`.
#[test]
#[ignore = "long run: JEPSEN_SECONDS (default 1800) of faults"]
fn jepsen_long() {
    let seconds = std::env::var("JEPSEN_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1800);
    let verdict = run(
        "jepsen_long",
        Options {
            lock: LockKind::Arbiter,
            agents: 3,
            devices: 2,
            shared_lock: false,
            duration: Duration::from_secs(seconds),
            seed: seed(),
            faults: true,
        },
    );
    assert_safe(&verdict);
}

/// The checker catches what it is for: agents that do not share a lock (each its own
/// `lock.dir`, no arbiter) talk to a terminal at the same time, and the overlaps are reported.
#[test]
fn jepsen_sees_overlaps_when_the_lock_is_broken() {
    let verdict = run(
        "jepsen_sees_overlaps_when_the_lock_is_broken",
        Options {
            lock: LockKind::Flock,
            agents: 3,
            devices: 2,
            shared_lock: false,
            duration: Duration::from_secs(20),
            seed: seed(),
            faults: false,
        },
    );
    assert!(
        verdict.overlaps > 0,
        "three agents without a shared lock never overlapped:\n{}",
        verdict.summary
    );
}
