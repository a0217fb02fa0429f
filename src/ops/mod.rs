//! Operations: logging for field technicians (size-capped file, journald, rate-limited repeats,
//! tail), allocator tuning, systemd integration (and later status and metrics).

pub mod log_tail;
pub mod logging;
pub mod memory;
pub mod rate_limit;
pub mod rotating_file;
pub mod systemd;
