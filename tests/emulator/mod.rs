//! Starts the `device-sim` emulator as a separate process, as a real terminal would be, and
//! checks on the way out that it never received a destructive command (invariant 1).
//!
//! Every emulator writes its command log under `target/tmp/aiface-command-logs/`, and the test
//! script scans all of them after the suite as one more check across every test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator binary, built next to the test binaries by `cargo nextest run --workspace`
/// (or `cargo build -p device-protocols`).
pub fn device_sim() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("device-sim");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p device-protocols` (the test script's \
         `cargo nextest run --workspace` does)",
        path.display()
    );
    path
}

/// Where every emulator's command log goes (`target/tmp/aiface-command-logs`, shared with the
/// emulator's own tests); the test script scans this directory after the suite.
pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aiface-command-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running emulator.
pub struct Emulator {
    child: Option<Child>,
    /// Its command log (JSON lines).
    pub command_log: PathBuf,
}

impl Emulator {
    /// Starts `device-sim aiface --url URL` with extra knobs; `name` labels the command log.
    pub fn aiface(name: &str, url: &str, knobs: &[&str]) -> Self {
        let command_log = log_dir().join(format!(
            "{name}-{}-{}.jsonl",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_file(&command_log);
        let child = Command::new(device_sim())
            .args(["aiface", "--url", url, "--command-log"])
            .arg(&command_log)
            .args(knobs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start device-sim");
        Self {
            child: Some(child),
            command_log,
        }
    }

    /// Every command the emulator received so far, as JSON values.
    pub fn commands(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.command_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Stops the emulator (SIGTERM), returns its JSON summary, and asserts it received no
    /// destructive command.
    pub fn finish(mut self) -> serde_json::Value {
        let mut child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "device-sim did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        assert_ne!(
            output.status.code(),
            Some(3),
            "the emulator received a destructive command"
        );
        self.assert_no_destructive_command();
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Waits for an emulator started with `--run-for` to stop by itself, then checks it like
    /// [`Emulator::finish`].
    pub fn finish_after_run(mut self) -> serde_json::Value {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "device-sim did not stop by itself"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.finish()
    }

    /// Asserts the command log holds no destructive command.
    pub fn assert_no_destructive_command(&self) {
        for command in self.commands() {
            assert_ne!(
                command["destructive"],
                serde_json::Value::Bool(true),
                "destructive command sent: {command}"
            );
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
