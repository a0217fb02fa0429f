//! The AI06 (AiFace) emulator: dials the agent's WebSocket URL and behaves like the terminal.
//!
//! It registers with `reg` (with devinfo), answers every read command, takes the
//! non-destructive writes, pushes punches (resending until acknowledged) and keypad
//! enrolments, and misbehaves on request (see [`Scenario`]). Every frame it receives goes to
//! the [`CommandLog`] as a [`Frame`] line.

mod device;
mod frame_log;
mod pages;
mod scenario;
mod session;
mod users;

pub use frame_log::{CommandLog, Frame, FrameKind};
pub use scenario::{CountMeans, FaultKind, FaultSpec, Scenario};
pub use session::{SessionEnd, Simulator, Stats};

use std::time::Duration;
use tokio::sync::watch;

/// Runs the emulated terminal against `url` until `stop` turns true (reconnecting after a
/// dropped link when the scenario says so); returns the final state for a summary.
pub async fn emulate(
    url: &str,
    scenario: Scenario,
    log: CommandLog,
    mut stop: watch::Receiver<bool>,
) -> Simulator {
    let (reconnect, delay) = (
        scenario.reconnect,
        Duration::from_millis(scenario.reconnect_delay_ms),
    );
    let mut simulator = Simulator::new(scenario, log);
    loop {
        match simulator.run_session(url, &mut stop).await {
            Ok(SessionEnd::Stopped) => break,
            Ok(end) => eprintln!("device-sim aiface: session ended: {end}"),
            Err(error) => eprintln!("device-sim aiface: link to {url} failed: {error:#}"),
        }
        if !reconnect || *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
    }
    simulator
}
