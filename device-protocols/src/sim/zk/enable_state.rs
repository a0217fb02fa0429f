//! Whether the terminal is enabled (keypad and sensor live) or disabled ("Working…").
//!
//! Firmware disables on `CMD_DISABLEDEVICE`, re-enables on `CMD_ENABLEDEVICE`, when the last
//! session is freed by `CMD_EXIT`, and, if the disable carried a u32 timeout, after that many
//! seconds without traffic. The emulator records the state with every command so a driver test
//! can prove the device is never left disabled, on error paths included.

use std::time::{Duration, Instant};

/// The enable/disable state with its optional inactivity timeout.
pub(crate) struct EnableState {
    enabled: bool,
    auto_enable_after: Option<Duration>,
    last_activity: Instant,
}

impl EnableState {
    /// A device that starts enabled.
    pub(crate) fn new() -> EnableState {
        EnableState {
            enabled: true,
            auto_enable_after: None,
            last_activity: Instant::now(),
        }
    }

    /// Notes traffic at `now`, first applying an expired inactivity timeout.
    pub(crate) fn touch(&mut self, now: Instant) {
        self.expire(now);
        self.last_activity = now;
    }

    /// Disables, with an optional auto re-enable timeout in seconds (0 = none).
    pub(crate) fn disable(&mut self, timeout_secs: Option<u32>) {
        self.enabled = false;
        self.auto_enable_after = timeout_secs
            .filter(|&secs| secs > 0)
            .map(|secs| Duration::from_secs(u64::from(secs)));
    }

    /// Re-enables (explicitly, or because the last session ended).
    pub(crate) fn enable(&mut self) {
        self.enabled = true;
        self.auto_enable_after = None;
    }

    /// Whether the device is enabled at `now`.
    pub(crate) fn is_enabled(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.enabled
    }

    fn expire(&mut self, now: Instant) {
        if let Some(after) = self.auto_enable_after {
            if now.duration_since(self.last_activity) >= after {
                self.enable();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disable_timeout_runs_from_the_last_traffic() {
        let start = Instant::now();
        let mut state = EnableState::new();
        state.touch(start);
        state.disable(Some(60));
        state.touch(start + Duration::from_secs(50));
        assert!(!state.is_enabled(start + Duration::from_secs(100)));
        assert!(state.is_enabled(start + Duration::from_secs(110)));
    }

    #[test]
    fn without_a_timeout_only_enable_helps() {
        let start = Instant::now();
        let mut state = EnableState::new();
        state.disable(None);
        assert!(!state.is_enabled(start + Duration::from_secs(86_400)));
        state.enable();
        assert!(state.is_enabled(start));
    }
}
