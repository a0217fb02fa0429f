//! Crashes with real processes: the store, the forwarder and a sync are killed with SIGKILL at
//! random moments and must lose nothing they acknowledged.
//!
//! The store and forwarder tests re-execute this binary, running only their child test (by its
//! full name, `store::writer_child` or `upstream::agent_child`) in the new process.

mod store;
mod sync;
mod upstream;
