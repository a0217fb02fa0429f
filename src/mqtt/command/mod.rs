//! Commands over MQTT 5 request/response (M3) with signed authorisation (M4).
//!
//! A request is published to `edge/<site>/<agent>/cmd/<command words>` with a response topic
//! below `edge/<site>/<agent>/reply/` and correlation data; the payload and reply formats are
//! in `docs/mqtt.md`. [`router`] runs the checks, [`registry`] maps names to handlers, and
//! `handlers` holds the commands this build implements. [`socket`] serves the same table to
//! the on-box commands over a local Unix socket, and [`paging`] is how every list is paged.

pub mod args;
pub mod dedup;
mod handlers;
pub mod lists;
pub mod nonces;
pub mod paging;
pub mod registry;
pub mod reply;
pub mod router;
pub mod socket;

pub use reply::{CommandError, ErrorCode, Reply};
