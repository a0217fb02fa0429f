//! `buffer list`, `audit query`, `backup list|create|restore` and `migrate`: the technician's
//! commands on the store and devices of a stopped agent (`crate::sync::tools` does the work).

use std::path::PathBuf;

use super::oneshot::{self, complete_or_not, done};
use super::{render, ExitStatus, DEFAULT_CONFIG};
use crate::audit::{AuditQuery, Operation as AuditOperation};
use crate::config::HumanDuration;
use crate::sync::buffer::MappingStatus;
use crate::sync::tools;

/// `edge-agent buffer` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BufferCommand {
    /// List buffered users (all devices, or one), with counts per status.
    List {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Only this status: unmapped, pending, mapped, conflict or missing.
        #[arg(long)]
        status: Option<MappingStatus>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// `edge-agent audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Entries newest first, filtered by user, device, operation and time, in pages.
    Query {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this device user id.
        #[arg(long)]
        user: Option<String>,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Only this operation (discovery, missing, reappeared, restore, backup, ...).
        #[arg(long)]
        operation: Option<AuditOperation>,
        /// Not before: 2026-11-22T08:00:00Z, 2026-11-22, or a duration ago (7d).
        #[arg(long)]
        since: Option<String>,
        /// Before: same forms as --since.
        #[arg(long)]
        until: Option<String>,
        /// Entries to skip (paging).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Entries per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// `edge-agent backup` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// List backup files with their counts.
    List {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Back a device up now (a full read of every credential).
    Create {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The device to back up.
        #[arg(long)]
        device: String,
        /// How long to wait for the device to connect.
        #[arg(long, default_value = "2m")]
        wait: HumanDuration,
    },
    /// Re-add what a backup holds and the device lacks, then verify with a fresh read.
    Restore {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The device to restore.
        #[arg(long)]
        device: String,
        /// The backup: a path, or a file name from `backup list`.
        file: PathBuf,
        /// Only print exactly which users/credentials would be re-added.
        #[arg(long)]
        dry_run: bool,
        /// How long to wait for the device to connect.
        #[arg(long, default_value = "2m")]
        wait: HumanDuration,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// `edge-agent migrate` options.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// How long to wait for each device to connect, e.g. 2m.
    #[arg(long, default_value = "2m")]
    pub wait: HumanDuration,
}

/// `buffer list`.
pub fn buffer(command: BufferCommand) -> ExitStatus {
    let BufferCommand::List {
        config,
        device,
        status,
        json,
    } = command;
    oneshot::run(&config, |config| async move {
        let store = tools::open_store(&config)?;
        let listing = tools::buffer_list(&store, device.as_deref(), status)?;
        let text = if json {
            serde_json::to_string_pretty(&listing)? + "\n"
        } else {
            render::buffer::listing(&listing)
        };
        Ok(done(text))
    })
}

/// `audit query`.
pub fn audit(command: AuditCommand) -> ExitStatus {
    let AuditCommand::Query {
        config,
        user,
        device,
        operation,
        since,
        until,
        offset,
        limit,
        json,
    } = command;
    oneshot::run(&config, |config| async move {
        let now = chrono::Utc::now().timestamp_millis();
        let time = |text: Option<String>| {
            text.map(|t| parse_time(&t, now))
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        let query = AuditQuery {
            device_user_id: user,
            device_id: device,
            operation,
            since_unix_ms: time(since)?,
            // --until is exclusive, the query's bound inclusive.
            until_unix_ms: time(until)?.map(|to| to - 1),
            before_sequence: None,
            limit,
        };
        let store = tools::open_store(&config)?;
        let entries = tools::audit_query(&store, &query, offset)?;
        let text = if json {
            serde_json::to_string_pretty(&render::audit::entries_json(&entries))? + "\n"
        } else {
            render::audit::entries(&entries, &query, offset)
        };
        Ok(done(text))
    })
}

/// `backup list|create|restore`.
pub fn backup(command: BackupCommand) -> ExitStatus {
    match command {
        BackupCommand::List {
            config,
            device,
            json,
        } => oneshot::run(&config, |config| async move {
            let backups = tools::backup_list(&config, device.as_deref())?;
            let text = if json {
                serde_json::to_string_pretty(&backups)? + "\n"
            } else {
                render::backup::list(&backups, &config.backup_dir())
            };
            Ok(done(text))
        }),
        BackupCommand::Create {
            config,
            device,
            wait,
        } => oneshot::run(&config, |config| async move {
            let store = tools::open_store(&config)?;
            let info = tools::backup_create(&config, &store, &device, wait.get()).await?;
            Ok(done(render::backup::written(&info)))
        }),
        BackupCommand::Restore {
            config,
            device,
            file,
            dry_run,
            wait,
            json,
        } => oneshot::run(&config, |config| async move {
            let store = tools::open_store(&config)?;
            let report =
                tools::backup_restore(&config, &store, &device, &file, dry_run, wait.get()).await?;
            let text = if json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                report.to_text()
            };
            Ok((text, complete_or_not(dry_run || report.verified)))
        }),
    }
}

/// `migrate`: [`ExitStatus::Incomplete`] unless every device was read.
pub fn migrate(args: MigrateArgs) -> ExitStatus {
    let MigrateArgs { config, wait } = args;
    oneshot::run(&config, |config| async move {
        let store = tools::open_store(&config)?;
        let outcome = tools::migrate(&config, &store, wait.get()).await?;
        Ok((
            render::backup::migrated(&outcome),
            complete_or_not(outcome.all_read()),
        ))
    })
}

/// A time given on the command line: RFC 3339 (`2026-11-22T08:00:00Z`), a UTC date
/// (`2026-11-22`), or a duration meaning "that long ago" (`2h`, `7d`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    if let Ok(ago) = text.parse::<HumanDuration>() {
        return Ok(now_ms - i64::try_from(ago.get().as_millis()).unwrap_or(i64::MAX));
    }
    Err(format!(
        "{text:?} is not a time: use 2026-11-22T08:00:00Z, 2026-11-22, or a duration ago like 2h or 7d"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_dates_or_durations_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("1970-01-02", now), Ok(86_400_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", now), Ok(1_000));
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert!(parse_time("yesterday-ish", now).is_err());
    }
}
