//! `edge-agent arbiter`: the site's lock arbiter, a process of its own (one per site) that
//! grants device locks to the agents over MQTT (`docs/locks.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use futures::StreamExt;

use super::{ExitStatus, DEFAULT_CONFIG};

/// `edge-agent arbiter` options.
#[derive(Debug, clap::Args)]
pub struct ArbiterArgs {
    /// The config file (the same format as the agent's: `[agent] site`, `data_dir`, `[mqtt]`,
    /// `[lock] lock_delay`, `[log]`).
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Runs the arbiter in the foreground until SIGTERM or SIGINT.
pub fn run(args: ArbiterArgs) -> ExitCode {
    let loaded = match crate::config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("edge-agent arbiter: not started: fix the config");
            return ExitStatus::BadConfig.into();
        }
    };
    let config = loaded.config;
    if config.mqtt.host.is_none() {
        eprintln!("edge-agent arbiter: mqtt.host is not set: the arbiter answers over MQTT");
        return ExitStatus::BadConfig.into();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edge-agent arbiter: cannot start the async runtime: {err}");
            return ExitStatus::Failed.into();
        }
    };
    runtime.block_on(async {
        let under_terminal = std::env::var_os("JOURNAL_STREAM").is_none();
        let _logging =
            match crate::ops::logging::init(&crate::agent::log_options(&config, under_terminal)) {
                Ok(logging) => logging,
                Err(err) => {
                    eprintln!("edge-agent arbiter: cannot set up logging: {err}");
                    return ExitStatus::Failed.into();
                }
            };
        let stop = async {
            match signal_hook_tokio::Signals::new([libc::SIGTERM, libc::SIGINT]) {
                Ok(mut signals) => {
                    signals.next().await;
                }
                Err(err) => {
                    tracing::error!(%err, "cannot register signal handlers");
                    futures::future::pending::<()>().await;
                }
            }
        };
        match crate::sync::lock::arbiter::serve(&config, stop).await {
            Ok(()) => {
                tracing::info!("lock arbiter stopped");
                ExitStatus::Success.into()
            }
            Err(err) => {
                tracing::error!("lock arbiter stopped on an error: {err}");
                eprintln!("edge-agent arbiter: {err}");
                ExitStatus::Failed.into()
            }
        }
    })
}
