//! Helpers built on the agent's own types, for the agent's integration tests (feature
//! `agent`): one module per test area, plus what several areas share.

pub mod config_file;
pub mod mqtt;
pub mod running;
pub mod sync;
pub mod upstream;

use std::path::Path;

use edge_agent::store::{Store, StoreOptions};

/// Opens (or creates) the store at `dir/store`: tests open stores in a temporary directory
/// and care only that it opened.
pub fn open_store(dir: &Path) -> Store {
    Store::open(&StoreOptions::at(dir.join("store")))
        .expect("open the store")
        .store
}
