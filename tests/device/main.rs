//! The device drivers against emulated terminals in their own processes: the AI06 driver, AI06
//! punches across agent kills, and the ZK driver over TCP, UDP and a serial pty.

mod aiface_driver;
mod aiface_punches;
mod zk_attendance_measure;
mod zk_driver;
mod zk_punch_layouts;
