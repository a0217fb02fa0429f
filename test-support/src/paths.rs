//! Where the binaries under test and the suite's scratch files are.
//!
//! A test binary lives in `target/<profile>/deps/`; the binaries of the workspace are built one
//! level up, and cargo's scratch directory for tests is `target/tmp`. A library cannot use
//! `env!("CARGO_BIN_EXE_…")` or `env!("CARGO_TARGET_TMPDIR")` (cargo sets them only for the
//! test crates themselves), so both are found from the running test binary.

use std::path::{Path, PathBuf};

/// `target/<profile>`, the directory holding the workspace's binaries.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// A binary of the workspace, built next to the test binaries; panics with how to build it
/// when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (`cargo build --workspace`; the test script's \
         `cargo nextest run --workspace` does)",
        path.display()
    );
    path
}

/// The emulator binary, `device-sim`, of the `device-protocols` package.
///
/// Cargo builds it for that package's tests; for the agent's tests it is there because the
/// test script runs the whole workspace.
pub fn device_sim() -> PathBuf {
    binary("device-sim")
}

/// Cargo's scratch directory for tests (`target/tmp`), created if needed. The test script
/// looks for emulator command logs there after the suite.
pub fn target_tmp() -> PathBuf {
    let dir = match std::env::var_os("CARGO_TARGET_TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        // `target/<profile>/deps/<test>` → `target/tmp`. Not found by cargo's CACHEDIR.TAG
        // marker: cargo writes it only when it creates `target` itself, and the test script
        // creates `target` first (for the peers' venv).
        None => profile_dir()
            .parent()
            .expect("target/<profile> has a parent")
            .join("tmp"),
    };
    std::fs::create_dir_all(&dir).expect("create the test scratch directory");
    dir
}
