//! The real `edge-agent run` binary under test (and `edge-agent arbiter`), for every test that
//! starts it: one harness
//! that spawns it on a config file, knows its log file, waits for log lines (noticing an early
//! exit, panicking with the log when patience runs out), signals it, stops it gracefully and
//! kills it when dropped, so that no test file carries its own copy of these.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::binary;

/// How long a wait for a log line lasts unless the test says otherwise
/// ([`RunningAgent::with_patience`]): generous, the CI machine is shared.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The agent binary under test: the one cargo built for this test run, or `EDGE_AGENT_BIN`
/// (the measurement test uses it to measure a release build).
pub fn bin() -> String {
    std::env::var("EDGE_AGENT_BIN")
        .unwrap_or_else(|_| binary("edge-agent").to_string_lossy().into_owned())
}

/// The agent binary running `run --config`, killed when dropped.
pub struct RunningAgent {
    /// The agent process.
    pub child: Child,
    /// Its log file (the `[log] file` of its config).
    pub log: PathBuf,
    patience: Duration,
}

impl RunningAgent {
    /// Starts the agent on the config file `config`, whose log goes to `log`. Its stdio is
    /// null and `JOURNAL_STREAM` is unset in effect, so it never logs to a journal.
    pub fn on(config: &Path, log: &Path) -> RunningAgent {
        RunningAgent::on_with_env(config, log, &[])
    }

    /// [`RunningAgent::on`] with extra environment variables, such as `NOTIFY_SOCKET` and
    /// `WATCHDOG_USEC` (systemd's side) or `EDGE_AGENT_TEST_FAULT` (the debug build's fault
    /// injection, see `edge_agent::lifecycle::test_fault`).
    pub fn on_with_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> RunningAgent {
        RunningAgent::command_on("run", config, log, env)
    }

    /// The site's lock arbiter, `edge-agent arbiter --config CONFIG`, whose log goes to `log`:
    /// the same process harness as an agent's.
    pub fn arbiter(config: &Path, log: &Path) -> RunningAgent {
        RunningAgent::command_on("arbiter", config, log, &[])
    }

    /// `edge-agent COMMAND --config CONFIG` with `env`, as [`RunningAgent::on_with_env`].
    fn command_on(command: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> RunningAgent {
        let child = Command::new(bin())
            .args([command, "--config"])
            .arg(config)
            .env("JOURNAL_STREAM", "none")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("edge-agent starts");
        RunningAgent {
            child,
            log: log.to_path_buf(),
            patience: PATIENCE,
        }
    }

    /// Writes `config` into `dir/agent.toml` and starts the agent on it without waiting; its
    /// log is `dir/agent.log`.
    pub fn spawn(dir: &Path, config: &str) -> RunningAgent {
        let path = dir.join("agent.toml");
        std::fs::write(&path, config).expect("write the agent config");
        RunningAgent::on(&path, &dir.join("agent.log"))
    }

    /// The same agent with waits bounded by `patience` instead of [`PATIENCE`].
    pub fn with_patience(mut self, patience: Duration) -> RunningAgent {
        self.patience = patience;
        self
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times the log holds `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Waits until the log contains `needle` at least `count` times.
    pub fn wait_for_log(&mut self, needle: &str, count: usize) {
        self.wait_for_log_where(&format!("{needle:?} ×{count}"), |text| {
            text.matches(needle).count() >= count
        });
    }

    /// Waits until `condition` holds of the log text; `what` names it in a panic. Panics if
    /// the agent exits first or the patience runs out, with the log. On a multi-threaded
    /// runtime the wait leaves the worker thread to the runtime's other tasks.
    pub fn wait_for_log_where(&mut self, what: &str, condition: impl Fn(&str) -> bool) {
        blocking(|| {
            let deadline = Instant::now() + self.patience;
            loop {
                let text = self.log_text();
                if condition(&text) {
                    return;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("agent exited ({status}) before logging {what}:\n{text}");
                }
                assert!(
                    Instant::now() < deadline,
                    "no {what} in the log after {:?}:\n{text}",
                    self.patience
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        });
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "signal {signal} to the agent");
    }

    /// Stops the agent the way systemd does (SIGTERM) and asserts it exited successfully.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = blocking(|| self.child.wait()).expect("reap the agent");
        assert!(status.success(), "agent stopped with {status}");
    }

    /// Kills the agent (SIGKILL, a crash or power cut) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the agent");
        self.child.wait().expect("reap the agent");
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the local command `edge-agent WORDS --config CONFIG --json` (one that reads the store
/// directly, as tests do after the agent stopped), asserts it succeeded and returns its JSON.
pub fn local_json(config: &Path, words: &[&str]) -> serde_json::Value {
    let output = Command::new(bin())
        .args(words)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .output()
        .expect("run edge-agent");
    assert!(output.status.success(), "{words:?}: {output:?}");
    serde_json::from_slice(&output.stdout).expect("JSON from edge-agent --json")
}

/// Runs the blocking `f` without starving a multi-threaded runtime the test may be on.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
