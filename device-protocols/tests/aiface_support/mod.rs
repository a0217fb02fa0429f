//! Shared pieces of the AiFace emulator tests: the emulator process and a minimal agent.

pub mod agent;
pub mod emulator;

use std::time::Duration;

/// Longest any single step may take before the test calls it hung.
pub const STEP: Duration = Duration::from_secs(15);

/// The `cloudtime` the test agent sends.
pub const CLOUDTIME: &str = "2026-03-04 08:00:00";
