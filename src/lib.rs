//! edge-agent: keeps a complete, durable picture of who is enrolled on each biometric terminal,
//! never deletes a device user, and forwards every change upstream exactly once.
//!
//! The binary (`src/main.rs`) is a thin shell over this library's [`cli`] module so that
//! integration tests and benchmarks drive exactly the code that runs on the box.
//!
//! Start with `docs/ARCHITECTURE.md` at the repository root: the data flow, the module map and
//! which module may import which, the store layout with the one writer of each tree, the
//! numbered invariants, and the glossary of the feature ids (D6, B4, M3 …) that doc comments
//! cite.

pub mod agent;
pub mod arbiter;
pub mod audit;
pub mod backoff;
pub mod cli;
pub mod clock_sync;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod device;
pub mod esl;
pub mod events;
pub mod exit_status;
pub mod lifecycle;
pub mod live;
pub mod lock;
pub mod mqtt;
pub mod ops;
pub mod probe;
pub mod store;
pub mod sync;
pub mod upstream;

/// One line naming the build, for `edge-agent version`, logs and health messages.
pub fn version_line() -> String {
    format!(
        "edge-agent {} ({} {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

#[cfg(test)]
mod layering;
