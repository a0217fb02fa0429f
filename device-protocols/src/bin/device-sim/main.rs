//! `device-sim`: emulates an AI06 (AiFace) or a ZK-protocol terminal over real sockets, faithful
//! enough to real firmware that the agent and independent clients can be tested against it.
//!
//! Every command the emulator receives is recorded as a JSON line so tests can prove that no
//! destructive command was ever sent.

mod aiface;
mod zk;

use clap::{Parser, Subcommand};

/// Command line of the emulator: one subcommand per device family.
#[derive(Parser)]
#[command(name = "device-sim", version, about = "Emulates AI06 and ZK terminals for tests and demos")]
struct Cli {
    #[command(subcommand)]
    device: Device,
}

#[derive(Subcommand)]
enum Device {
    /// An AI06 terminal: dials the agent's WebSocket URL and answers its JSON commands.
    Aiface(aiface::Args),
    /// A ZK-protocol terminal: listens on TCP, UDP or a serial device/pty.
    Zk(zk::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().device {
        Device::Aiface(args) => aiface::run(args),
        Device::Zk(args) => zk::run(args),
    }
}
