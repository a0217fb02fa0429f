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
    match Cli::parse().command {
        Command::Run { config } => edge_agent::agent::run_blocking(config),
        Command::CheckConfig { file } => check_config(&file),
        Command::Keygen { name, out } => edge_agent::ctl::keygen(&name, &out),
        Command::Ctl(args) => edge_agent::ctl::run(&args),
        Command::Version => {
            println!("{}", edge_agent::version_line());
            ExitCode::SUCCESS
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
