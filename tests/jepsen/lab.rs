//! The lab: one real mosquitto, emulated ZK terminals that record every session, and several
//! real `edge-agent run` processes contending for them, each behind its own fault proxy to the
//! broker. The nemesis drives faults at random from a seed; afterwards the history goes to the
//! checkers in [`crate::history`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use device_protocols::sim::session_log::monotonic_ns;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::agent::running::RunningAgent;
use test_support::emulator::{command_log, Protocol};
use test_support::fault_proxy::{Fault, FaultProxy};
use test_support::mosquitto::Broker;
use test_support::{tempdir, Emulator, TempDir};

use crate::history::{self, AgentSession, DeviceSession};

/// How often each agent polls each terminal: short, so that they contend all the time.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// The pause between the `flock` lock's acquisition attempts (`FlockLock::from_config`).
const FLOCK_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Which device lock the agents use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// `mode = "flock"`: the agents share one box and one `lock.dir`.
    Flock,
    /// `mode = "arbiter"`: each agent its own `lock.dir` (as on its own host), one
    /// `edge-agent arbiter` for the site, behind its own fault proxy.
    Arbiter,
}

/// The arbiter's lease and lock-delay in the lab: short, so hand-overs happen often.
pub(crate) const LEASE: Duration = Duration::from_secs(3);
/// See [`LEASE`].
pub(crate) const LOCK_DELAY: Duration = Duration::from_secs(1);

/// The shape of a run.
pub(crate) struct Options {
    /// The lock under test.
    pub(crate) lock: LockKind,
    /// Contending agents (at least 3 for the proof).
    pub agents: usize,
    /// Emulated terminals (at least 2).
    pub devices: usize,
    /// Flock: all agents share one `lock.dir` (the lock works); `false` breaks it on purpose.
    pub shared_lock: bool,
    /// How long the nemesis runs.
    pub duration: Duration,
    /// Seed of the nemesis.
    pub seed: u64,
    /// Inject faults (`false`: contention only).
    pub faults: bool,
}

/// One contender.
struct Slot {
    config: PathBuf,
    proxy: FaultProxy,
    agent: Option<RunningAgent>,
    paused: bool,
    /// Every log file this slot's agents wrote (a restarted agent appends to the same one).
    log: PathBuf,
}

/// A fault in progress, healed at `until`.
struct Active {
    until: Instant,
    heal: Heal,
}

enum Heal {
    Resume(usize),
    Restart(usize),
    Proxy(usize),
    Broker,
    RestartArbiter,
    ArbiterProxy,
}

/// The site's arbiter (arbiter mode).
struct ArbiterSlot {
    config: PathBuf,
    log: PathBuf,
    proxy: FaultProxy,
    process: Option<RunningAgent>,
}

/// What the nemesis did, for the summary and the hand-over checker.
#[derive(Default)]
pub(crate) struct FaultLog {
    /// Faults by kind.
    pub counts: BTreeMap<&'static str, usize>,
    /// Agents killed with SIGKILL, with the emulator clock at the kill.
    pub kills: Vec<(usize, u64)>,
    /// One line per fault, `+seconds kind target`.
    pub lines: Vec<String>,
}

/// One emulated terminal and its session log (readable after the emulator stopped).
struct Terminal {
    name: String,
    emulator: Option<Emulator>,
    sessions: PathBuf,
}

/// The running lab.
pub(crate) struct Lab {
    dir: TempDir,
    broker: Broker,
    terminals: Vec<Terminal>,
    slots: Vec<Slot>,
    arbiter: Option<ArbiterSlot>,
    started: Instant,
    /// The emulator clock when the lab started, to place sessions on the fault schedule.
    pub(crate) started_ns: u64,
    /// What the nemesis did.
    pub faults: FaultLog,
    options: Options,
}

