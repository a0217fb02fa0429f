//! `edge-agent run`: the long-running agent, what systemd starts.

use std::path::PathBuf;

use super::DEFAULT_CONFIG;

/// `edge-agent run` options.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Runs the agent in the foreground until it is told to stop.
pub fn run(args: RunArgs) -> std::process::ExitCode {
    crate::agent::run_blocking(args.config)
}
