//! `buffer list`, `audit query`, `history`, `conflicts list`, `backup list|create|restore`,
//! `sync-now` and `migrate`: the technician's commands on the box. While the agent runs they
//! ask it over its local control socket (the same command table as MQTT, see
//! [`super::local`]); when it is stopped they open the store and devices themselves
//! (`crate::sync::tools` and `crate::mqtt::command::lists` do the work). Either way the result
//! has the same shape and is printed by the same renderer.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::local::{self, page_args, Agent};
use super::oneshot::{self, complete_or_not, done};
use super::render::table::Clock;
use super::{render, ExitStatus, DEFAULT_CONFIG};
use crate::audit::{Audit, AuditQuery, Operation as AuditOperation};
use crate::config::HumanDuration;
use crate::mqtt::command::lists;
use crate::mqtt::command::paging::PageRequest;
use crate::sync::buffer::MappingStatus;
use crate::sync::tools;

/// Paging and output options every list command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ListOptions {
    /// Records per page; without it every page is fetched and printed.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this cursor (the `--after` a previous page printed, or its JSON `next`).
    #[arg(long)]
    pub after: Option<String>,
    /// JSON output (the reply's result).
    #[arg(long)]
    pub json: bool,
    /// Show times in UTC instead of the local time zone.
    #[arg(long)]
    pub utc: bool,
}

impl ListOptions {
    /// The merged pages as JSON or as the shared table of `command`.
    fn print(&self, command: &str, result: &Value) -> anyhow::Result<String> {
        Ok(if self.json {
            serde_json::to_string_pretty(result)? + "\n"
        } else {
            render::reply::result_text(command, result, &Clock::now(self.utc))
        })
    }
}

/// `edge-agent conflicts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConflictsCommand {
    /// Open disagreements between a device and the upstream, with both versions.
    List {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Paging and output.
        #[command(flatten)]
        list: ListOptions,
    },
}

/// `edge-agent history` options.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The device.
    #[arg(long)]
    pub device: String,
    /// Paging and output.
    #[command(flatten)]
    pub list: ListOptions,
}

