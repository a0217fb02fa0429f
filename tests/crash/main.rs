//! Crashes with real processes: the store, the forwarder and a sync are killed with SIGKILL at
//! random moments and must lose nothing they acknowledged; the running agent is killed in the
//! middle of read → apply → forward and every fact must reach the upstream exactly once.
//!
//! The store and forwarder tests re-execute this binary, running only their child test (by its
//! full name, `store::writer_child` or `upstream::agent_child`) in the new process.

mod exactly_once;
mod first_read;
mod store;
mod sync;
mod upstream;
