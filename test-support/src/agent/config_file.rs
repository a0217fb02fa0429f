//! The agent config file of a running-agent test. Every test that starts `edge-agent run` (or
//! a bench that does) needs the same skeleton: the data directory, the runtime directory (the
//! control socket) and the lock directory all inside the test's own temporary directory, and
//! the log in a file the test can read. The default `/run/edge-agent` is shared by every test
//! running in parallel (one would see another's control socket, or "lock held by another
//! process"), so no test writes this skeleton by hand.

use std::path::{Path, PathBuf};

/// What a test adds to the skeleton; every field is verbatim TOML lines (empty: nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentToml<'a> {
    /// More `[agent]` keys, e.g. `site = "s1"` or `shutdown_timeout = "30s"`.
    pub agent: &'a str,
    /// More `[log]` keys, e.g. `level = "info"`.
    pub log: &'a str,
    /// More `[lock]` keys, e.g. `mode = "arbiter"`.
    pub lock: &'a str,
    /// The tables after those: `[mqtt]`, `[[device]]`, ….
    pub rest: &'a str,
}

impl AgentToml<'_> {
    /// The config text of agent `id` with everything it writes under `dir`: `data/`, `run/`
    /// (runtime directory), `locks/`, and the log file `agent.log` (see [`AgentToml::log_file`]).
    pub fn text(&self, dir: &Path, id: &str) -> String {
        format!(
            "[agent]\nid = \"{id}\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n{agent}\n\
             [log]\nfile = \"{log}\"\njournald = \"never\"\n{log_extra}\n\
             [lock]\ndir = \"{locks}\"\n{lock}\n\
             {rest}\n",
            data = dir.join("data").display(),
            run = dir.join("run").display(),
            log = Self::log_file(dir).display(),
            locks = dir.join("locks").display(),
            agent = self.agent,
            log_extra = self.log,
            lock = self.lock,
            rest = self.rest,
        )
    }

    /// Writes [`AgentToml::text`] to `dir/agent.toml` (creating `dir`) and returns that path.
    pub fn write(&self, dir: &Path, id: &str) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create the agent's directory");
        let path = dir.join("agent.toml");
        std::fs::write(&path, self.text(dir, id)).expect("write the agent config");
        path
    }

    /// Where the agent of a config written for `dir` logs.
    pub fn log_file(dir: &Path) -> PathBuf {
        dir.join("agent.log")
    }
}

/// The ZK tests' agent: `id` with one ZK terminal `zk-door` at `address`, polled every
/// `poll` (`"1h"`: only at start), commands timing out after 3 s; written to `dir/agent.toml`.
pub fn one_zk_terminal(dir: &Path, id: &str, address: &str, poll: &str) -> PathBuf {
    AgentToml {
        agent: "shutdown_timeout = \"5s\"",
        rest: &format!(
            "[[device]]\nid = \"zk-door\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
             poll_interval = \"{poll}\"\ncommand_timeout = \"3s\"\n"
        ),
        ..AgentToml::default()
    }
    .write(dir, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_accepts_it_and_every_directory_is_the_tests_own() {
        let dir = Path::new("/tmp/t1");
        let text = AgentToml {
            agent: "site = \"s1\"",
            lock: "mode = \"flock\"",
            ..AgentToml::default()
        }
        .text(dir, "gw");
        let config = edge_agent::config::parse(&text).expect("a valid agent config");
        assert_eq!(config.agent.runtime_dir, dir.join("run"));
        assert_eq!(config.agent.data_dir, dir.join("data"));
        assert_eq!(config.lock.dir, dir.join("locks"));
    }
}
