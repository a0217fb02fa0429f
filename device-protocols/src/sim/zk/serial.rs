//! Serial front end (**experimental**, like the frame it speaks): a tty or pty in raw mode.
//!
//! Reads serial frames, drops those with a bad outer checksum and, in RS485 mode, those for
//! another address; replies carry the device's own address. Reads time out after 0.4 s of
//! silence, which also discards a stalled partial frame as firmware does. Output is throttled to
//! the configured baud rate so a pty behaves like a real line.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::zk::{frame_serial, SerialReassembler};
use anyhow::Context;

use super::firmware::{Firmware, Transport};
use super::net::send_paced;
use super::packet_log::Disposition;

/// Serial line settings.
#[derive(Clone, Copy)]
pub struct Line {
    /// Line speed; also the throttle rate.
    pub baud: u32,
    /// Check the address bytes (RS485); RS232 firmware ignores them.
    pub rs485: bool,
    /// Sleep after each write for the time the bytes take on a real line.
    pub throttle: bool,
    /// Pause between the packets of one reply.
    pub pacing: Duration,
}

/// Opens `path` and switches it to raw mode, before the emulator announces it, so that nothing a
/// client sends is ever mangled by the line discipline.
pub(crate) fn open_serial(path: &Path, baud: u32) -> anyhow::Result<File> {
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        // Never become the controlling terminal of a tty we merely serve.
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("cannot open serial device {}", path.display()))?;
    make_raw(&port, baud).with_context(|| format!("cannot configure {}", path.display()))?;
    Ok(port)
}

/// Serves an opened line until it fails.
pub(crate) fn serve_serial(
    mut port: File,
    firmware: Arc<Mutex<Firmware>>,
    line: Line,
) -> anyhow::Result<()> {
    let mut reassembler = SerialReassembler::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = match port.read(&mut buffer) {
            Ok(0) => {
                // VTIME expired: a partial frame has stalled, drop it like firmware.
                reassembler.reset();
                continue;
            }
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("reading the serial line"),
        };
        reassembler.push(&buffer[..n]);
        while let Some(frame) = reassembler.next_frame() {
            let mut device = firmware.lock().expect("firmware lock");
            let address = device.device_id();
            if !frame.checksum_valid {
                device.log_dropped_frame(&frame.packet, Disposition::DroppedBadChecksum);
                continue;
            }
            if line.rs485 && frame.address != address {
                device.log_dropped_frame(&frame.packet, Disposition::DroppedOtherAddress);
                continue;
            }
            let reply = device.handle(&frame.packet, Transport::Serial);
            drop(device);
            send_paced(&reply, line.pacing, |packet| {
                let framed = frame_serial(address, packet);
                port.write_all(&framed)?;
                if line.throttle {
                    // 10 bits per byte on an 8N1 line.
                    let secs = framed.len() as f64 * 10.0 / f64::from(line.baud.max(1));
                    std::thread::sleep(Duration::from_secs_f64(secs));
                }
                Ok(())
            })
            .context("writing the serial line")?;
        }
    }
}

/// Raw 8N1 at `baud`, reads returning after 0.4 s of silence.
fn make_raw(port: &File, baud: u32) -> std::io::Result<()> {
    let fd = port.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `port` for the duration of these calls, and
    // `termios` is fully initialised by tcgetattr before it is read.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut termios) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut termios);
        termios.c_cc[libc::VMIN] = 0;
        termios.c_cc[libc::VTIME] = 4;
        let speed = match baud {
            9600 => libc::B9600,
            19200 => libc::B19200,
            38400 => libc::B38400,
            57600 => libc::B57600,
            // The argument parser admits only the rates above and 115200.
            _ => libc::B115200,
        };
        libc::cfsetispeed(&mut termios, speed);
        libc::cfsetospeed(&mut termios, speed);
        if libc::tcsetattr(fd, libc::TCSANOW, &termios) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
