//! Footprint of the release agent on the small box's workload, for the README: resident memory
//! idle (with and without an unreachable MQTT broker configured), the peak during the first
//! complete read of an AI06 terminal with 10,000 users (8 KB face photo + card each), the
//! resident set while polling that device after a restart, the peak during a backup and a
//! restore through the control socket, and the store's size on disk — each printed beside the
//! anchor figure a user would compare with (ThingsBoard IoT Gateway idles at 62.7 MB). Last,
//! the peak and duration of two starts that rewrite that store for a changed
//! `[store] compression` (off, then on again: what an upgrade from a build without
//! compression does once).
//!
//! It runs the real binaries as separate processes (the agent as the packages ship it, see
//! below, and `target/release/device-sim aiface`) and reads the agent's `/proc/PID/status`
//! (`VmRSS`, `VmHWM`; the peak is reset through `/proc/PID/clear_refs` before each phase). Run:
//!
//! ```text
//! cargo build --release --target x86_64-unknown-linux-gnu --bin edge-agent \
//!   && cargo build --release -p device-protocols \
//!   && cargo bench -p edge-agent --bench footprint
//! ```
//!
//! The agent is taken from `target/<host triple>/release/`, where `scripts/package.sh` builds
//! it, and not from `target/release/`: `cargo bench` rebuilds the binaries it finds there with
//! the benches' dev-dependency features unified in (a different, larger binary: 10.77 MB
//! against the packaged 10.23 MB when this was written).
//! Knobs: `FOOTPRINT_USERS` (default 10000), `FOOTPRINT_PHOTO_KB` (default 8),
//! `EDGE_AGENT_BIN` (another agent binary, e.g. an older build for a before/after figure),
//! `DEVICE_SIM_BIN` (another emulator binary), `FOOTPRINT_KEEP` (keep the scratch directory with
//! the store and logs, to inspect them),
//! `FOOTPRINT_CONFIG` (extra TOML tables for the agent's config, e.g.
//! `[store]\ncache_size = "2MiB"`, to compare settings). The agent binary's size is printed
//! first; docs/footprint.md has the breakdown of the resident set these figures measure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// ThingsBoard IoT Gateway idle with no device (the README's anchor).
const ANCHOR_MB: f64 = 62.7;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn release_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

/// The target this bench runs on, as `scripts/package.sh` names its build directory.
fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// The agent as `scripts/package.sh` builds it for this machine (see the module docs).
fn shipped_agent() -> PathBuf {
    let target = release_dir().parent().unwrap().to_path_buf();
    target
        .join(host_triple())
        .join("release")
        .join("edge-agent")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `kB` line of `/proc/PID/status`, in MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Resets the process's peak resident set (`VmHWM`) to its current one.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

fn du_mb(path: &Path) -> f64 {
    fn walk(path: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            use std::os::unix::fs::MetadataExt;
            meta.blocks() * 512
        }
    }
    walk(path) as f64 / 1e6
}

/// Bytes of every key and value sled holds in the store at `store_dir` (the small records the
/// issue's disk target is measured against), in MB; opened directly while no agent runs.
fn small_records_mb(store_dir: &Path) -> f64 {
    // Opened the way it was written: sled refuses the other compression setting.
    let open = |compression| {
        edge_agent::store::StoreOptions {
            compression,
            ..edge_agent::store::StoreOptions::at(store_dir)
        }
        .sled_config()
        .open()
    };
    let Ok(db) = open(true).or_else(|_| open(false)) else {
        return f64::NAN;
    };
    let mut bytes = 0u64;
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            bytes += (key.len() + value.len()) as u64;
        }
    }
    bytes as f64 / 1e6
}

