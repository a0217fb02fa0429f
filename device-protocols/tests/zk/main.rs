//! The ZK protocol: property tests, replays of captured traffic, the safety of the request
//! type, and the `device-sim zk` emulator over TCP, UDP and a serial pty, read by our own
//! client and by independent peers (pyzk, node-zklib).

mod props;
mod replay;
mod safety;
mod support;

#[cfg(feature = "sim")]
mod client;
#[cfg(feature = "sim")]
mod emulator;
#[cfg(feature = "sim")]
mod peers;
#[cfg(feature = "sim")]
mod serial;
