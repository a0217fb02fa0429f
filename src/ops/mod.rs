//! Operations: logging for field technicians, systemd integration (and later status and
//! metrics).

pub mod logging;
pub mod systemd;
