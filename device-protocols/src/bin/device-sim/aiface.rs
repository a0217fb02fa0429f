//! The aiface emulator (not built yet).

/// Options of the aiface emulator.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the aiface emulator until it is told to stop.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the aiface emulator is not built into this version yet")
}
