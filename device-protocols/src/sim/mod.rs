//! Device emulators (feature `sim`): faithful stand-ins for real terminals over real sockets,
//! used by the `device-sim` binary, the agent's tests and `edge-agent demo`.
//!
//! Unlike the rest of this crate they do I/O: an emulator is a device, not a codec. They build
//! on the same sans-IO protocol code the agent uses, keep time with one [`clock::DeviceClock`],
//! and record every command they receive in one [`command_log::CommandLog`] format so tests can
//! prove the agent never sent a destructive one. The ZK emulator also records every client
//! session it serves in one [`session_log::SessionLog`], the device's own witness for the lock
//! tests.

pub mod aiface;
pub mod clock;
pub mod command_log;
pub mod session_log;
pub mod zk;
