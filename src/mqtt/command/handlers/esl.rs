//! `esl status` and `esl verify [dry_run=true]`: the shelf-label adapter's state, and a drift
//! verification run now (a dry run only reports; otherwise drift is queued to be pushed).

use serde_json::Value;

use super::blocking;
use crate::esl::Esl;
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;

/// `esl status`. Read-only.
pub(crate) struct EslStatus(pub Esl);

impl Command for EslStatus {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        args.finish()?;
        let esl = self.0.clone();
        Ok(Box::pin(async move {
            let status = blocking(move || Ok(esl.status())).await?;
            serde_json::to_value(status).map_err(|e| CommandError::failed(e.to_string()))
        }))
    }
}

/// `esl verify [dry_run=true]`: changes state (queues pushes) unless a dry run.
pub(crate) struct EslVerify(pub Esl);

impl Command for EslVerify {
    fn changes_state(&self, args: &Args) -> bool {
        args.to_value().get("dry_run").and_then(Value::as_bool) != Some(true)
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let dry_run = args.opt_bool("dry_run")?.unwrap_or(false);
        args.finish()?;
        let esl = self.0.clone();
        Ok(Box::pin(async move {
            let report = esl.verify(dry_run).await.map_err(CommandError::failed)?;
            serde_json::to_value(report).map_err(|e| CommandError::failed(e.to_string()))
        }))
    }
}
