//! `edge-agent probe`: one complete read of one device, for a technician at the terminal.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::oneshot::{self, complete_or_not};
use super::{render, ExitStatus, DEFAULT_CONFIG};
use crate::config::HumanDuration;

/// `edge-agent probe` options.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Id of the device to probe (a `[[device]]` id).
    #[arg(long)]
    pub device: String,
    /// Listen here instead of the device's configured address (AI06).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How long to wait for the device to connect, e.g. 2m.
    #[arg(long, default_value = "2m")]
    pub wait: HumanDuration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Probes the device and prints the report; [`ExitStatus::Incomplete`] when the read was not
/// complete.
pub fn run(args: ProbeArgs) -> ExitStatus {
    let ProbeArgs {
        config,
        device,
        listen,
        wait,
        json,
    } = args;
    oneshot::run(&config, |config| async move {
        let report = crate::probe::probe(&config, &device, listen, wait.get(), !json).await?;
        let text = if json {
            serde_json::to_string_pretty(&report)? + "\n"
        } else {
            render::probe::report(&report)
        };
        Ok((text, complete_or_not(report.complete)))
    })
}
