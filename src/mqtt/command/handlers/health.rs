//! `health`: the health report on demand (the retained message may be up to one refresh period
//! old). Read-only; also a cheap end-to-end ping of the command path.

use super::blocking;
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::mqtt::health::build_report;
use crate::mqtt::Services;
use crate::ops::status::StatusSources;

/// The `health` command.
pub(crate) struct HealthCheck {
    sources: StatusSources,
}

impl HealthCheck {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> HealthCheck {
        HealthCheck {
            sources: services.status.clone(),
        }
    }
}

impl Command for HealthCheck {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        args.finish()?;
        let sources = self.sources.clone();
        Ok(Box::pin(async move {
            blocking(move || {
                let report = build_report(&sources);
                serde_json::to_value(report).map_err(|err| CommandError::failed(err.to_string()))
            })
            .await
        }))
    }
}
