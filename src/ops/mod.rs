//! Operations: logging for field technicians (and later status and metrics).

pub mod logging;
