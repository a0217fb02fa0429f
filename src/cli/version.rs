//! `edge-agent version`: the build, as logs and health messages also name it.

use super::ExitStatus;

/// Prints the version line.
pub fn run() -> ExitStatus {
    println!("{}", crate::version_line());
    ExitStatus::Success
}