impl Lab {
    /// Starts the broker, the terminals and the agents.
    pub(crate) fn start(options: Options) -> Lab {
        let dir = tempdir().unwrap();
        let broker = Broker::start(true);
        let terminals = (0..options.devices)
            .map(|d| {
                let name = format!("zk-{d}");
                let sessions = dir.path().join(format!("{name}.sessions.jsonl"));
                let emulator = Emulator::start(
                    Protocol::Zk,
                    command_log(Protocol::Zk, &format!("jepsen-{name}")),
                    &[
                        "--tcp",
                        "127.0.0.1:0",
                        "--concurrent-tcp",
                        "--users",
                        "300",
                        "--logs",
                        "200",
                        "--seed",
                        &(d + 1).to_string(),
                        "--session-log",
                        sessions.to_str().unwrap(),
                    ],
                );
                Terminal {
                    name,
                    emulator: Some(emulator),
                    sessions,
                }
            })
            .collect::<Vec<_>>();
        let broker_addr: SocketAddr = format!("127.0.0.1:{}", broker.port).parse().unwrap();
        let slots = (0..options.agents)
            .map(|k| {
                let slot_dir = dir.path().join(format!("agent-{k}"));
                std::fs::create_dir_all(slot_dir.join("data")).unwrap();
                let locks = if options.shared_lock && options.lock == LockKind::Flock {
                    dir.path().join("locks")
                } else {
                    slot_dir.join("locks")
                };
                let proxy = FaultProxy::start(broker_addr);
                let log = slot_dir.join("agent.log");
                let config = slot_dir.join("agent.toml");
                std::fs::write(
                    &config,
                    agent_config(
                        k,
                        &slot_dir,
                        &locks,
                        &log,
                        proxy.port,
                        &terminals,
                        options.lock,
                    ),
                )
                .unwrap();
                Slot {
                    config,
                    proxy,
                    agent: None,
                    paused: false,
                    log,
                }
            })
            .collect();
        let arbiter = (options.lock == LockKind::Arbiter).then(|| {
            let home = dir.path().join("arbiter");
            std::fs::create_dir_all(home.join("data")).unwrap();
            let proxy = FaultProxy::start(broker_addr);
            let (config, log) = (home.join("arbiter.toml"), home.join("arbiter.log"));
            std::fs::write(&config, arbiter_config(&home, &log, proxy.port)).unwrap();
            ArbiterSlot {
                config,
                log,
                proxy,
                process: None,
            }
        });
        let mut lab = Lab {
            dir,
            broker,
            terminals,
            slots,
            arbiter,
            started: Instant::now(),
            started_ns: monotonic_ns(),
            faults: FaultLog::default(),
            options,
        };
        lab.spawn_arbiter(true);
        for k in 0..lab.slots.len() {
            lab.spawn(k);
        }
        lab
    }

    /// Starts the arbiter; at the lab's start, waits until it reaches the broker (a restart
    /// during the faults does not wait: the broker may be down).
    fn spawn_arbiter(&mut self, wait: bool) {
        if let Some(arbiter) = self.arbiter.as_mut() {
            let mut process = RunningAgent::arbiter(&arbiter.config, &arbiter.log);
            if wait {
                process.wait_for_log(ARBITER_CONNECTED, 1);
            }
            arbiter.process = Some(process);
        }
    }

    fn spawn(&mut self, k: usize) {
        let slot = &mut self.slots[k];
        slot.agent = Some(RunningAgent::on_with_env(
            &slot.config,
            &slot.log,
            &[("RUST_LOG", "info,edge_agent::device::zk::tcp=debug")],
        ));
        slot.paused = false;
    }

    /// The hand-over bound of the lock under test: with `flock`, a dead holder's lock is free
    /// at once and a contender takes it at its next attempt (a poll interval, or the pause
    /// between attempts), plus one session of the one who got there first.
    /// With the arbiter: the lease (the dead holder's runs out), the lock-delay, a renewal
    /// period, then a contender's next attempt (a poll interval).
    pub(crate) fn handover_bound(&self) -> Duration {
        match self.options.lock {
            LockKind::Flock => POLL + FLOCK_RETRY_PAUSE + Duration::from_secs(3),
            LockKind::Arbiter => LEASE + LOCK_DELAY + LEASE / 3 + POLL,
        }
    }

    /// The lock under test.
    pub(crate) fn lock(&self) -> LockKind {
        self.options.lock
    }

    /// Whether the `flock` agents share one `lock.dir` (the lock works).
    pub(crate) fn shared_lock(&self) -> bool {
        self.options.shared_lock
    }

