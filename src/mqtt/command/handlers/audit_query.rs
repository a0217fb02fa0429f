//! `audit query`: the audit log, newest first, filtered by device user, device, operation and
//! time range, paged with the cursor `after` (or its older name `before`, a sequence) and
//! `limit`; the reply's `next` is the cursor of the following page. Read-only.

use chrono::DateTime;

use super::blocking;
use crate::audit::{self, Audit, Operation};
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::mqtt::Services;

/// Most entries per page (the reply must fit the broker's packet limit).
const MAX_LIMIT: i64 = crate::mqtt::command::lists::MAX_PAGE as i64;

/// The `audit query` command.
pub(crate) struct AuditQuery {
    audit: Audit,
}

impl AuditQuery {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> AuditQuery {
        AuditQuery {
            audit: Audit::new(services.store.clone()),
        }
    }
}

fn time_arg(args: &mut Args, name: &str) -> Result<Option<i64>, CommandError> {
    args.opt_str(name)?
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|time| time.timestamp_millis())
                .map_err(|err| {
                    CommandError::bad_argument(
                        name,
                        format!("expected an RFC 3339 time such as 2026-11-22T08:00:00Z ({err})"),
                    )
                })
        })
        .transpose()
}

impl Command for AuditQuery {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let operation = args
            .opt_str("operation")?
            .map(|text| text.parse::<Operation>())
            .transpose()
            .map_err(|err| CommandError::bad_argument("operation", err.to_string()))?;
        let query = audit::AuditQuery {
            device_user_id: args.opt_id("user")?,
            device_id: args.opt_id("device")?,
            operation,
            since_unix_ms: time_arg(&mut args, "since")?,
            until_unix_ms: time_arg(&mut args, "until")?,
            before_sequence: args
                .opt_int("before", 1, i64::MAX)?
                .map(|before| before as u64),
            limit: args.opt_int("limit", 1, MAX_LIMIT)?.unwrap_or(50) as usize,
        };
        // `after` is the cursor every list command takes; here it is the sequence of the last
        // entry seen (entries run newest first, so "after" it means older).
        let mut query = query;
        if let Some(after) = args.opt_cursor("after")? {
            let sequence = after.trim().parse::<u64>().map_err(|_| {
                CommandError::bad_argument("after", "a cursor from `next` of a previous reply")
            })?;
            query.before_sequence = Some(sequence);
        }
        args.finish()?;
        let audit = self.audit.clone();
        Ok(Box::pin(blocking(move || {
            super::super::lists::audit(&audit, &query)
        })))
    }
}
