//! The exit codes of every `edge-agent` command, in one place, so that a code means the same
//! thing whichever command returns it and scripts, systemd and operators can rely on it.
//!
//! A leaf module (it imports nothing from the crate): both the command line (`crate::cli`) and
//! the running agent (`crate::agent`) end with these codes, and `cli` starts `agent`, so the
//! codes cannot live in `cli` without a cycle.

use std::process::ExitCode;

/// How an `edge-agent` command ended, as its process exit code.
///
/// Each meaning has exactly one code; `--help` lists them (see [`ExitStatus::help`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// The command did what was asked.
    Success,
    /// The command ran and failed (for `ctl`: the agent ran it and it failed); the reason is
    /// printed on stderr.
    Failed,
    /// The config file cannot be used (`run` does not start; `check-config` lists why).
    BadConfig,
    /// A device read was incomplete or a restore could not be verified (`probe`, `migrate`,
    /// `backup restore`): nothing may be concluded from it.
    Incomplete,
    /// `ctl` got no reply: the broker is unreachable, refused the connection, or the agent
    /// did not answer in time.
    NoReply,
    /// `ctl`: the agent refused the command without running it (not signed or not allowed,
    /// bad arguments, unknown command, busy); the reply's error code is printed on stderr.
    Refused,
    /// The command line is wrong (unknown option, missing value, malformed `ctl` words).
    Usage,
    /// A second stop signal cut the agent's shutdown short.
    Forced,
}

impl ExitStatus {
    /// Every status, in the order `--help` lists them.
    pub const ALL: [ExitStatus; 8] = [
        ExitStatus::Success,
        ExitStatus::Failed,
        ExitStatus::BadConfig,
        ExitStatus::Incomplete,
        ExitStatus::NoReply,
        ExitStatus::Refused,
        ExitStatus::Usage,
        ExitStatus::Forced,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::BadConfig => 2,
            ExitStatus::Incomplete => 3,
            ExitStatus::NoReply => 4,
            ExitStatus::Refused => 5,
            // EX_USAGE of sysexits.h.
            ExitStatus::Usage => 64,
            // 128 + SIGINT, what shells report for an interrupted program.
            ExitStatus::Forced => 130,
        }
    }

    /// One line saying what the code means, for `--help`.
    pub const fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => "done",
            ExitStatus::Failed => "failed (the reason is on stderr)",
            ExitStatus::BadConfig => "the config file cannot be used (see check-config)",
            ExitStatus::Incomplete => "a device read was incomplete or a restore was not verified",
            ExitStatus::NoReply => "ctl: no reply (broker unreachable, timeout)",
            ExitStatus::Refused => "ctl: the agent refused the command (the reason is on stderr)",
            ExitStatus::Usage => "wrong command line",
            ExitStatus::Forced => "run: a second stop signal cut the shutdown short",
        }
    }

    /// The exit-code table shown at the end of `edge-agent --help`.
    pub fn help() -> String {
        let mut text = String::from("Exit codes:");
        for status in ExitStatus::ALL {
            text.push_str(&format!("\n  {:>3}  {}", status.code(), status.meaning()));
        }
        text.push_str("\n  status: 0 ok, 1 warning, 2 critical (for monitoring scripts)");
        text
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_meaning_has_its_own_code() {
        let mut codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ExitStatus::ALL.len());
        assert_eq!(ExitStatus::Success.code(), 0);
    }

    #[test]
    fn help_lists_every_code() {
        let help = ExitStatus::help();
        for status in ExitStatus::ALL {
            assert!(help.contains(status.meaning()), "{help}");
        }
    }
}
