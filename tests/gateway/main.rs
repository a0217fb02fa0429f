//! The agent on its gateway box, as systemd and a box without a battery-backed clock see it:
//! the notify protocol the unit relies on (`Type=notify`, `WatchdogSec=`), and records stamped
//! before the clock was synchronised.

mod clock;
mod notify;
