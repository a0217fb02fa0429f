//! The `edge-agent` command line: argument parsing, dispatch to the library, and rendering of
//! what comes back. It lives in the library so that `--help`, the binary and the tests share
//! one definition; `src/main.rs` only calls [`main`].
//!
//! One file per command group: [`run`] (the agent), [`config`] (`check-config`), [`demo`],
//! [`probe`], [`status`], [`store_tools`] (`buffer`, `audit`, `history`, `conflicts`,
//! `backup`, `sync-now`, `migrate`; through the running agent's local socket when it runs), [`ctl`]
//! (`ctl`, `keygen`) and [`version`]; [`render`] holds every table and report a person reads,
//! shared by the local commands and `ctl`. The work itself (sync, devices, the MQTT requester)
//! stays in its own module.
//!
//! # Exit codes
//!
//! Every command ends with one of the [`ExitStatus`] codes; each meaning has one code, whichever
//! command returns it, and `edge-agent --help` lists them:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | done |
//! | 1    | failed; the reason is on stderr |
//! | 2    | the config file cannot be used (`run` does not start; `check-config` lists why) |
//! | 3    | a device read was incomplete or a restore was not verified |
//! | 4    | `ctl`: no reply (broker unreachable, timeout) |
//! | 5    | `ctl`: the agent refused the command (signature, arguments, unknown command, busy) |
//! | 64   | wrong command line |
//! | 130  | `run`: a second stop signal cut the shutdown short |

pub mod arbiter;
pub mod config;
pub mod ctl;
pub mod demo;
mod local;
pub mod locks;
mod oneshot;
pub mod probe;
pub mod render;
pub mod run;
pub mod status;
pub mod store_tools;
pub mod version;

