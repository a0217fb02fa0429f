//! The ZK-protocol emulator: a terminal served on TCP, UDP and/or a serial line.
//!
//! The firmware logic lives in [`Firmware`] (transport-free: one packet in, the reply packets
//! out), the data it serves in [`Store`], the front ends in `net` and `serial`. Every packet it
//! receives goes to the [`CommandLog`] as an [`Entry`] line. [`Terminal::bind`] opens the front
//! ends (so a caller that asked for port 0 learns the real port) and [`Terminal::serve`] runs
//! them, one thread each, sharing the firmware.
//!
//! Unlike the AiFace emulator it uses blocking sockets on threads: real ZK firmware is a
//! single-threaded loop that serves one TCP client at a time, and the front ends mirror that.

mod enable_state;
mod events;
mod firmware;
mod net;
mod packet_log;
mod serial;
mod store;
mod time;

pub use firmware::{Config, Faults, Firmware, Reply, Transport};
pub use net::{Admission, Timing};
pub use packet_log::{CommandLog, Disposition, Entry};
pub use serial::Line;
pub use store::{Shape, Store, WriteRefusal};

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::sim::session_log::SessionLog;

/// Where one emulated terminal is reached; every front end asked for shares its firmware.
pub struct FrontEnds {
    /// Listen for TCP here (port 0 picks a free port).
    pub tcp: Option<SocketAddr>,
    /// Listen for UDP here (port 0 picks a free port).
    pub udp: Option<SocketAddr>,
    /// Serve this serial device or pty (experimental framing) with these line settings.
    pub serial: Option<(PathBuf, Line)>,
    /// Pacing and first-packet timeout of the TCP and UDP front ends.
    pub timing: Timing,
    /// Whether TCP clients are served one at a time (firmware) or all at once.
    pub admission: Admission,
    /// Where every TCP session is recorded.
    pub sessions: Arc<SessionLog>,
}

/// A terminal whose front ends are open but not yet serving, so that the caller can learn and
/// announce where it is before the first client arrives.
pub struct Terminal {
    firmware: Arc<Mutex<Firmware>>,
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
    serial: Option<(File, PathBuf, Line)>,
    timing: Timing,
    admission: Admission,
    sessions: Arc<SessionLog>,
}

impl Terminal {
    /// Opens every front end `front_ends` asks for (TCP, then UDP, then serial), in front of
    /// `firmware`.
    pub fn bind(firmware: Firmware, front_ends: FrontEnds) -> anyhow::Result<Terminal> {
        let tcp = match front_ends.tcp {
            Some(addr) => Some(
                TcpListener::bind(addr).with_context(|| format!("cannot listen on tcp {addr}"))?,
            ),
            None => None,
        };
        let udp = match front_ends.udp {
            Some(addr) => {
                Some(UdpSocket::bind(addr).with_context(|| format!("cannot bind udp {addr}"))?)
            }
            None => None,
        };
        let serial = match front_ends.serial {
            Some((path, line)) => Some((serial::open_serial(&path, line.baud)?, path, line)),
            None => None,
        };
        Ok(Terminal {
            firmware: Arc::new(Mutex::new(firmware)),
            tcp,
            udp,
            serial,
            timing: front_ends.timing,
            admission: front_ends.admission,
            sessions: front_ends.sessions,
        })
    }

    /// The bound TCP address, when TCP was asked for.
    pub fn tcp_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        Ok(self.tcp.as_ref().map(TcpListener::local_addr).transpose()?)
    }

    /// The bound UDP address, when UDP was asked for.
    pub fn udp_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        Ok(self.udp.as_ref().map(UdpSocket::local_addr).transpose()?)
    }

    /// The firmware every front end shares: for a driver that acts at the terminal while it
    /// serves (punches made at the keypad, see `device-sim zk --punch-every-ms` and SIGUSR1).
    pub fn firmware(&self) -> Arc<Mutex<Firmware>> {
        Arc::clone(&self.firmware)
    }

    /// The served serial device, when one was asked for.
    pub fn serial_path(&self) -> Option<&Path> {
        self.serial.as_ref().map(|(_, path, _)| path.as_path())
    }

    /// Serves every front end, one thread each. The network front ends run until the process
    /// ends; a terminal on a serial line alone returns when the line fails.
    pub fn serve(self) -> anyhow::Result<()> {
        let mut workers = Vec::new();
        if let Some(listener) = self.tcp {
            let (firmware, timing) = (Arc::clone(&self.firmware), self.timing);
            let (admission, sessions) = (self.admission, Arc::clone(&self.sessions));
            workers.push(std::thread::spawn(move || {
                net::serve_tcp(listener, firmware, timing, admission, sessions);
                Ok(())
            }));
        }
        if let Some(socket) = self.udp {
            let (firmware, timing) = (Arc::clone(&self.firmware), self.timing);
            workers.push(std::thread::spawn(move || {
                net::serve_udp(socket, firmware, timing);
                Ok(())
            }));
        }
        if let Some((port, _, line)) = self.serial {
            let firmware = Arc::clone(&self.firmware);
            workers.push(std::thread::spawn(move || {
                serial::serve_serial(port, firmware, line)
            }));
        }
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("an emulator front end panicked"))??;
        }
        Ok(())
    }
}
