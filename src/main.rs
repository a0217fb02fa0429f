//! The `edge-agent` command line: the long-running agent and the tools a technician or an
//! operator runs on the box.

use clap::{Parser, Subcommand};
use edge_agent::sync::tools;
use std::path::PathBuf;
use std::process::ExitCode;

/// Default location of the config file on an installed box.
const DEFAULT_CONFIG: &str = "/etc/edge-agent/edge-agent.toml";

#[derive(Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "Keeps a complete, durable picture of who is enrolled on each biometric terminal, \
             never deletes a device user, and forwards every change upstream exactly once.",
    after_help = "Config reference: config/edge-agent.toml in the source tree, \
                  /usr/share/doc/edge-agent/edge-agent.toml on an installed box."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground (what systemd starts). Stops cleanly on SIGTERM or
    /// SIGINT; re-reads the config on SIGHUP, keeping the old one if the new one is broken.
    Run {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a config file: prints the resolved config (every default filled in, secrets never
    /// shown) or one line per problem with its key and line; exits 1 when there are problems.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Run the agent's main job on an embedded default, with nothing to set up: an emulated
    /// AI06 dials in on loopback, every user is read completely and kept, a punch is stored and
    /// acknowledged; everything is explained as it happens. Exits 0 when all of it worked.
    Demo {
        /// Users enrolled on the emulated terminal.
        #[arg(long, default_value_t = 25)]
        users: u64,
        /// Size of each user's face photo in KB.
        #[arg(long, default_value_t = 8)]
        photo_kb: usize,
        /// Keep the demo's data directory afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// For a technician at a terminal: wait for one device, read it completely, and print a
    /// summary (users, credentials per type, the list checked against the device's own count,
    /// clock skew) or the exact reason the read was incomplete. Stores nothing; punches stay on
    /// the device. Stop the agent first, or use --listen with another port.
    Probe {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Id of the device to probe (a `[[device]]` id).
        #[arg(long)]
        device: String,
        /// Listen here instead of the device's configured address (AI06).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// How long to wait for the device to connect, e.g. 2m.
        #[arg(long, default_value = "2m")]
        wait: edge_agent::config::HumanDuration,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the running agent's state for a technician: devices (connected, last registration,
    /// clock skew), upstream forwarding and the outbox (depth, bytes, oldest, dead letters),
    /// alarms. Reads the status file the agent rewrites every few seconds, so it also answers
    /// when the agent is hung or stopped (and says the status is stale).
    Status {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The user buffer: every device user the agent has read, with its mapping status and
    /// last-seen time. Works on the store directly: stop the agent first.
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
    /// The audit log: what the agent did, to which user, by whom and why. Works on the store
    /// directly: stop the agent first.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Full credential backups of a device: list, create now, restore (only re-adds what the
    /// device lacks). create and restore talk to the device: stop the agent first.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Initial population: read every configured device completely and buffer every user not
    /// mapped yet. Safe to run any number of times. Stop the agent first.
    Migrate {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long to wait for each device to connect, e.g. 2m.
        #[arg(long, default_value = "2m")]
        wait: edge_agent::config::HumanDuration,
    },
    /// Print the version and build details.
    Version,
    /// Create an administrator key pair for signing commands: writes the private key file
    /// (mode 0600) and prints the `[[mqtt.admin_keys]]` lines for the agents' configs.
    Keygen {
        /// The key's name, as agents record it in their audit log.
        #[arg(long)]
        name: String,
        /// Where to write the private key (never overwritten).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Send a command to an agent over MQTT, wait for the reply and print it. Exit code 0:
    /// done; 1: refused or failed; 2: no reply.
    Ctl(Box<edge_agent::ctl::CtlArgs>),
}

#[derive(Subcommand)]
enum BufferCommand {
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
        status: Option<edge_agent::sync::buffer::MappingStatus>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
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
        operation: Option<edge_agent::audit::Operation>,
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

#[derive(Subcommand)]
enum BackupCommand {
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
        wait: edge_agent::config::HumanDuration,
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
        wait: edge_agent::config::HumanDuration,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    edge_agent::ops::memory::limit_malloc_arenas();
    match Cli::parse().command {
        Command::Run { config } => edge_agent::agent::run_blocking(config),
        Command::CheckConfig { file } => check_config(&file),
        Command::Demo {
            users,
            photo_kb,
            keep,
        } => demo(edge_agent::demo::DemoOptions {
            users,
            photo_kb,
            keep,
        }),
        Command::Probe {
            config,
            device,
            listen,
            wait,
            json,
        } => probe(&config, &device, listen, wait.get(), json),
        Command::Status { config, json } => status(&config, json),
        Command::Keygen { name, out } => edge_agent::ctl::keygen(&name, &out),
        Command::Ctl(args) => edge_agent::ctl::run(&args),
        Command::Buffer {
            command:
                BufferCommand::List {
                    config,
                    device,
                    status,
                    json,
                },
        } => offline(&config, |config| async move {
            let store = tools::open_store(&config)?;
            tools::buffer_list(&store, device.as_deref(), status, json).map(done)
        }),
        Command::Audit {
            command:
                AuditCommand::Query {
                    config,
                    user,
                    device,
                    operation,
                    since,
                    until,
                    offset,
                    limit,
                    json,
                },
        } => offline(&config, |config| async move {
            let now = chrono::Utc::now().timestamp_millis();
            let time = |text: Option<String>| {
                text.map(|t| tools::parse_time(&t, now))
                    .transpose()
                    .map_err(anyhow::Error::msg)
            };
            let query = edge_agent::audit::AuditQuery {
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
            tools::audit_query(&store, &query, offset, json).map(done)
        }),
        Command::Backup { command } => backup(command),
        Command::Migrate { config, wait } => offline(&config, |config| async move {
            let store = tools::open_store(&config)?;
            let (text, all_read) = tools::migrate(&config, &store, wait.get()).await?;
            Ok((
                text,
                if all_read {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                },
            ))
        }),
        Command::Version => {
            println!("{}", edge_agent::version_line());
            ExitCode::SUCCESS
        }
    }
}

fn status(config: &std::path::Path, json: bool) -> ExitCode {
    offline(config, |config| async move {
        let mut text = edge_agent::ops::status::show(&config, json).map_err(anyhow::Error::msg)?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok((text, ExitCode::SUCCESS))
    })
}

fn demo(options: edge_agent::demo::DemoOptions) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edge-agent demo: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(edge_agent::demo::run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-agent demo FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn backup(command: BackupCommand) -> ExitCode {
    match command {
        BackupCommand::List {
            config,
            device,
            json,
        } => offline(&config, |config| async move {
            tools::backup_list(&config, device.as_deref(), json).map(done)
        }),
        BackupCommand::Create {
            config,
            device,
            wait,
        } => offline(&config, |config| async move {
            let store = tools::open_store(&config)?;
            tools::backup_create(&config, &store, &device, wait.get())
                .await
                .map(done)
        }),
        BackupCommand::Restore {
            config,
            device,
            file,
            dry_run,
            wait,
            json,
        } => offline(&config, |config| async move {
            let store = tools::open_store(&config)?;
            let report =
                tools::backup_restore(&config, &store, &device, &file, dry_run, wait.get()).await?;
            let text = if json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                report.to_text()
            };
            let verified = dry_run || report.verified;
            Ok((
                text,
                if verified {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                },
            ))
        }),
    }
}

/// Output of a command that succeeded.
fn done(text: String) -> (String, ExitCode) {
    (text, ExitCode::SUCCESS)
}

/// Runs a one-shot command: loads the config, runs `command` on a runtime, prints its output
/// or its error. (The store commands among them need the agent stopped; see
/// `edge_agent::sync::tools`.)
fn offline<F, Fut>(config: &std::path::Path, command: F) -> ExitCode
where
    F: FnOnce(edge_agent::config::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(String, ExitCode)>>,
{
    let config = match edge_agent::config::load(config) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edge-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command(config)) {
        Ok((text, code)) => {
            print!("{text}");
            code
        }
        Err(err) => {
            eprintln!("edge-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn probe(
    config: &std::path::Path,
    device: &str,
    listen: Option<std::net::SocketAddr>,
    wait: std::time::Duration,
    json: bool,
) -> ExitCode {
    offline(config, |config| async move {
        let report = edge_agent::probe::probe(&config, device, listen, wait, !json).await?;
        let text = if json {
            serde_json::to_string_pretty(&report)? + "\n"
        } else {
            report.to_text()
        };
        let code = if report.complete {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        };
        Ok((text, code))
    })
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match edge_agent::config::load(file) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            match toml::to_string_pretty(&loaded.config) {
                Ok(text) => {
                    println!(
                        "# {} is valid. Resolved configuration (defaults filled in; secrets \
                         are read from the files named here and never printed):\n",
                        file.display()
                    );
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: cannot print the resolved config: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{} problem(s) found; the annotated reference is config/edge-agent.toml",
                errors.errors.len()
            );
            ExitCode::FAILURE
        }
    }
}
