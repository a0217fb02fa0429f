//! Emulated terminals as child processes (`device-sim aiface` and `device-sim zk`), as a real
//! terminal would be: the agent talks to them over real sockets and ttys.
//!
//! Every emulator records each command it receives as a JSON line in its command log, with a
//! `destructive` flag. An [`Emulator`] checks its log when it is stopped or dropped: no
//! destructive command may reach a terminal (the product's first safety rule). Every log ends
//! up under `target/tmp/<protocol>-command-logs/`, named after the test family (the test binary)
//! that ran it, where the test script checks all of them together after the suite and fails
//! when a family that runs emulators contributed none: a log a test keeps elsewhere (in its
//! temporary directory, next to the agent's store) is copied there when the emulator stops.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::paths::{device_sim, target_tmp};

/// How long a stopped emulator may take to exit before the test calls it hung.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// Which terminal `device-sim` emulates: its first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AI06 face terminals: the terminal dials the agent over WebSocket.
    Aiface,
    /// ZK terminals: the agent connects over TCP, UDP or a serial line.
    Zk,
}

impl Protocol {
    /// The `device-sim` subcommand, also the prefix of the command-log directory.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Aiface => "aiface",
            Protocol::Zk => "zk",
        }
    }
}

/// A fresh command-log path for `protocol` under `target/tmp/<protocol>-command-logs/`, named
/// after `name`, where the suite-wide check finds it.
pub fn command_log(protocol: Protocol, name: &str) -> PathBuf {
    log_path(&format!("{}-command-logs", protocol.name()), name)
}

/// A fresh command-log path for a test that sends a destructive command on purpose (to prove
/// the flag works), in a directory the suite-wide check skips.
pub fn negative_command_log(protocol: Protocol, name: &str) -> PathBuf {
    log_path(&format!("{}-command-logs-negative", protocol.name()), name)
}

fn log_path(dir: &str, name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = target_tmp().join(dir);
    std::fs::create_dir_all(&dir).expect("create the command-log directory");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(
        "{}--{name}-{}-{n}.jsonl",
        test_family(),
        std::process::id()
    ));
    // A pid reused from an earlier run must not mix old entries into this log.
    let _ = std::fs::remove_file(&path);
    path
}

/// The test family running this process: the test binary's name without cargo's hash
/// (`target/debug/deps/sync-0123abcd` → `sync`). The suite-wide scan counts logs per family.
pub fn test_family() -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((family, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => family.to_owned(),
        _ => stem,
    }
}

/// A running `device-sim`, killed when dropped; its command log is checked for destructive
/// commands when it is stopped or dropped (unless the test failed already).
pub struct Emulator {
    child: Option<Child>,
    stdout: Option<BufReader<ChildStdout>>,
    protocol: Protocol,
    command_log: PathBuf,
    /// The TCP listener of a ZK emulator started with `--tcp`.
    pub tcp: Option<SocketAddr>,
    /// The UDP socket of a ZK emulator started with `--udp`.
    pub udp: Option<SocketAddr>,
    destructive_expected: bool,
}

impl Emulator {
    /// Starts `device-sim aiface --url URL` with `args`, logging to a fresh [`command_log`]
    /// labelled `name`.
    pub fn aiface(name: &str, url: &str, args: &[&str]) -> Emulator {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        Emulator::start(Protocol::Aiface, command_log(Protocol::Aiface, name), &all)
    }

    /// Starts `device-sim zk` with `args`, logging to a fresh [`command_log`], and waits for
    /// the address of each listener asked for.
    pub fn zk(args: &[&str]) -> Emulator {
        Emulator::start(Protocol::Zk, command_log(Protocol::Zk, "zk"), args)
    }