pub use crate::exit_status::ExitStatus;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Default location of the config file on an installed box.
const DEFAULT_CONFIG: &str = "/etc/edge-agent/edge-agent.toml";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "Keeps a complete, durable picture of who is enrolled on each biometric terminal, \
             never deletes a device user, and forwards every change upstream exactly once.",
    after_help = after_help()
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The text after the options in `edge-agent --help`: where the config reference is, and the
/// exit codes.
fn after_help() -> String {
    format!(
        "Config reference: config/edge-agent.toml in the source tree, \
         /usr/share/doc/edge-agent/edge-agent.toml on an installed box.\n\n{}",
        ExitStatus::help()
    )
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent in the foreground (what systemd starts). Stops cleanly on SIGTERM or
    /// SIGINT; re-reads the config on SIGHUP, keeping the old one if the new one is broken.
    Run(run::RunArgs),
    /// Check a config file: prints the resolved config (every default filled in, secrets never
    /// shown) or one line per problem with its key and line; exits 2 when there are problems.
    CheckConfig(config::CheckConfigArgs),
    /// Run the agent's main job on an embedded default, with nothing to set up: an emulated
    /// AI06 dials in on loopback, every user is read completely and kept, a punch is stored and
    /// acknowledged; everything is explained as it happens. Exits 0 when all of it worked.
    Demo(demo::DemoArgs),
    /// For a technician at a terminal: wait for one device, read it completely, and print a
    /// summary (users, credentials per type, the list checked against the device's own count,
    /// clock skew) or the exact reason the read was incomplete. Stores nothing; punches stay on
    /// the device. Stop the agent first, or use --listen with another port.
    Probe(probe::ProbeArgs),
    /// Show the running agent's state for a technician: devices (connected, last complete read
    /// and its age, users by status, the read under way with its progress, last error),
    /// upstream forwarding and the outbox, MQTT, locks, alarms, the last errors. Asks the
    /// running agent over its local socket; when it does not answer, reads the status file the
    /// agent rewrote within a second of each change (and says when it is stale). Exit status
    /// for monitoring scripts: 0 ok, 1 warning, 2 critical (stale, or no status at all, is
    /// critical).
    Status(status::StatusArgs),
    /// The user buffer: every device user the agent has read, with its mapping status and
    /// last-seen time. Asks the running agent, or reads the store of a stopped one.
    Buffer {
        /// What to do with the buffer.
        #[command(subcommand)]
        command: store_tools::BufferCommand,
    },
    /// The audit log: what the agent did, to which user, by whom and why. Asks the running
    /// agent, or reads the store of a stopped one.
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: store_tools::AuditCommand,
    },
    /// Full credential backups of a device: list, create now, restore (only re-adds what the
    /// device lacks). Done by the running agent when it runs, else by this command.
    Backup {
        /// What to do with backups.
        #[command(subcommand)]
        command: store_tools::BackupCommand,
    },
    /// A device's user count over its complete reads as a terminal sparkline, with the reads
    /// that lost users marked and listed (`--json`: the reads, newest first, with the ids that
    /// came and went). Asks the running agent, or reads the store of a stopped one.
    History(store_tools::HistoryArgs),
    /// Open conflicts between a device and the upstream. Asks the running agent, or reads the
    /// store of a stopped one.
    Conflicts {
        /// What to do with conflicts.
        #[command(subcommand)]
        command: store_tools::ConflictsCommand,
    },
    /// The device locks this agent holds now (device, token, lease left); with --all every
    /// lock of the site, from the lock arbiter.
    Locks(locks::LocksArgs),
    /// Ask the running agent to poll a device now (it takes the device's lock).
    SyncNow(store_tools::SyncNowArgs),
    /// Initial population: read every configured device completely and buffer every user not
    /// mapped yet. Safe to run any number of times. Stop the agent first.
    Migrate(store_tools::MigrateArgs),
    /// Print the version and build details.
    Version,
    /// Create an administrator key pair for signing commands: writes the private key file
    /// (mode 0600) and prints the `[[mqtt.admin_keys]]` lines for the agents' configs.
    Keygen(ctl::KeygenArgs),
    /// Run the site's lock arbiter in the foreground (one per site): it grants device locks to
    /// the agents with `[lock] mode = "arbiter"` over MQTT, with fencing tokens that strictly
    /// increase, kept in `<agent.data_dir>/arbiter`. Stops on SIGTERM or SIGINT.
    Arbiter(arbiter::ArbiterArgs),
    /// Send a command to an agent over MQTT, wait for the reply and print it. Exit code 0:
    /// done; 1: failed; 4: no reply; 5: refused; 64: the words cannot become a request.
    Ctl(Box<ctl::CtlArgs>),
}

/// Parses `args` (the program name first, as `std::env::args_os` gives them), runs the command
/// and returns its exit code. A wrong command line prints clap's explanation and is
/// [`ExitStatus::Usage`]; `--help` and `--version` are [`ExitStatus::Success`].
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => dispatch(cli.command),
        Err(err) => {
            let _ = err.print();
            if err.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitStatus::Success.into()
            }
        }
    }
}

/// Runs one parsed command.
pub fn dispatch(command: Command) -> ExitCode {
    let status = match command {
        Command::Run(args) => return run::run(args),
        Command::Arbiter(args) => return arbiter::run(args),
        Command::CheckConfig(args) => config::check(&args),
        Command::Demo(args) => demo::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Status(args) => return status::run(args),
        Command::Buffer { command } => store_tools::buffer(command),
        Command::Audit { command } => store_tools::audit(command),
        Command::Backup { command } => store_tools::backup(command),
        Command::History(args) => store_tools::history(args),
        Command::Conflicts { command } => store_tools::conflicts(command),
        Command::Locks(args) => locks::run(args),
        Command::SyncNow(args) => store_tools::sync_now(args),
        Command::Migrate(args) => store_tools::migrate(args),
        Command::Version => version::run(),
        Command::Keygen(args) => ctl::keygen(&args),
        Command::Ctl(args) => ctl::run(&args),
    };
    status.into()
}
