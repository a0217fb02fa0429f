//! `device-sim zk` as a child process for the driver tests, and a pty bridge for serial.
//!
//! Command logs are kept under `target/tmp/zk-driver-command-logs/`, where the test script's
//! suite-wide check (scripts/check-command-logs.py) scans them for destructive commands.
//!
//! The emulator binary belongs to the `device-protocols` package, so Cargo does not build it for
//! this package's tests; `cargo nextest run --workspace` (the test script) does, into the same
//! target directory, which is where [`device_sim`] looks.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The `device-sim` binary next to this test binary (`target/<profile>/device-sim`).
pub fn device_sim() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let sim = dir.join("device-sim");
    assert!(
        sim.exists(),
        "{} is missing: build it with `cargo build -p device-protocols --bin device-sim` \
         (the test script's `cargo nextest run --workspace` does)",
        sim.display()
    );
    sim
}

/// A running `device-sim zk`, killed when dropped; its command log is checked for destructive
/// commands on the way out.
pub struct Emulator {
    child: Child,
    /// The TCP listener, when asked for.
    pub tcp: Option<SocketAddr>,
    /// The UDP socket, when asked for.
    pub udp: Option<SocketAddr>,
    log: PathBuf,
}

/// A fresh command-log path under `target/tmp/zk-driver-command-logs/`.
fn command_log_path() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zk-driver-command-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = dir.join(format!("{}-{n}.jsonl", std::process::id()));
    // A pid reused from an earlier run must not mix old entries into this log.
    let _ = std::fs::remove_file(&log);
    log
}

impl Emulator {
    /// Starts `device-sim zk ARGS --command-log …` and waits for its listener lines.
    pub fn spawn(args: &[&str]) -> Emulator {
        let log = command_log_path();
        let mut child = Command::new(device_sim())
            .arg("zk")
            .args(args)
            .arg("--command-log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn device-sim");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listeners = ["--tcp", "--udp", "--serial"]
            .iter()
            .filter(|flag| args.contains(flag))
            .count();
        let (mut tcp, mut udp) = (None, None);
        for _ in 0..listeners {
            let line = lines.next().expect("device-sim exited early").unwrap();
            let address = line.rsplit(' ').next().unwrap();
            if line.starts_with("zk tcp") {
                tcp = Some(address.parse().unwrap());
            } else if line.starts_with("zk udp") {
                udp = Some(address.parse().unwrap());
            }
        }
        Emulator {
            child,
            tcp,
            udp,
            log,
        }
    }

    /// Every command the emulator received, in order.
    pub fn commands(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("command log line is JSON"))
            .collect()
    }

    /// Names of the received commands, in order.
    pub fn command_names(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Asserts that no destructive command ever reached the device.
    pub fn assert_nothing_destructive(&self) {
        for entry in self.commands() {
            assert_eq!(entry["destructive"], false, "destructive command: {entry}");
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            self.assert_nothing_destructive();
        }
    }
}

/// One pty: the master end and the slave's path; the slave is held open so the master stays
/// readable before the real user opens the path.
struct Pty {
    master: File,
    path: String,
    _slave: File,
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the integers; null name, termios and window
    // size are allowed.
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
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Pty {
        // SAFETY: both descriptors were just opened by openpty and have no other owner.
        master: unsafe { File::from_raw_fd(master) },
        _slave: unsafe { File::from_raw_fd(slave) },
        path,
    }
}

/// A null-modem cable between two pty slaves: the emulator opens [`SerialCable::device_end`],
/// the driver opens [`SerialCable::agent_end`] (both are real ttys, so tokio-serial's termios
/// calls work). Two threads copy bytes between the masters.
pub struct SerialCable {
    device: Pty,
    agent: Pty,
}

impl SerialCable {
    /// Plugs the cable in.
    pub fn new() -> SerialCable {
        let device = open_pty();
        let agent = open_pty();
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
        &self.device.path
    }

    /// The path the agent opens.
    pub fn agent_end(&self) -> &str {
        &self.agent.path
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
