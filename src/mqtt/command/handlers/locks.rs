//! `locks`: the device locks this agent holds now, with token and what is left of each (the
//! status report's lock facts; the site's arbiter lists every lock, see `edge-agent locks
//! --all`). Read-only.

use serde_json::json;

use super::blocking;
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::mqtt::Services;

/// The `locks` command.
pub(crate) struct Locks {
    report: crate::ops::status::StatusSources,
}

impl Locks {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> Locks {
        Locks {
            report: services.status.clone(),
        }
    }
}

impl Command for Locks {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        args.finish()?;
        let sources = self.report.clone();
        let mode = match sources.config.lock.mode {
            crate::config::LockMode::Flock => "flock",
            crate::config::LockMode::Arbiter => "arbiter",
        };
        Ok(Box::pin(async move {
            let report = blocking(move || Ok(sources.report())).await?;
            let locks: Vec<_> = report
                .devices
                .iter()
                .filter_map(|device| {
                    let token = device.lock_token?;
                    Some(json!({
                        "device": device.id,
                        "holder": report.agent_id,
                        "token": token,
                        "remaining_ms": device.lock_remaining_ms,
                    }))
                })
                .collect();
            Ok(json!({ "mode": mode, "holder": report.agent_id, "locks": locks }))
        }))
    }
}