/// The `seconds=` field of the first log line containing `needle` (NaN when there is none).
fn logged_seconds(log: &Path, needle: &str) -> f64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .find(|line| line.contains(needle))
        .and_then(|line| line.split("seconds=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(f64::NAN)
}

fn row(what: &str, mb: f64, target: Option<f64>) {
    let target = target
        .map(|t| format!("target < {t:.0} MB"))
        .unwrap_or_default();
    println!(
        "{what:<58} {mb:>7.1} MB  ({:>4.0}% of the 62.7 MB anchor)  {target}",
        100.0 * mb / ANCHOR_MB
    );
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(bin: &Path, config: &Path, log: &Path) -> Agent {
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("JOURNAL_STREAM", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");
        Agent {
            child,
            log: log.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` after `settle`, asserting the agent is still running.
    fn settled_rss(&mut self, settle: Duration) -> f64 {
        std::thread::sleep(settle);
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "agent exited ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        status_mb(self.pid(), "VmRSS")
    }

    fn count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    /// Waits for `count` occurrences of `needle`, sampling `VmRSS` meanwhile; returns the
    /// largest sample.
    fn wait_for(&mut self, needle: &str, count: usize, patience: Duration) -> f64 {
        let deadline = Instant::now() + patience;
        let mut largest = 0f64;
        while self.count(needle) < count {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "agent exited ({status}) before {needle:?}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} ×{count} after {patience:?}; log {}",
                self.log.display()
            );
            largest = largest.max(status_mb(self.pid(), "VmRSS"));
            std::thread::sleep(Duration::from_millis(50));
        }
        largest.max(status_mb(self.pid(), "VmRSS"))
    }

    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let tuning = std::env::var("FOOTPRINT_CONFIG").unwrap_or_default();
    let text = format!(
        "[agent]\nid = \"bench\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n\
         shutdown_timeout = \"30s\"\n\
         [log]\nfile = \"{log}\"\njournald = \"never\"\n\
         [lock]\ndir = \"{locks}\"\n\
         [[device]]\nid = \"door\"\ndriver = \"aiface\"\nlisten = \"127.0.0.1:{port}\"\n\
         allowed_sn = [\"SIM00000001\"]\ncommand_timeout = \"30s\"\npoll_interval = \"5s\"\n\
         {extra}\n{tuning}\n",
        data = dir.join("data").display(),
        run = dir.join("run").display(),
        log = dir.join("agent.log").display(),
        locks = dir.join("locks").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cli(bin: &Path, config: &Path, words: &[&str]) {
    let output = Command::new(bin)
        .args(words)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run edge-agent");
    assert!(
        output.status.success(),
        "{words:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn main() {
    let users = env_or("FOOTPRINT_USERS", 10_000);
    let photo_kb = env_or("FOOTPRINT_PHOTO_KB", 8);
    let release = release_dir();
    let bin = std::env::var_os("EDGE_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(shipped_agent);
    let sim = std::env::var_os("DEVICE_SIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| release.join("device-sim"));
    for needed in [&bin, &sim] {
        if !needed.exists() {
            eprintln!(
                "{} is missing: cargo build --release --target {} --bin edge-agent && \
                 cargo build --release -p device-protocols",
                needed.display(),
                host_triple()
            );
            std::process::exit(2);
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let keep = std::env::var_os("FOOTPRINT_KEEP").is_some();
    if keep {
        println!("keeping the bench's directory {}", dir.display());
    }
    let port = free_port();
    let log = dir.join("agent.log");
    println!(
        "footprint of {} — AI06 emulator with {users} users, {photo_kb} KB photo + card each",
        bin.display()
    );
    let bytes = std::fs::metadata(&bin).map_or(0, |meta| meta.len());
    println!(
        "binary size {:.1} MB ({bytes} bytes, stripped; docs/footprint.md has what is in it)",
        bytes as f64 / 1e6
    );

    // Idle: the device configured, no terminal connected; then the same with [mqtt] pointing
    // at a port nobody listens on.
    let plain = config(dir, port, "");
    let mut agent = Agent::start(&bin, &plain, &log);
    let idle = agent.settled_rss(Duration::from_secs(3));
    agent.stop();
    let dead_broker = free_port();
    let with_mqtt = config(
        dir,
        port,
        &format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {dead_broker}\ntls = false\n"),
    );
    let mut agent = Agent::start(&bin, &with_mqtt, &log);
    let idle_mqtt = agent.settled_rss(Duration::from_secs(3));
    agent.stop();
    let _ = std::fs::remove_file(&log);

    // The first complete read (the running agent's first round is a backup read).
    let plain = config(dir, port, "");
    let mut agent = Agent::start(&bin, &plain, &log);
    std::thread::sleep(Duration::from_millis(500));
    reset_peak(agent.pid());
    let url = format!("ws://127.0.0.1:{port}/pub/chat");
    let emulator_args = [
        "aiface".to_string(),
        "--url".into(),
        url,
        "--users".into(),
        users.to_string(),
        "--photo-kb".into(),
        photo_kb.to_string(),
        "--cards".into(),
        "true".into(),
        "--reconnect-delay-ms".into(),
        "200".into(),
        "--run-for".into(),
        "3600".into(),
    ];
    let mut emulator = Command::new(&sim)
        .args(&emulator_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    agent.wait_for("complete read applied", 1, Duration::from_secs(600));
    let first_wall = started.elapsed().as_secs_f64();
    let first_peak = status_mb(agent.pid(), "VmHWM");
    let after_first = status_mb(agent.pid(), "VmRSS");
    agent.stop();
    let store_mb = du_mb(&dir.join("data").join("store"));
    let values_mb = du_mb(&dir.join("data").join("store").join("values"));
    let backups_mb = du_mb(&dir.join("data").join("backups"));
    let records_mb = small_records_mb(&dir.join("data").join("store"));

    // Steady state after a restart: the device polled every 5 s, nothing changing.
    let _ = std::fs::remove_file(&log);
    let mut agent = Agent::start(&bin, &plain, &log);
    agent.wait_for("complete read applied", 1, Duration::from_secs(300));
    let steady = agent.wait_for("complete read applied", 4, Duration::from_secs(300));
    let steady_peak = status_mb(agent.pid(), "VmHWM");
    // Between polls: what the agent keeps, without the poll's own working set.
    let between_polls = agent.settled_rss(Duration::from_secs(1));

    // A backup and a restore through the control socket of the running agent.
    reset_peak(agent.pid());
    let started = Instant::now();
    cli(&bin, &plain, &["backup", "create", "--device", "door"]);
    let backup_wall = started.elapsed().as_secs_f64();
    let backup_peak = status_mb(agent.pid(), "VmHWM");
    let newest = std::fs::read_dir(dir.join("data").join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
        .max()
        .expect("a backup file");
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    reset_peak(agent.pid());
    let started = Instant::now();
    cli(
        &bin,
        &plain,
        &["backup", "restore", "--device", "door", name.as_str()],
    );
    let restore_wall = started.elapsed().as_secs_f64();
    let restore_peak = status_mb(agent.pid(), "VmHWM");
    agent.stop();
    let store_end_mb = du_mb(&dir.join("data").join("store"));
    let records_end_mb = small_records_mb(&dir.join("data").join("store"));
    let _ = emulator.kill();
    let _ = emulator.wait();
    // A start that rewrites the store (an upgrade from a build without compression, or a
    // change of `[store] compression`): to uncompressed, then back. Skipped when the tuning
    // has its own `[store]` table.
    let rewrites = (!std::env::var("FOOTPRINT_CONFIG")
        .unwrap_or_default()
        .contains("[store]"))
    .then(|| {
        [false, true].map(|compression| {
            let _ = std::fs::remove_file(&log);
            let config = config(dir, port, &format!("[store]\ncompression = {compression}"));
            let mut agent = Agent::start(&bin, &config, &log);
            agent.wait_for("agent started", 1, Duration::from_secs(600));
            let peak = status_mb(agent.pid(), "VmHWM");
            let seconds = logged_seconds(&log, "store rewritten");
            agent.stop();
            let sled_mb = du_mb(&dir.join("data").join("store")) - values_mb;
            (compression, peak, seconds, sled_mb)
        })
    });
    if keep {
        let _ = scratch.keep();
    }

    println!();
    row(
        "RSS idle (one AI06 device configured, none connected)",
        idle,
        None,
    );
    row(
        "RSS idle with [mqtt] configured (broker unreachable)",
        idle_mqtt,
        None,
    );
    row(
        &format!("peak RSS (VmHWM), first complete read ({first_wall:.1} s)"),
        first_peak,
        Some(32.0),
    );
    row("RSS right after the first read", after_first, None);
    row(
        "RSS steady after restart, polling every 5 s (max sample)",
        steady,
        Some(20.0),
    );
    row("  its peak (VmHWM) since start", steady_peak, None);
    row(
        "  1 s after the 4th poll (between polls)",
        between_polls,
        None,
    );
    row(
        &format!("peak RSS during `backup create` ({backup_wall:.1} s)"),
        backup_peak,
        Some(32.0),
    );
    row(
        &format!("peak RSS during `backup restore` ({restore_wall:.1} s)"),
        restore_peak,
        Some(32.0),
    );
    println!(
        "{:<58} {store_mb:>7.1} MB  (sled {:.1} MB + value files {values_mb:.1} MB; the first \
         read's backup file: {backups_mb:.1} MB)",
        "store on disk (data/store) after the first read",
        store_mb - values_mb
    );
    println!(
        "{:<58} {records_mb:>7.1} MB  (target: sled < 2 × this = {:.1} MB; sled holds {:.1})",
        "  small records in sled (keys + values)",
        2.0 * records_mb,
        store_mb - values_mb
    );
    println!(
        "{:<58} {store_end_mb:>7.1} MB  (sled {:.1} MB, small records {records_end_mb:.1} MB)",
        "store on disk at the end (after the polls, backup, restore)",
        store_end_mb - values_mb
    );
    for (compression, peak, seconds, sled_mb) in rewrites.into_iter().flatten() {
        let setting = if compression { "on" } else { "off" };
        row(
            &format!("peak RSS of a start rewriting it, compression {setting} ({seconds:.1} s)"),
            peak,
            None,
        );
        println!("{:<58} {sled_mb:>7.1} MB", "  sled after that rewrite");
    }
}
