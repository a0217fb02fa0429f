//! A minimal MQTT 5 requester for an agent's control plane, used by `edge-agent ctl`, the
//! integration tests and the latency benchmark, so they all exercise the same wire format an
//! operator does. (The `ctl` command line itself lives in `crate::cli::ctl`.)

mod client;

pub use client::{fresh_client_id, Client, CtlError};
