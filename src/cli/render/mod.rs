//! How command results look on a terminal. Every table and report a person reads comes from
//! here, whether the data came from the store on the box, a device, the status file or an MQTT
//! reply, so one kind of record always prints the same way. `--json` output is the data itself
//! and needs no renderer.

pub mod backup;
pub mod history;
pub mod probe;
pub mod reply;
pub mod status;
pub mod table;