    /// Starts `device-sim <protocol> ARGS --command-log LOG`. For ZK it waits for the line
    /// naming each listener (`--tcp`, `--udp`, `--serial`) and keeps the TCP and UDP addresses.
    pub fn start(protocol: Protocol, command_log: PathBuf, args: &[&str]) -> Emulator {
        let mut child = Command::new(device_sim())
            .arg(protocol.name())
            .args(args)
            .arg("--command-log")
            .arg(&command_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start device-sim");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (mut tcp, mut udp) = (None, None);
        if protocol == Protocol::Zk {
            let listeners = ["--tcp", "--udp", "--serial"]
                .iter()
                .filter(|flag| args.contains(flag))
                .count();
            for _ in 0..listeners {
                let mut line = String::new();
                let read = stdout.read_line(&mut line).expect("read device-sim output");
                assert!(read > 0, "device-sim exited before it listened");
                let address = line.trim_end().rsplit(' ').next().unwrap_or_default();
                if line.starts_with("zk tcp") {
                    tcp = Some(address.parse().expect("a TCP address"));
                } else if line.starts_with("zk udp") {
                    udp = Some(address.parse().expect("a UDP address"));
                }
            }
        }
        Emulator {
            child: Some(child),
            stdout: Some(stdout),
            protocol,
            command_log,
            tcp,
            udp,
            destructive_expected: false,
        }
    }

    /// Marks a test that sends a destructive command on purpose: the log is then not checked.
    /// Such a test logs to a [`negative_command_log`].
    pub fn expect_destructive(&mut self) {
        self.destructive_expected = true;
    }

    /// The command log (JSON lines).
    pub fn command_log(&self) -> &Path {
        &self.command_log
    }

    /// The emulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Every complete line of the command log so far, as JSON (a line still being written is
    /// left for the next call).
    pub fn entries(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.command_log).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("a command-log line is JSON"))
            .collect()
    }

    /// Every command received so far, in order (an AI06 log also records replies and pushed
    /// reports; those are left out). Asserts that none was destructive.
    pub fn commands(&self) -> Vec<Value> {
        let entries = self.entries();
        if !self.destructive_expected {
            assert_nothing_destructive(&entries);
        }
        entries
            .into_iter()
            .filter(|entry| entry.get("kind").is_none_or(|kind| kind == "command"))
            .collect()
    }

    /// The names of the ZK commands received, in order.
    pub fn command_names(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Asserts that no destructive command ever reached the emulated terminal.
    pub fn assert_nothing_destructive(&self) {
        assert_nothing_destructive(&self.entries());
    }

    /// Stops the emulator with SIGTERM and returns the JSON summary it prints (`null` if it
    /// printed none). Asserts it exited with 0 (3 means it received a destructive command) and
    /// that its log holds no destructive command.
    pub fn stop(mut self) -> Value {
        let (status, stdout) = self.terminate_inner();
        assert!(
            status.success(),
            "device-sim exited {status}: exit code 3 means a destructive command was received"
        );
        if !self.destructive_expected {
            self.assert_nothing_destructive();
        }
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits for an emulator started with `--run-for` to stop by itself (at most a minute),
    /// then checks it like [`Emulator::stop`].
    pub fn stop_after_run(mut self) -> Value {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("poll device-sim").is_none() {
            assert!(
                Instant::now() < deadline,
                "device-sim did not stop by itself"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop()
    }

    /// Stops the emulator with SIGTERM and returns how it exited, without checking anything:
    /// for tests of the emulator's own exit code.
    pub fn terminate(mut self) -> ExitStatus {
        self.terminate_inner().0
    }

    fn terminate_inner(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        // One that stopped by itself (`--run-for`) has been reaped already: no signal then.
        if child.try_wait().expect("poll device-sim").is_none() {
            // SAFETY: kill(2) with the pid of our child, which has not been reaped.
            let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "SIGTERM to device-sim");
        }
        let deadline = Instant::now() + STOP_PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll device-sim") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "device-sim did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        self.collect_log();
        (status, stdout)
    }

    /// Copies a log kept outside the suite's log directory into it, so the suite-wide scan
    /// reads every emulator run (a test that sends a destructive command on purpose keeps its
    /// log where it is: in a `-negative` directory or its own temporary one).
    fn collect_log(&self) {
        if self.destructive_expected || self.command_log.starts_with(target_tmp()) {
            return;
        }
        let stem = self
            .command_log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        let copy = command_log(self.protocol, &stem);
        if let Err(err) = std::fs::copy(&self.command_log, &copy) {
            // A log that was never written (the emulator died at once) has nothing to scan;
            // anything else is a hole in the scan and must not pass quietly (unless the test is
            // failing already: a second panic in a drop would abort the whole binary).
            assert!(
                err.kind() == std::io::ErrorKind::NotFound || std::thread::panicking(),
                "cannot copy the command log {} for the suite-wide scan: {err}",
                self.command_log.display()
            );
        }
    }
}

fn assert_nothing_destructive(entries: &[Value]) {
    for entry in entries {
        assert_eq!(
            entry["destructive"], false,
            "destructive command sent: {entry}"
        );
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.collect_log();
        }
        if !std::thread::panicking() && !self.destructive_expected {
            self.assert_nothing_destructive();
        }
    }
}