    /// Runs the nemesis for the configured time (or only lets the agents contend).
    pub(crate) fn run_nemesis(&mut self) {
        let mut rng = StdRng::seed_from_u64(self.options.seed);
        let end = Instant::now() + self.options.duration;
        let mut active: Vec<Active> = Vec::new();
        let mut next_fault = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            let now = Instant::now();
            let (due, pending): (Vec<_>, Vec<_>) = active.into_iter().partition(|a| a.until <= now);
            active = pending;
            for fault in due {
                self.heal(fault.heal);
            }
            if self.options.faults && now >= next_fault {
                if let Some(fault) = self.inject(&mut rng, &active) {
                    active.push(fault);
                }
                next_fault = now + Duration::from_millis(rng.random_range(300..1500));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for fault in active {
            self.heal(fault.heal);
        }
    }

    fn note(&mut self, kind: &'static str, target: String) {
        *self.faults.counts.entry(kind).or_default() += 1;
        let at = self.started.elapsed().as_secs_f64();
        self.faults.lines.push(format!("+{at:.1}s {kind} {target}"));
    }

    /// Starts one fault at random on a target no other fault is acting on.
    fn inject(&mut self, rng: &mut StdRng, active: &[Active]) -> Option<Active> {
        let busy = |k: usize| {
            active.iter().any(|a| match a.heal {
                Heal::Resume(j) | Heal::Restart(j) | Heal::Proxy(j) => j == k,
                Heal::Broker | Heal::RestartArbiter | Heal::ArbiterProxy => false,
            })
        };
        let broker_down = active.iter().any(|a| matches!(a.heal, Heal::Broker));
        let arbiter_faulted = active
            .iter()
            .any(|a| matches!(a.heal, Heal::RestartArbiter | Heal::ArbiterProxy));
        let free: Vec<usize> = (0..self.slots.len()).filter(|&k| !busy(k)).collect();
        let holders: Vec<usize> = self
            .holders()
            .into_iter()
            .filter(|k| free.contains(k))
            .collect();
        let lasting = |ms: std::ops::Range<u64>, rng: &mut StdRng| {
            Instant::now() + Duration::from_millis(rng.random_range(ms))
        };
        if self.arbiter.is_some() && !arbiter_faulted && rng.random_bool(0.15) {
            let arbiter = self.arbiter.as_mut().expect("arbiter mode");
            return Some(if rng.random_bool(0.5) {
                if let Some(mut process) = arbiter.process.take() {
                    process.kill();
                }
                self.note("kill-arbiter", String::new());
                Active {
                    until: lasting(300..4000, rng),
                    heal: Heal::RestartArbiter,
                }
            } else {
                arbiter.proxy.set(Fault::BlackHole);
                self.note("partition-arbiter", String::new());
                Active {
                    until: lasting(1000..6000, rng),
                    heal: Heal::ArbiterProxy,
                }
            });
        }
        match rng.random_range(0..8) {
            0 | 1 if !holders.is_empty() => {
                let k = holders[rng.random_range(0..holders.len())];
                let at = monotonic_ns();
                if let Some(agent) = self.slots[k].agent.as_mut() {
                    agent.kill();
                }
                self.slots[k].agent = None;
                self.faults.kills.push((k, at));
                self.note("kill-holder", format!("agent {k}"));
                Some(Active {
                    until: lasting(200..2000, rng),
                    heal: Heal::Restart(k),
                })
            }
            2 if !holders.is_empty() => {
                let k = holders[rng.random_range(0..holders.len())];
                self.slots[k].agent.as_ref()?.signal(libc::SIGSTOP);
                self.slots[k].paused = true;
                self.note("pause-holder", format!("agent {k}"));
                Some(Active {
                    until: lasting(2000..6000, rng),
                    heal: Heal::Resume(k),
                })
            }
            3 if !broker_down => {
                self.broker.kill();
                self.note("kill-broker", String::new());
                Some(Active {
                    until: lasting(300..3000, rng),
                    heal: Heal::Broker,
                })
            }
            4..=7 if !free.is_empty() => {
                let k = free[rng.random_range(0..free.len())];
                let (kind, fault) = match rng.random_range(0..4) {
                    0 => ("partition", Fault::BlackHole),
                    1 => (
                        "delay",
                        Fault::Delay(Duration::from_millis(rng.random_range(50..1500))),
                    ),
                    2 => ("duplicate", Fault::Duplicate),
                    _ => ("reorder", Fault::Reorder),
                };
                self.slots[k].proxy.set(fault);
                self.note(kind, format!("agent {k} {fault:?}"));
                Some(Active {
                    until: lasting(1000..8000, rng),
                    heal: Heal::Proxy(k),
                })
            }
            _ => None,
        }
    }

    fn heal(&mut self, heal: Heal) {
        match heal {
            Heal::Resume(k) => {
                if let Some(agent) = self.slots[k].agent.as_ref() {
                    agent.signal(libc::SIGCONT);
                }
                self.slots[k].paused = false;
            }
            Heal::Restart(k) => self.spawn(k),
            Heal::Proxy(k) => {
                let slot = &self.slots[k];
                if slot.proxy.fault() == Fault::BlackHole && rand::random_bool(0.5) {
                    // A partition that outlived the connection: both ends see it go.
                    slot.proxy.sever();
                }
                slot.proxy.set(Fault::Pass);
            }
            Heal::Broker => self.broker.restart(),
            Heal::RestartArbiter => self.spawn_arbiter(false),
            Heal::ArbiterProxy => {
                if let Some(arbiter) = &self.arbiter {
                    arbiter.proxy.set(Fault::Pass);
                }
            }
        }
    }

    /// Agents with a terminal session open right now (the terminals' own records, joined with
    /// the agents' logs).
    fn holders(&self) -> Vec<usize> {
        let records = self.agent_records();
        let mut found = Vec::new();
        for terminal in &self.terminals {
            for session in history::read_sessions(&terminal.name, &terminal.sessions) {
                if session.close_ns.is_none() {
                    if let Some(record) = records.iter().find(|r| r.local == session.peer) {
                        found.push(record.agent);
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// Every session-open line of every agent so far.
    pub(crate) fn agent_records(&self) -> Vec<AgentSession> {
        self.slots
            .iter()
            .enumerate()
            .flat_map(|(k, slot)| {
                history::agent_sessions(k, &std::fs::read_to_string(&slot.log).unwrap_or_default())
            })
            .collect()
    }

    /// Every session the terminals recorded so far.
    pub(crate) fn sessions(&self) -> Vec<DeviceSession> {
        self.terminals
            .iter()
            .flat_map(|t| history::read_sessions(&t.name, &t.sessions))
            .collect()
    }

    /// After the faults: every agent runs and reaches the broker, and every terminal is served
    /// again (a session opened and closed after this point). Returns the emulator clock when
    /// the faults stopped.
    pub(crate) fn heal_all_and_converge(&mut self, patience: Duration) -> u64 {
        if let Some(arbiter) = &self.arbiter {
            arbiter.proxy.set(Fault::Pass);
        }
        if self.arbiter.as_ref().is_some_and(|a| a.process.is_none()) {
            self.spawn_arbiter(false);
        }
        for k in 0..self.slots.len() {
            self.slots[k].proxy.set(Fault::Pass);
            if self.slots[k].paused {
                self.heal(Heal::Resume(k));
            }
            if self.slots[k].agent.is_none() {
                self.spawn(k);
            }
        }
        let healed = monotonic_ns();
        let deadline = Instant::now() + patience;
        loop {
            let served: Vec<bool> = self
                .terminals
                .iter()
                .map(|t| {
                    history::read_sessions(&t.name, &t.sessions)
                        .iter()
                        .any(|s| s.open_ns > healed && s.close_ns.is_some())
                })
                .collect();
            if served.iter().all(|&s| s) {
                return healed;
            }
            assert!(
                Instant::now() < deadline,
                "terminals not served again {patience:?} after the faults stopped: {served:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Checker 4: each terminal's lock is free or held by one live agent of this run. Same-box
    /// lock: from `/proc/locks`; arbiter: the arbiter's own audit lines (the last grant of each
    /// device not followed by its release or loss).
    pub(crate) fn lock_holders(&self) -> Vec<(String, Vec<String>)> {
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&k| self.slots[k].agent.is_some())
            .collect();
        let pids: Vec<u32> = self
            .slots
            .iter()
            .filter_map(|s| s.agent.as_ref().map(|a| a.child.id()))
            .collect();
        let arbiter_log = self
            .arbiter
            .as_ref()
            .map(|a| std::fs::read_to_string(&a.log).unwrap_or_default());
        self.terminals
            .iter()
            .map(|t| {
                let name = &t.name;
                let holders: Vec<String> = match &arbiter_log {
                    None => {
                        let path = self.dir.path().join("locks").join(format!("{name}.lock"));
                        let holders = history::flock_holders(&path);
                        for pid in &holders {
                            assert!(
                                pids.contains(pid),
                                "{name}: held by {pid}, not a live agent"
                            );
                        }
                        holders.iter().map(|pid| format!("pid {pid}")).collect()
                    }
                    Some(log) => {
                        let holder = history::arbiter_holder(log, name);
                        if let Some(holder) = &holder {
                            assert!(
                                live.iter()
                                    .any(|k| holder.contains(&format!("contender-{k}"))),
                                "{name}: the arbiter says {holder} holds it, not a live agent"
                            );
                        }
                        holder.into_iter().collect()
                    }
                };
                (name.clone(), holders)
            })
            .collect()
    }

    /// Stops every agent (SIGKILL: what they leave is part of the history) and every terminal
    /// (checking no destructive command reached one). Returns the emulator clock at the end.
    pub(crate) fn stop(&mut self) -> u64 {
        for slot in &mut self.slots {
            if let Some(mut agent) = slot.agent.take() {
                if slot.paused {
                    agent.signal(libc::SIGCONT);
                }
                agent.kill();
            }
        }
        if let Some(mut process) = self.arbiter.as_mut().and_then(|a| a.process.take()) {
            process.kill();
        }
        let end = monotonic_ns();
        for terminal in &mut self.terminals {
            if let Some(emulator) = terminal.emulator.take() {
                // The ZK emulator ends on a signal only; dropping it kills it and checks its
                // command log.
                emulator.assert_nothing_destructive();
                drop(emulator);
            }
        }
        end
    }

    /// Keeps the lab's directory (configs, agent and arbiter logs, session logs) after the
    /// test, for a look at a failure; returns where it is.
    pub(crate) fn keep(&mut self) -> PathBuf {
        let dir = std::mem::replace(&mut self.dir, tempdir().unwrap());
        dir.keep()
    }

    /// The proxies' counts, per agent (and the arbiter's last).
    pub(crate) fn proxy_stats(&self) -> Vec<test_support::fault_proxy::ProxyStats> {
        self.slots
            .iter()
            .map(|s| &s.proxy)
            .chain(self.arbiter.as_ref().map(|a| &a.proxy))
            .map(FaultProxy::stats)
            .collect()
    }
}

/// `edge-agent run` config of agent `k`: every terminal, polled every [`POLL`], locks in
/// `locks`, MQTT through its proxy.
fn agent_config(
    k: usize,
    dir: &Path,
    locks: &Path,
    log: &Path,
    proxy_port: u16,
    terminals: &[Terminal],
    lock: LockKind,
) -> String {
    let lock = match lock {
        LockKind::Flock => "mode = \"flock\"\nacquire_retries = 2\n".to_string(),
        LockKind::Arbiter => format!(
            "mode = \"arbiter\"\nacquire_retries = 3\nlease = \"{}ms\"\nlock_delay = \"{}ms\"\n",
            LEASE.as_millis(),
            LOCK_DELAY.as_millis()
        ),
    };
    let mut text = format!(
        "[agent]\nid = \"contender-{k}\"\nsite = \"lab\"\ndata_dir = \"{data}\"\n\
         runtime_dir = \"{run}\"\nshutdown_timeout = \"5s\"\n\
         [log]\nlevel = \"info\"\nfile = \"{log}\"\njournald = \"never\"\n\
         [lock]\ndir = \"{locks}\"\n{lock}\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {proxy_port}\ntls = false\nkeep_alive = \"5s\"\n",
        data = dir.join("data").display(),
        run = dir.join("run").display(),
        log = log.display(),
        locks = locks.display(),
    );
    for terminal in terminals {
        let emulator = terminal.emulator.as_ref().expect("running");
        text.push_str(&format!(
            "[[device]]\nid = \"{}\"\ndriver = \"zk\"\naddress = \"{}\"\n\
             poll_interval = \"{}ms\"\ncommand_timeout = \"3s\"\n",
            terminal.name,
            emulator.tcp.expect("tcp listener"),
            POLL.as_millis()
        ));
    }
    text
}

/// What the arbiter logs once it reaches the broker.
const ARBITER_CONNECTED: &str = "lock arbiter connected";

/// `edge-agent arbiter` config: its store under `home`, MQTT through its proxy.
fn arbiter_config(home: &Path, log: &Path, proxy_port: u16) -> String {
    format!(
        "[agent]\nid = \"arbiter\"\nsite = \"lab\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n\
         [log]\nlevel = \"info\"\nfile = \"{log}\"\njournald = \"never\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {proxy_port}\ntls = false\nkeep_alive = \"5s\"\n\
         [lock]\nlock_delay = \"{delay}ms\"\ndir = \"{locks}\"\n",
        data = home.join("data").display(),
        run = home.join("run").display(),
        log = log.display(),
        locks = home.join("locks").display(),
        delay = LOCK_DELAY.as_millis(),
    )
}
