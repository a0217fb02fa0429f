//! Operations: logging for field technicians (and later status and metrics).

pub mod log_tail;
pub mod logging;
pub mod rate_limit;
pub mod rotating_file;
