//! `edge-agent status`: the running agent's state, from the status file it keeps writing, with
//! an exit status for monitoring scripts: 0 ok, 1 warning, 2 critical (the usual
//! monitoring-plugin convention; it differs from the other commands' codes on purpose).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{render, DEFAULT_CONFIG};
use crate::ops::status::Level;

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

/// The exit code of a level.
fn code(level: Level) -> ExitCode {
    ExitCode::from(match level {
        Level::Ok => 0,
        Level::Warning => 1,
        Level::Critical => 2,
    })
}

/// Prints the status report (stale or not) and exits with its level; no status file (the agent
/// is not running) or a broken config is critical.
pub fn run(args: StatusArgs) -> ExitCode {
    let config = match crate::config::load(&args.config) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            eprintln!("{errors}");
            return code(Level::Critical);
        }
    };
    let mut report = match crate::ops::status::read(&config) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("edge-agent: {err}");
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
