//! `edge-agent status`: the running agent's state, asked over its local control socket (the
//! `status` command's `report`, built by `StatusSources::report`), or from the status file it
//! kept writing when the socket does not answer (the agent is stopped or hung).

use std::path::PathBuf;

use super::oneshot;
use super::{render, ExitStatus, DEFAULT_CONFIG};

/// `edge-agent status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the status report (stale or not); an error when there is no status file.
pub fn run(args: StatusArgs) -> ExitStatus {
    let json = args.json;
    oneshot::run(&args.config, |config| async move {
        let report = match super::local::reach(&config)? {
            super::local::Agent::Running(mut client) => {
                let result = super::local::call(&mut client, "status", serde_json::json!({}))?;
                result["report"].clone()
            }
            super::local::Agent::Stopped => {
                crate::ops::status::read(&config).map_err(anyhow::Error::msg)?
            }
        };
        let mut text = if json {
            serde_json::to_string_pretty(&report)?
        } else {
            render::status::format_report(&report, chrono::Utc::now().timestamp_millis())
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok((text, ExitStatus::Success))
    })
}
