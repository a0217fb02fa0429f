//! The `device-sim` binary as a child process, with its command log.

use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::STEP;

/// A running `device-sim aiface`, killed on drop if not stopped.
pub struct Emulator {
    pub child: Child,
    pub log: PathBuf,
}

impl Emulator {
    /// Starts the emulator; its command log goes to `aiface-command-logs/<test>.jsonl` under
    /// the test temp dir (where a suite-wide check can find every log).
    pub fn spawn(url: &str, test: &str, knobs: &[&str]) -> Emulator {
        Self::spawn_logging_to("aiface-command-logs", url, test, knobs)
    }

    /// Starts the emulator with its command log in `dir` under the test temp dir.
    pub fn spawn_logging_to(dir: &str, url: &str, test: &str, knobs: &[&str]) -> Emulator {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{test}.jsonl"));
        let child = Process::new(env!("CARGO_BIN_EXE_device-sim"))
            .args(["aiface", "--url", url, "--command-log"])
            .arg(&log)
            .args(["--run-for", "120", "--reconnect-delay-ms", "100"])
            .args(knobs)
            .stdout(Stdio::piped())
            .spawn()
            .expect("device-sim starts");
        Emulator { child, log }
    }

    /// Sends SIGTERM and returns the summary the emulator prints on stop.
    pub fn stop(mut self) -> Value {
        let status = Process::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < STEP, "emulator did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(
            self.child.wait().unwrap().success(),
            "exit code 0 means no destructive command"
        );
        serde_json::from_str(out.lines().last().expect("a summary line")).expect("summary is JSON")
    }

    /// The logged commands, in order.
    pub fn commands_logged(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for line in &lines {
            assert_eq!(
                line["destructive"], false,
                "destructive frame logged: {line}"
            );
            assert_ne!(
                line["kind"], "unparsed",
                "the agent sent a bad frame: {line}"
            );
        }
        lines
            .into_iter()
            .filter(|l| l["kind"] == "command")
            .map(|l| l["message"].clone())
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
