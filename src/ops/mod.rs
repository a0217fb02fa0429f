//! Operations: logging for field technicians (size-capped file, journald, rate-limited repeats,
//! tail), allocator tuning, the status report, systemd integration.

pub mod log_tail;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod rate_limit;
pub mod rotating_file;
pub mod status;
pub mod systemd;
