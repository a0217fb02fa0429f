//! `log-level`: without arguments reports the level directive in force; with `level` replaces
//! it at run time (state-changing, so signed). An invalid directive is refused and the current
//! level stays.

use std::sync::Arc;

use serde_json::json;

use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::mqtt::Services;
use crate::ops::logging::{LogError, LoggingHandle};

/// The `log-level` command.
pub(crate) struct LogLevel {
    logging: Arc<LoggingHandle>,
}

impl LogLevel {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> LogLevel {
        LogLevel {
            logging: Arc::clone(&services.logging),
        }
    }
}

impl Command for LogLevel {
    fn changes_state(&self, args: &Args) -> bool {
        args.has("level")
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let wanted = args.opt_str("level")?;
        args.finish()?;
        let failed = |err: LogError| CommandError::failed(err.to_string());
        let current = self.logging.current_level().map_err(failed)?;
        let Some(wanted) = wanted else {
            return Ok(Box::pin(async move { Ok(json!({ "level": current })) }));
        };
        // Validate now, so a bad directive is a bad argument and not an accepted command.
        crate::ops::logging::parse_level(&wanted)
            .map_err(|err| CommandError::bad_argument("level", err.to_string()))?;
        let logging = Arc::clone(&self.logging);
        Ok(Box::pin(async move {
            logging.set_level(&wanted).map_err(failed)?;
            tracing::info!(level = %wanted, previous = %current, "log level changed by command");
            Ok(json!({ "level": wanted, "previous": current }))
        }))
    }
}
