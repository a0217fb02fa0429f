//! Sans-IO protocol code for the devices the edge agent talks to.
//!
//! Everything in this crate takes bytes or messages in and gives bytes or messages out: no
//! sockets, no clocks, no async runtime. That is what lets the codecs be fuzzed, replayed against
//! captured device traces, and shared between the agent's drivers and the `device-sim` emulator.
//!
//! * [`aiface`] — the AI06 "cloud" protocol (WebSocket + JSON, the device dials the server).
//! * [`zk`] — the ZK binary protocol (TCP/UDP port 4370 and the serial frame).
//! * `sim` (feature `sim`, not sans-IO) — emulators of both terminals over real sockets, built on
//!   the codecs above; the `device-sim` binary is a command line over them.

pub mod aiface;
pub mod zk;

#[cfg(feature = "sim")]
pub mod sim;
