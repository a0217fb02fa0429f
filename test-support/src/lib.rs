//! What the integration tests of the workspace share, in one place instead of a copy per test
//! binary.
//!
//! The tests exercise the agent the way a site runs it: against emulated terminals in their
//! own processes, a real MQTT broker and a real HTTP upstream. Starting, watching and stopping
//! those is the same work in every test area, so it lives here:
//!
//! - [`emulator`]: `device-sim` as a child process for both protocols, with the check that no
//!   destructive command ever reached an emulated terminal;
//! - [`mosquitto`]: a private broker on a free port, killable and restartable;
//! - [`fault_proxy`]: a TCP proxy in front of the broker that black-holes, delays, duplicates
//!   or reorders MQTT packets on command (the lock tests' network nemesis);
//! - [`upstream_double`]: an HTTP server enforcing the upstream contract, with fault injection;
//! - [`pty`]: pseudo-terminals and a null-modem cable for the serial transport;
//! - [`skip`]: loud skips of a check that cannot run here, reported by the test script;
//! - [`net`], [`wait`], [`paths`]: free ports, polling with a deadline, where binaries and
//!   scratch files are.
//!
//! With the `agent` feature, [`agent`] adds the helpers built on the agent's own types
//! (configs, in-process agents, store checks); only the agent's tests enable it.

pub mod aims_double;
pub mod emulator;
pub mod fault_proxy;
pub mod mosquitto;
pub mod net;
pub mod paths;
pub mod peers;
pub mod pty;
pub mod skip;
pub mod upstream_double;
pub mod wait;

#[cfg(feature = "agent")]
pub mod agent;

pub use emulator::{Emulator, Protocol};
pub use net::free_port;
pub use paths::device_sim;
/// Temporary directories removed on drop, re-exported so every test crate gets the same kind
/// without its own dependency.
pub use tempfile::{tempdir, TempDir};
pub use wait::{wait_for, wait_until};
