//! A minimal MQTT 5 requester for an agent's control plane, used by `edge-agent ctl`, the
//! integration tests and the latency benchmark, so they all exercise the same wire format an
//! operator does (the `ctl` command line itself lives in `crate::cli::ctl`); and
//! [`LocalClient`], the on-box commands' client of the running agent's local control socket.

mod client;
mod local;

pub use client::{fresh_client_id, Client, CtlError};
pub use local::{LocalClient, LocalError};
