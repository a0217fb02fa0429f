//! The `edge-agent` command line: the long-running agent and the tools a technician or an
//! operator runs on the box.

use clap::{Parser, Subcommand};
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
        Command::Version => {
            println!("{}", edge_agent::version_line());
            ExitCode::SUCCESS
        }
    }
}

fn status(config: &std::path::Path, json: bool) -> ExitCode {
    let config = match edge_agent::config::load(config) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    match edge_agent::ops::status::show(&config, json) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("edge-agent status: {err}");
            ExitCode::FAILURE
        }
    }
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

fn probe(
    config: &std::path::Path,
    device: &str,
    listen: Option<std::net::SocketAddr>,
    wait: std::time::Duration,
    json: bool,
) -> ExitCode {
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
            eprintln!("edge-agent probe: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(edge_agent::probe::probe(
        &config, device, listen, wait, !json,
    ));
    match outcome {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.to_text());
            }
            if report.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(err) => {
            eprintln!("edge-agent probe: {err:#}");
            ExitCode::FAILURE
        }
    }
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
