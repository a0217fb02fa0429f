//! What the running-agent tests share: the config of a site (one AI06, the upstream double,
//! a private mosquitto with a trusted admin key) and the local commands that read the store
//! after the agent stopped.

use std::path::{Path, PathBuf};
use test_support::agent::mqtt::{keygen, AdminKey};
use test_support::agent::running::local_json;
use test_support::agent::sync::config_text;
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::mosquitto::Broker;
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir, TempDir};

pub(crate) const PULLED: &str = "pulled mapping changes from the upstream";

/// Each buffered user's status.
pub(crate) fn statuses(config: &Path) -> Vec<(String, String)> {
    let listing = local_json(config, &["buffer", "list"]);
    let mut found: Vec<(String, String)> = listing["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_string(),
                u["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

/// `edge-agent run` as agent gw1 of site s1: one AI06 `door` listening on `port`, the
/// upstream double (mappings pulled every second) and the broker with `admin` trusted.
pub(crate) fn site_config(
    dir: &Path,
    port: u16,
    double: &UpstreamDouble,
    broker: &Broker,
    admin: &str,
) -> String {
    let token = token_file(dir, TOKEN);
    let mut text = config_text(dir, port, "poll_interval = \"1h\"\n")
        .replace("id = \"gw-test\"", "id = \"gw1\"\nsite = \"s1\"")
        .replace(
            "[log]\nfile = \"\"",
            &format!(
                "[log]\nlevel = \"info\"\nfile = \"{}\"",
                dir.join("agent.log").display()
            ),
        );
    text.push_str(&format!(
        "[upstream]\nurl = \"{}\"\ntoken_file = \"{}\"\nmapping_pull_interval = \"1s\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\nkeep_alive = \"5s\"\n{admin}\n",
        double.url(),
        token.display(),
        broker.port,
    ));
    text
}

/// One site for a test: its directory, a private broker, a trusted admin key (`ops`), the
/// upstream double, the port the AI06 dials, and the text and path of the agent's
/// [`site_config`] (written when the agent starts).
pub(crate) struct Site {
    pub(crate) dir: TempDir,
    pub(crate) broker: Broker,
    pub(crate) admin: AdminKey,
    pub(crate) double: UpstreamDouble,
    pub(crate) port: u16,
    pub(crate) text: String,
    pub(crate) config: PathBuf,
}

impl Site {
    /// Starts the broker and the double and writes the admin key and the token.
    pub(crate) async fn start() -> Site {
        let dir = tempdir().unwrap();
        let broker = Broker::start(false);
        let admin = keygen(dir.path(), "ops");
        let double = UpstreamDouble::start(TOKEN).await;
        let port = free_port();
        let text = site_config(dir.path(), port, &double, &broker, &admin.config_lines);
        let config = dir.path().join("agent.toml");
        Site {
            dir,
            broker,
            admin,
            double,
            port,
            text,
            config,
        }
    }
}

pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, s)| (u.to_string(), s.to_string()))
        .collect()
}

/// How many commands named `name` the terminal received.
pub(crate) fn received(terminal: &test_support::Emulator, name: &str) -> usize {
    terminal
        .commands()
        .iter()
        .filter(|command| command.to_string().contains(&format!("\"{name}\"")))
        .count()
}
