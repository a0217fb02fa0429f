//! Whether the system clock is synchronised, as the kernel sees it. A leaf every level may ask:
//! events are marked with it when stamped (see `Event::clock_synchronized`), `status` and the
//! MQTT health report show it.
//!
//! Gateway boards often have no battery-backed clock and boot in the past until NTP catches
//! up; records stamped meanwhile are wrong and TLS may fail. The kernel's NTP state (the one
//! `timedatectl` reports as "System clock synchronized") answers the question without talking
//! to any daemon: `adjtimex` with no modes set only reads it.

use serde::Serialize;

/// The kernel's view of clock synchronisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSync {
    /// An NTP daemon (or chrony, systemd-timesyncd) disciplines the clock.
    Synchronized,
    /// Nothing has synchronised the clock (yet), or synchronisation was lost.
    Unsynchronized,
}

impl ClockSync {
    /// Whether times read from the system clock now can be trusted.
    pub fn is_synchronized(self) -> bool {
        self == ClockSync::Synchronized
    }
}

/// Reads the kernel's clock synchronisation state.
pub fn clock_sync() -> ClockSync {
    // SAFETY: `timex` is plain data; an all-zero value with `modes = 0` asks adjtimex to only
    // read the state, which needs no privilege and touches nothing but the struct we own.
    let state = unsafe {
        let mut timex: libc::timex = std::mem::zeroed();
        libc::adjtimex(&mut timex)
    };
    if state == libc::TIME_ERROR || state < 0 {
        ClockSync::Unsynchronized
    } else {
        ClockSync::Synchronized
    }
}
