//! The store and the config: damaged store directories and every class of config mistake.
//! Crash durability of the store needs child processes and lives in the `crash` tests.

mod config;
mod salvage;
