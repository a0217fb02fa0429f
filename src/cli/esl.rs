//! `edge-agent esl status` and `edge-agent esl verify [--dry-run]`: the shelf-label adapter
//! through the running agent's local socket (the same commands as over MQTT).

use std::path::PathBuf;

use serde_json::json;

use super::local::{self, Agent};
use super::oneshot::{self, done};
use super::render::table::Clock;
use super::{render, ExitStatus, DEFAULT_CONFIG};

/// `edge-agent esl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EslCommand {
    /// The adapter's state: desired entities, owned articles, pending pushes, POOL ids used,
    /// the last verification.
    Status {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a drift verification now and print its report; missing or changed articles the
    /// agent owns are queued to be pushed again (never with --dry-run).
    Verify {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only report; queue nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the reply as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `esl status|verify` against the running agent.
pub fn run(command: EslCommand) -> ExitStatus {
    let (config, name, args, as_json) = match command {
        EslCommand::Status { config, json } => (config, "esl status", json!({}), json),
        EslCommand::Verify {
            config,
            dry_run,
            json,
        } => (config, "esl verify", json!({ "dry_run": dry_run }), json),
    };
    oneshot::run(&config, |config| async move {
        match local::reach(&config)? {
            Agent::Running(mut client) => {
                let result = local::call(&mut client, name, args)?;
                if as_json {
                    return Ok(done(serde_json::to_string_pretty(&result)?));
                }
                Ok(done(render::reply::render(&result, &Clock::now(false))))
            }
            Agent::Stopped => anyhow::bail!(
                "the agent is not running (no answer on {}): `{name}` asks the running agent; \
                 start it (systemctl start edge-agent)",
                config.control_socket().display()
            ),
        }
    })
}
