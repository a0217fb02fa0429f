//! The zk emulator (not built yet).

/// Options of the zk emulator.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the zk emulator until it is told to stop.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the zk emulator is not built into this version yet")
}
