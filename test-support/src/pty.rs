//! Pseudo-terminals for the serial transport: real ttys (so termios calls work) without
//! serial hardware.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

/// One pty pair: the test keeps the master; a program opens [`Pty::slave_path`]. The slave is
/// held open so the master stays readable before that program opens the path.
pub struct Pty {
    /// The master end.
    pub master: File,
    /// The path of the slave end (`/dev/pts/N`).
    pub slave_path: String,
    _slave: File,
}

impl Pty {
    /// Opens a new pair.
    pub fn open() -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the integers; null name, termios and
        // window size are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: `slave` is an open tty and `name` a writable buffer of the given length.
        let rc = unsafe { libc::ttyname_r(slave, name.as_mut_ptr(), name.len()) };
        assert_eq!(rc, 0, "ttyname_r failed");
        // SAFETY: ttyname_r NUL-terminated the buffer.
        let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Pty {
            // SAFETY: both descriptors were just opened by openpty and have no other owner.
            master: unsafe { File::from_raw_fd(master) },
            _slave: unsafe { File::from_raw_fd(slave) },
            slave_path,
        }
    }
}

/// A null-modem cable between two pty slaves: the emulator opens [`SerialCable::device_end`],
/// the driver opens [`SerialCable::agent_end`]. Two threads copy bytes between the masters.
pub struct SerialCable {
    device: Pty,
    agent: Pty,
}

impl SerialCable {
    /// Plugs the cable in.
    #[allow(clippy::new_without_default)] // plugging in opens ptys: not a default value
    pub fn new() -> SerialCable {
        let device = Pty::open();
        let agent = Pty::open();
        copy(
            device.master.try_clone().unwrap(),
            agent.master.try_clone().unwrap(),
        );
        copy(
            agent.master.try_clone().unwrap(),
            device.master.try_clone().unwrap(),
        );
        SerialCable { device, agent }
    }

    /// The path the emulator serves.
    pub fn device_end(&self) -> &str {
        &self.device.slave_path
    }

    /// The path the agent opens.
    pub fn agent_end(&self) -> &str {
        &self.agent.slave_path
    }
}

fn copy(mut from: File, mut to: File) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}
