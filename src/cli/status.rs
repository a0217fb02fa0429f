//! `edge-agent status`: the running agent's state, asked over its local control socket (the
//! `status` command's `report`, built by `StatusSources::report`), or from the status file it
//! kept writing when the socket does not answer (the agent is stopped or hung). The exit status
//! is for monitoring scripts: 0 ok, 1 warning, 2 critical (the usual monitoring-plugin
//! convention; it differs from the other commands' codes on purpose).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::local::{self, Agent};
use super::{render, DEFAULT_CONFIG};
use crate::config::Config;
use crate::ops::status::Level;

/// `edge-agent status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The exit code of a level.
fn code(level: Level) -> ExitCode {
    ExitCode::from(match level {
        Level::Ok => 0,
        Level::Warning => 1,
        Level::Critical => 2,
    })
}

/// The report from the running agent's socket, else from the status file it last wrote.
fn fetch(config: &Config) -> anyhow::Result<Value> {
    match local::reach(config)? {
        Agent::Running(mut client) => {
            let result = local::call(&mut client, "status", serde_json::json!({}))?;
            Ok(result["report"].clone())
        }
        Agent::Stopped => crate::ops::status::read(config).map_err(anyhow::Error::msg),
    }
}

/// Prints the status report (stale or not) and exits with its level; no report at all (the
/// agent is not running) or a broken config is critical.
pub fn run(args: StatusArgs) -> ExitCode {
    let config = match crate::config::load(&args.config) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            eprintln!("{errors}");
            return code(Level::Critical);
        }
    };
    let mut report = match fetch(&config) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("edge-agent: {err:#}");
            return code(Level::Critical);
        }
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let level = render::status::judge(&mut report, now_ms);
    let mut text = if args.json {
        serde_json::to_string_pretty(&report).unwrap_or_default()
    } else {
        render::status::format_report(&report, now_ms)
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    print!("{text}");
    code(level)
}
