//! `edge-agent history --device ID`: a device's user count over its complete reads, as a
//! terminal sparkline with the reads that lost users marked (B4), read from the store.

use std::path::PathBuf;

use super::oneshot::{self, done};
use super::{render, ExitStatus, DEFAULT_CONFIG};
use crate::sync::{history, tools};

/// `edge-agent history` options.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The device.
    #[arg(long)]
    pub device: String,
    /// How many of the latest reads to draw.
    #[arg(long, default_value_t = 60)]
    pub limit: usize,
    /// The entries as JSON (oldest first) instead of the drawing.
    #[arg(long)]
    pub json: bool,
}

/// Prints the device's history; an unknown device is an error naming the configured ones.
pub fn run(args: HistoryArgs) -> ExitStatus {
    oneshot::run(&args.config, |config| async move {
        if !config.device.iter().any(|d| d.id == args.device) {
            let known: Vec<&str> = config.device.iter().map(|d| d.id.as_str()).collect();
            anyhow::bail!(
                "no device {:?} in the config; configured: {}",
                args.device,
                known.join(", ")
            );
        }
        let store = tools::open_store(&config)?;
        let mut entries = history::list(&store, &args.device)?;
        let skip = entries.len().saturating_sub(args.limit);
        entries.drain(..skip);
        let text = if args.json {
            serde_json::to_string_pretty(&serde_json::json!({
                "device": args.device,
                "reads": entries,
            }))? + "\n"
        } else {
            render::history::sparkline(&args.device, &entries)
        };
        Ok(done(text))
    })
}
