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

/// The flag file systemd-timesyncd creates once it has synchronised the clock (systemd ≥ 239).
const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";

/// Reads the kernel's clock synchronisation state. Where the call is forbidden (the systemd
/// unit's system call filter and `ProtectClock=` deny `adjtimex` even for reading; the unit
/// makes that an `EPERM` rather than a kill), systemd-timesyncd's flag file answers instead; with
/// neither, the clock counts as unsynchronised (nothing confirms it).
pub fn clock_sync() -> ClockSync {
    // SAFETY: `timex` is plain data; an all-zero value with `modes = 0` asks adjtimex to only
    // read the state, which needs no privilege and touches nothing but the struct we own.
    let state = unsafe {
        let mut timex: libc::timex = std::mem::zeroed();
        libc::adjtimex(&mut timex)
    };
    if state < 0 {
        return if std::path::Path::new(TIMESYNCD_FLAG).exists() {
            ClockSync::Synchronized
        } else {
            ClockSync::Unsynchronized
        };
    }
    if state == libc::TIME_ERROR {
        ClockSync::Unsynchronized
    } else {
        ClockSync::Synchronized
    }
}
