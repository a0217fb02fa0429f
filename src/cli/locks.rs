//! `edge-agent locks`: the device locks this agent holds now (asked over its local control
//! socket, the `locks` command), or with `--all` every lock of the site as the lock arbiter
//! sees it (asked over MQTT, arbiter mode only).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::local::{self, Agent};
use super::oneshot::{self, done};
use super::{ExitStatus, DEFAULT_CONFIG};
use crate::config::LockMode;
use crate::sync::lock::{ArbiterLock, LockJournal};

/// `edge-agent locks` options.
#[derive(Debug, clap::Args)]
pub struct LocksArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Every lock of the site, from the lock arbiter (`[lock] mode = "arbiter"`).
    #[arg(long)]
    pub all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists the locks and prints them.
pub fn run(args: LocksArgs) -> ExitStatus {
    let LocksArgs { config, all, json } = args;
    oneshot::run(&config, |config| async move {
        let listed = if all {
            if config.lock.mode != LockMode::Arbiter {
                anyhow::bail!(
                    "--all asks the site's lock arbiter, but [lock] mode is flock: this box's \
                     locks are the files in {}",
                    config.lock.dir.display()
                );
            }
            let journal = LockJournal::new(None, "locks");
            let lock = ArbiterLock::from_config(&config, journal, "locks-cli")?;
            let locks = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match lock.list().await {
                        Ok(locks) => return Ok(locks),
                        Err(err) if err.contains("not connected") => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(err) => return Err(anyhow::anyhow!("the lock arbiter: {err}")),
                    }
                }
            })
            .await
            .map_err(|_| anyhow::anyhow!("no answer from the lock arbiter within 10s"))??;
            json!({ "mode": "arbiter", "site": config.agent.site, "locks": locks })
        } else {
            match local::reach(&config)? {
                Agent::Running(mut client) => local::call(&mut client, "locks", json!({}))?,
                Agent::Stopped => anyhow::bail!(
                    "the agent is not running, so it holds no lock (use --all to ask the \
                     site's lock arbiter)"
                ),
            }
        };
        let text = if json {
            serde_json::to_string_pretty(&listed)? + "\n"
        } else {
            table(&listed)
        };
        Ok(done(text))
    })
}

/// One line per lock: device, holder, token, lease left.
fn table(listed: &Value) -> String {
    let locks = listed["locks"].as_array().cloned().unwrap_or_default();
    if locks.is_empty() {
        return "no device lock held\n".to_string();
    }
    let mut out = format!(
        "{:<24} {:<32} {:>8} {:>10}\n",
        "DEVICE", "HOLDER", "TOKEN", "LEFT"
    );
    for lock in &locks {
        let holder = lock["holder"]
            .as_str()
            .or(listed["holder"].as_str())
            .unwrap_or("(free)");
        let left = match (lock["remaining_ms"].as_u64(), lock["free_in_ms"].as_u64()) {
            (Some(ms), _) => format!("{:.1}s", ms as f64 / 1000.0),
            (None, Some(ms)) => format!("free in {:.1}s", ms as f64 / 1000.0),
            (None, None) => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<24} {:<32} {:>8} {:>10}\n",
            lock["device"].as_str().unwrap_or("?"),
            holder,
            lock["token"].as_u64().unwrap_or_default(),
            left
        ));
    }
    out
}
