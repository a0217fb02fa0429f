//! Sync: polls, backups and restores, migration, mappings and conflicts, retention, and a ZK
//! terminal synced like an AI06.

mod backup;
mod conflicts;
mod first_read;
mod migrate;
mod poll;
mod retention;
mod zk;
