//! `logs tail`: the last `lines` lines of the local log file (across rotations), optionally
//! only those containing `filter`. Read-only. Lets a remote technician see what a device said
//! without SSH.

use std::path::PathBuf;

use serde_json::json;

use super::blocking;
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::{CommandError, ErrorCode};
use crate::mqtt::Services;
use crate::ops::log_tail;

/// Lines returned when `lines` is not given.
const DEFAULT_LINES: i64 = 50;
/// Most lines one request may ask for (the reply must fit the broker's packet limit).
const MAX_LINES: i64 = 1000;

/// The `logs tail` command.
pub(crate) struct LogsTail {
    log_file: Option<PathBuf>,
}

impl LogsTail {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> LogsTail {
        LogsTail {
            log_file: services.log_file.clone(),
        }
    }
}

impl Command for LogsTail {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let lines = args
            .opt_int("lines", 1, MAX_LINES)?
            .unwrap_or(DEFAULT_LINES);
        let filter = args.opt_str("filter")?;
        args.finish()?;
        let file = self.log_file.clone().ok_or_else(|| {
            CommandError::new(
                ErrorCode::NotAvailable,
                "file logging is disabled on this agent (log.file is empty); the log is only in \
                 journald",
            )
        })?;
        Ok(Box::pin(async move {
            let found = blocking(move || {
                log_tail::tail(&file, lines as usize, filter.as_deref())
                    .map_err(|err| CommandError::failed(err.to_string()))
            })
            .await?;
            Ok(json!({ "lines": found }))
        }))
    }
}