/// `edge-agent sync-now` options.
#[derive(Debug, clap::Args)]
pub struct SyncNowArgs {
    /// The config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The device to poll now.
    #[arg(long)]
    pub device: String,
}

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
        /// Paging and output.
        #[command(flatten)]
        list: ListOptions,
    },
    /// The credential values the store last read from a device for one user (which face,
    /// finger, card or PIN the terminal held), each checked against its digest.
    Credential {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The device.
        #[arg(long)]
        device: String,
        /// The device user id.
        #[arg(long)]
        user: String,
        /// Only this slot (0–9 fingers, 10 PIN, 11 card, 50 photo, …).
        #[arg(long)]
        slot: Option<u16>,
        /// Also write the values in full (the JSON result, every page) to this file; the
        /// printed table cuts long values such as a photo's base64 text.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Paging and output.
        #[command(flatten)]
        list: ListOptions,
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
        /// Paging and output.
        #[command(flatten)]
        list: ListOptions,
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
        /// Paging and output.
        #[command(flatten)]
        list: ListOptions,
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
    let (config, list) = match &command {
        BufferCommand::List { config, list, .. }
        | BufferCommand::Credential { config, list, .. } => (config.clone(), list.clone()),
    };
    oneshot::run(&config, |config| async move {
        let (name, field, out) = match &command {
            BufferCommand::List { .. } => ("buffer list", "users", None),
            BufferCommand::Credential { out, .. } => {
                ("buffer credential", "credentials", out.clone())
            }
        };
        let local_page = |store: &crate::store::Store, page: &PageRequest| match &command {
            BufferCommand::List { device, status, .. } => {
                lists::buffer(store, device.as_deref(), *status, page)
            }
            BufferCommand::Credential {
                device, user, slot, ..
            } => lists::credential(store, device, user, *slot, page),
        };
        let remote_args = |page: &PageRequest| {
            let [limit, after] = page_args(page);
            match &command {
                BufferCommand::List { device, status, .. } => local::args(&[
                    ("device", json!(device)),
                    ("status", json!(status.map(|s| s.as_str()))),
                    limit,
                    after,
                ]),
                BufferCommand::Credential {
                    device, user, slot, ..
                } => local::args(&[
                    ("device", json!(device)),
                    ("user", json!(user)),
                    ("slot", json!(slot)),
                    limit,
                    after,
                ]),
            }
        };
        let result = match local::reach(&config)? {
            Agent::Running(mut client) => {
                local::pages(field, list.limit, list.after.clone(), |page| {
                    local::call(&mut client, name, remote_args(page))
                })?
            }
            Agent::Stopped => {
                let store = tools::open_store(&config)?;
                local::pages(field, list.limit, list.after.clone(), |page| {
                    Ok(local_page(&store, page)?)
                })?
            }
        };
        if let Some(out) = out {
            std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")
                .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", out.display()))?;
        }
        Ok(done(list.print(name, &result)?))
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
        list,
    } = command;
    oneshot::run(&config, |config| async move {
        let now = chrono::Utc::now().timestamp_millis();
        let time = |text: Option<String>| {
            text.map(|t| parse_time(&t, now))
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        let since = time(since)?;
        // --until is exclusive, the query's bound inclusive.
        let until = time(until)?.map(|to| to - 1);
        let limit = Some(list.limit.unwrap_or(50));
        let result = match local::reach(&config)? {
            Agent::Running(mut client) => {
                local::pages("entries", limit, list.after.clone(), |page| {
                    let [limit, after] = page_args(page);
                    let args = local::args(&[
                        ("user", json!(user)),
                        ("device", json!(device)),
                        ("operation", json!(operation.map(|o| o.as_str()))),
                        ("since", json!(since.map(lists::rfc3339_ms))),
                        ("until", json!(until.map(lists::rfc3339_ms))),
                        limit,
                        after,
                    ]);
                    local::call(&mut client, "audit query", args)
                })?
            }
            Agent::Stopped => {
                let store = tools::open_store(&config)?;
                let audit = Audit::new(store);
                local::pages("entries", limit, list.after.clone(), |page| {
                    let before_sequence = page
                        .after
                        .as_deref()
                        .map(str::parse::<u64>)
                        .transpose()
                        .map_err(|_| anyhow::anyhow!("--after: not a cursor of `audit query`"))?;
                    let query = AuditQuery {
                        device_user_id: user.clone(),
                        device_id: device.clone(),
                        operation,
                        since_unix_ms: since,
                        until_unix_ms: until,
                        before_sequence,
                        limit: page.limit,
                    };
                    Ok(lists::audit(&audit, &query)?)
                })?
            }
        };
        let text = if list.json {
            // The entries themselves, as before paging came: a script reads an array.
            serde_json::to_string_pretty(&result["entries"])? + "\n"
        } else if result["entries"].as_array().is_none_or(Vec::is_empty) {
            "no matching audit entries\n".to_string()
        } else {
            list.print("audit query", &result)?
        };
        Ok(done(text))
    })
}

/// `conflicts list`.
pub fn conflicts(command: ConflictsCommand) -> ExitStatus {
    let ConflictsCommand::List {
        config,
        device,
        list,
    } = command;
    oneshot::run(&config, |config| async move {
        let result = match local::reach(&config)? {
            Agent::Running(mut client) => {
                local::pages("conflicts", list.limit, list.after.clone(), |page| {
                    let [limit, after] = page_args(page);
                    let args = local::args(&[("device", json!(device)), limit, after]);
                    local::call(&mut client, "conflicts list", args)
                })?
            }
            Agent::Stopped => {
                let store = tools::open_store(&config)?;
                local::pages("conflicts", list.limit, list.after.clone(), |page| {
                    Ok(lists::conflicts(&store, device.as_deref(), page)?)
                })?
            }
        };
        Ok(done(list.print("conflicts list", &result)?))
    })
}

/// `history --device ID`.
pub fn history(args: HistoryArgs) -> ExitStatus {
    let HistoryArgs {
        config,
        device,
        list,
    } = args;
    oneshot::run(&config, |config| async move {
        // The drawing shows the latest reads; `--limit` chooses how many.
        let limit = Some(list.limit.unwrap_or(60));
        let result = match local::reach(&config)? {
            Agent::Running(mut client) => {
                local::pages("reads", limit, list.after.clone(), |page| {
                    let [limit, after] = page_args(page);
                    let args = local::args(&[("device", json!(device)), limit, after]);
                    local::call(&mut client, "history", args)
                })?
            }
            Agent::Stopped => {
                if !config.device.iter().any(|d| d.id == device) {
                    anyhow::bail!("no device `{device}` in the config");
                }
                let store = tools::open_store(&config)?;
                local::pages("reads", limit, list.after.clone(), |page| {
                    Ok(lists::history(&store, &device, page)?)
                })?
            }
        };
        Ok(done(if list.json {
            list.print("history", &result)?
        } else {
            history_drawing(&device, &result)?
        }))
    })
}

/// The sparkline of the reads in `result` (a merged `history` reply, newest first).
fn history_drawing(device: &str, result: &Value) -> anyhow::Result<String> {
    let mut entries: Vec<crate::sync::history::HistoryEntry> =
        serde_json::from_value(result["reads"].clone())?;
    entries.reverse();
    Ok(render::history::sparkline(device, &entries))
}

/// `sync-now --device ID`: asks the running agent to poll the device at once.
pub fn sync_now(args: SyncNowArgs) -> ExitStatus {
    let SyncNowArgs { config, device } = args;
    oneshot::run(&config, |config| async move {
        match local::reach(&config)? {
            Agent::Running(mut client) => {
                let result = local::call(&mut client, "sync-now", json!({ "device": device }))?;
                Ok(done(render::reply::render(&result, &Clock::now(false))))
            }
            Agent::Stopped => anyhow::bail!(
                "the agent is not running (no answer on {}): sync-now asks the running agent to \
                 poll; start it (systemctl start edge-agent), or read the devices now with \
                 `edge-agent migrate`",
                config.control_socket().display()
            ),
        }
    })
}

/// `backup list|create|restore`.
pub fn backup(command: BackupCommand) -> ExitStatus {
    match command {
        BackupCommand::List {
            config,
            device,
            list,
        } => oneshot::run(&config, |config| async move {
            let result = match local::reach(&config)? {
                Agent::Running(mut client) => {
                    local::pages("backups", list.limit, list.after.clone(), |page| {
                        let [limit, after] = page_args(page);
                        let args = local::args(&[("device", json!(device)), limit, after]);
                        local::call(&mut client, "backups list", args)
                    })?
                }
                Agent::Stopped => {
                    local::pages("backups", list.limit, list.after.clone(), |page| {
                        Ok(lists::backups(
                            &config.backup_dir(),
                            device.as_deref(),
                            page,
                        )?)
                    })?
                }
            };
            if !list.json && result["backups"].as_array().is_none_or(Vec::is_empty) {
                return Ok(done(format!(
                    "no backups in {}\n",
                    config.backup_dir().display()
                )));
            }
            Ok(done(list.print("backups list", &result)?))
        }),
        BackupCommand::Create {
            config,
            device,
            wait,
        } => oneshot::run(&config, |config| async move {
            if let Agent::Running(mut client) = local::reach(&config)? {
                let result =
                    local::call(&mut client, "backups create", json!({ "device": device }))?;
                let info = serde_json::from_value(result["backup"].clone())?;
                return Ok(done(render::backup::written(&info)));
            }
            let store = tools::open_store(&config)?;
            let info = tools::backup_create(
                &config,
                &store,
                crate::arbiter::agent_lock(&config, &store)?,
                &device,
                wait.get(),
            )
            .await?;
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
            if let Agent::Running(mut client) = local::reach(&config)? {
                // The running agent takes a file name in its backup directory.
                let path = tools::resolve_backup(&config, &file);
                let name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if path.parent() != Some(config.backup_dir().as_path()) {
                    anyhow::bail!(
                        "{}: the running agent restores only files in its backup directory {}; \
                         copy the file there",
                        file.display(),
                        config.backup_dir().display()
                    );
                }
                let result = local::call(
                    &mut client,
                    "backups restore",
                    json!({ "device": device, "file": name, "dry_run": dry_run }),
                )?;
                let verified = result["restore"]["verified"].as_bool().unwrap_or(false);
                let text = if json {
                    serde_json::to_string_pretty(&result["restore"])? + "\n"
                } else {
                    result["text"].as_str().unwrap_or_default().to_string()
                };
                return Ok((text, complete_or_not(dry_run || verified)));
            }
            let store = tools::open_store(&config)?;
            let report = tools::backup_restore(
                &config,
                &store,
                crate::arbiter::agent_lock(&config, &store)?,
                &device,
                &file,
                dry_run,
                wait.get(),
            )
            .await?;
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
        let outcome = tools::migrate(
            &config,
            &store,
            crate::arbiter::agent_lock(&config, &store)?,
            wait.get(),
        )
        .await?;
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
