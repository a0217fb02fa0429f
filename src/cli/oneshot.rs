//! The frame every one-shot command shares: load the config, run the command on a runtime,
//! print its output or its error, and turn the outcome into an [`ExitStatus`].

use std::future::Future;
use std::path::Path;

use super::ExitStatus;
use crate::config::Config;

/// Runs a one-shot command: loads the config (a broken one is [`ExitStatus::BadConfig`]), runs
/// `command` on a runtime, prints the text it returns and exits with the status it returns; an
/// error is printed on stderr and is [`ExitStatus::Failed`]. (The store commands among them
/// need the agent stopped; see `crate::sync::tools`.)
pub(super) fn run<F, Fut>(config: &Path, command: F) -> ExitStatus
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<(String, ExitStatus)>>,
{
    let config = match crate::config::load(config) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitStatus::BadConfig;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edge-agent: cannot start the async runtime: {err}");
            return ExitStatus::Failed;
        }
    };
    match runtime.block_on(command(config)) {
        Ok((text, status)) => {
            print!("{text}");
            status
        }
        Err(err) if err.downcast_ref::<super::local::Refused>().is_some() => {
            eprintln!("edge-agent: {err:#}");
            ExitStatus::Refused
        }
        Err(err) => {
            eprintln!("edge-agent: {err:#}");
            ExitStatus::Failed
        }
    }
}

/// Output of a command that succeeded.
pub(super) fn done(text: String) -> (String, ExitStatus) {
    (text, ExitStatus::Success)
}

/// [`ExitStatus::Success`] when a device read was complete (or a restore verified), else
/// [`ExitStatus::Incomplete`].
pub(super) fn complete_or_not(complete: bool) -> ExitStatus {
    if complete {
        ExitStatus::Success
    } else {
        ExitStatus::Incomplete
    }
}
