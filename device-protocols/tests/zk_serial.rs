//! The experimental serial frame over a real pty pair: a complete read through `device-sim zk
//! --serial`, and RS485 addressing (a frame for another device is ignored).

mod zk_common;

use std::fs::File;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use device_protocols::zk::{Request, MAX_CHUNK_UDP};
use zk_common::live::{Emulator, SerialLink, TestClient};

/// A pty pair: the test keeps the master, the emulator opens the slave path.
struct Pty {
    master: File,
    slave_path: String,
    _slave: File,
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the provided integers; the null name, termios
    // and window-size pointers are allowed by its contract.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `slave` is an open tty descriptor and `name` is a writable buffer of the given size.
    let rc = unsafe { libc::ttyname_r(slave, name.as_mut_ptr(), name.len()) };
    assert_eq!(rc, 0, "ttyname_r failed");
    // SAFETY: ttyname_r NUL-terminated the buffer.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Pty {
        // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
        master: unsafe { File::from_raw_fd(master) },
        // Holding the slave open keeps the master readable while the emulator starts.
        _slave: unsafe { File::from_raw_fd(slave) },
        slave_path,
    }
}

fn client(pty: &Pty, address: u8) -> TestClient {
    let reader = pty.master.try_clone().unwrap();
    let writer = pty.master.try_clone().unwrap();
    TestClient::serial(SerialLink::new(writer, reader, address))
}

#[test]
fn complete_read_over_a_pty_at_115200_baud() {
    let pty = open_pty();
    let sim = Emulator::spawn(&[
        "--serial",
        &pty.slave_path,
        "--rs485",
        "--device-id",
        "7",
        "--users",
        "100",
        "--logs",
        "300",
    ]);
    let mut client = client(&pty, 7);
    let started = Instant::now();
    client.connect(None).unwrap();
    let read = client.full_read(MAX_CHUNK_UDP);
    let elapsed = started.elapsed();
    assert_eq!((read.sizes.users, read.sizes.records), (100, 300));
    assert!(read.users.count_consistent && read.logs.count_consistent);
    assert_eq!(read.users.users.len(), 100);
    assert_eq!(read.logs.records.len(), 300);
    // A figure, not an assertion: how close the read came to the line's byte rate.
    let payload = 4 + 100 * 72 + 4 + 300 * 40;
    eprintln!(
        "serial read of {payload} dataset bytes took {:.2} s; 115200 baud minimum {:.2} s",
        elapsed.as_secs_f64(),
        payload as f64 * 10.0 / 115_200.0
    );
    sim.assert_nothing_destructive();
}

#[test]
fn rs485_ignores_frames_for_another_address_and_rs232_does_not() {
    let pty = open_pty();
    let sim = Emulator::spawn(&["--serial", &pty.slave_path, "--rs485", "--device-id", "7"]);
    let mut stranger = client(&pty, 8);
    stranger.set_timeout(Duration::from_millis(800));
    assert_eq!(
        stranger.call(&Request::Connect),
        None,
        "answered another address"
    );
    assert!(sim
        .commands()
        .iter()
        .any(|e| e["disposition"] == "dropped-other-address"));

    // The same line, now addressed to the device (one reader per line: reuse the link).
    let mut addressed = stranger;
    addressed.set_serial_address(7);
    addressed.set_timeout(Duration::from_secs(10));
    addressed.session = device_protocols::zk::ClientSession::new();
    addressed.connect(None).unwrap();
    addressed.exit();
    drop(sim);

    // RS232 firmware does not check the address.
    let pty = open_pty();
    let _sim = Emulator::spawn(&["--serial", &pty.slave_path, "--device-id", "7"]);
    let mut any = client(&pty, 8);
    any.connect(None).unwrap();
    any.exit();
}
