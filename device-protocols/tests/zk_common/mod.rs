//! Helpers shared by the ZK integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

/// Parses hex, ignoring case.
pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Loads a fixture: one hex segment per non-comment line, exactly as the capture delivered it.
pub fn fixture_segments(name: &str) -> Vec<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "zk", name]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(hex)
        .collect()
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use device_protocols::zk::{
    decode_attendance, decode_users, frame_tcp, AttendanceLog, BulkDataset, BulkError, BulkRead,
    BulkStep, ClientSession, DeviceSizes, Packet, Request, SessionState, TcpReassembler,
    TextCodec, UserTable,
};

/// A running `device-sim zk`, killed when dropped.
pub struct Emulator {
    child: Child,
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub command_log: PathBuf,
    _dir: TempDir,
}

/// A throwaway directory removed on drop (the crate has no tempfile dependency).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "zk-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Emulator {
    /// Starts the emulator with `args` (plus a command log) and waits for its listener lines.
    pub fn spawn(args: &[&str]) -> Emulator {
        let dir = TempDir::new("sim");
        let command_log = dir.0.join("commands.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
            .arg("zk")
            .args(args)
            .arg("--command-log")
            .arg(&command_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn device-sim");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let expected = ["--tcp", "--udp", "--serial"]
            .iter()
            .filter(|flag| args.contains(flag))
            .count();
        let (mut tcp, mut udp) = (None, None);
        for _ in 0..expected {
            let line = lines.next().expect("emulator exited early").unwrap();
            let addr = line.rsplit(' ').next().unwrap();
            if line.starts_with("zk tcp") {
                tcp = Some(addr.parse().unwrap());
            } else if line.starts_with("zk udp") {
                udp = Some(addr.parse().unwrap());
            }
        }
        Emulator {
            child,
            tcp,
            udp,
            command_log,
            _dir: dir,
        }
    }

    /// Every command the emulator recorded, as JSON values.
    pub fn commands(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.command_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("command log line is JSON"))
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
    }
}

/// The transport under a [`TestClient`].
pub enum Link {
    Tcp(TcpStream, TcpReassembler),
    Udp(UdpSocket),
}

/// A minimal blocking client over the sans-IO types, for tests only (the agent's driver lives in
/// the agent). It shows the intended use: session → packet → frame → send; receive → reassemble
/// → decode → match reply id → feed the state machine.
pub struct TestClient {
    pub link: Link,
    pub session: ClientSession,
}

/// Everything one complete read returns.
pub struct FullRead {
    pub sizes: DeviceSizes,
    pub users: UserTable,
    pub logs: AttendanceLog,
}

impl TestClient {
    pub fn tcp(addr: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        TestClient {
            link: Link::Tcp(stream, TcpReassembler::new()),
            session: ClientSession::new(),
        }
    }

    pub fn udp(addr: SocketAddr) -> TestClient {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        TestClient {
            link: Link::Udp(socket),
            session: ClientSession::new(),
        }
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        match &self.link {
            Link::Tcp(stream, _) => stream.set_read_timeout(Some(timeout)).unwrap(),
            Link::Udp(socket) => socket.set_read_timeout(Some(timeout)).unwrap(),
        }
    }

    /// Sends raw ZK packet bytes with the transport's framing.
    pub fn send_raw(&mut self, packet: &[u8]) {
        match &mut self.link {
            Link::Tcp(stream, _) => stream.write_all(&frame_tcp(packet)).unwrap(),
            Link::Udp(socket) => {
                socket.send(packet).unwrap();
            }
        }
    }

    /// Receives one packet; `None` on timeout or a closed connection.
    pub fn recv(&mut self) -> Option<Packet> {
        match &mut self.link {
            Link::Tcp(stream, reassembler) => loop {
                if let Some(bytes) = reassembler.next_packet().unwrap() {
                    let incoming = Packet::decode(&bytes).unwrap();
                    assert!(incoming.checksum_valid, "emulator sent a bad checksum");
                    return Some(incoming.packet);
                }
                let mut buf = [0u8; 8192];
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => reassembler.push(&buf[..n]),
                }
            },
            Link::Udp(socket) => {
                let mut buf = [0u8; 65536];
                let n = socket.recv(&mut buf).ok()?;
                let incoming = Packet::decode(&buf[..n]).unwrap();
                assert!(incoming.checksum_valid, "emulator sent a bad checksum");
                Some(incoming.packet)
            }
        }
    }

    /// Waits for the peer to close a TCP connection; false if the read timed out instead.
    pub fn closed_by_peer(&mut self) -> bool {
        let Link::Tcp(stream, _) = &mut self.link else {
            panic!("only TCP connections close");
        };
        let mut buf = [0u8; 64];
        matches!(stream.read(&mut buf), Ok(0))
    }

    /// Sends a request and returns the reply to it, skipping stale packets.
    pub fn call(&mut self, request: &Request) -> Option<Packet> {
        let packet = self.session.packet(request);
        self.send_raw(&packet.encode());
        self.reply_to_last()
    }

    fn reply_to_last(&mut self) -> Option<Packet> {
        loop {
            let packet = self.recv()?;
            if self.session.is_reply_to_last(&packet) {
                return Some(packet);
            }
        }
    }

    /// Connects (authenticating with `key` if the device asks).
    pub fn connect(&mut self, key: Option<u32>) -> Result<(), device_protocols::zk::ReplyError> {
        let reply = self.call(&Request::Connect).expect("connect reply");
        if self.session.on_connect_reply(&reply)? == SessionState::NeedsAuth {
            let reply = self
                .call(&Request::Auth(device_protocols::zk::CommKey(
                    key.unwrap_or(0),
                )))
                .expect("auth reply");
            self.session.on_auth_reply(&reply)?;
        }
        Ok(())
    }

    /// Runs one bulk read to completion.
    pub fn bulk(&mut self, dataset: BulkDataset, max_chunk: u32) -> Result<Vec<u8>, BulkError> {
        let (mut read, mut request) = BulkRead::start(dataset, max_chunk);
        loop {
            let mut reply = self.call(&request).expect("bulk reply");
            loop {
                match read.on_packet(&reply)? {
                    BulkStep::AwaitMore => reply = self.reply_to_last().expect("more fragments"),
                    BulkStep::Send(next) => {
                        request = next;
                        break;
                    }
                    BulkStep::Complete(bytes) => {
                        let free = self.call(&Request::FreeData).expect("free reply");
                        self.session.expect_ok(&free).unwrap();
                        return Ok(bytes);
                    }
                }
            }
        }
    }

    /// The whole session the agent runs: disable → sizes → users → logs → enable → exit.
    pub fn full_read(&mut self, max_chunk: u32) -> FullRead {
        let codec = TextCodec::default();
        let reply = self
            .call(&Request::DisableDevice {
                auto_enable_after_secs: 60,
            })
            .unwrap();
        self.session.expect_ok(&reply).unwrap();
        let reply = self.call(&Request::GetFreeSizes).unwrap();
        let sizes = DeviceSizes::decode(self.session.expect_ok(&reply).unwrap()).unwrap();
        let users = self.bulk(BulkDataset::Users, max_chunk).unwrap();
        let users = decode_users(&users, sizes.users, None, &codec).unwrap();
        let logs = self.bulk(BulkDataset::Attendance, max_chunk).unwrap();
        let logs = decode_attendance(&logs, sizes.records, None, &codec).unwrap();
        let reply = self.call(&Request::EnableDevice).unwrap();
        self.session.expect_ok(&reply).unwrap();
        self.exit();
        FullRead { sizes, users, logs }
    }

    pub fn exit(&mut self) {
        let reply = self.call(&Request::Exit).unwrap();
        self.session.expect_ok(&reply).unwrap();
    }
}

/// Seconds since the Unix epoch of a naive "YYYY-MM-DDTHH:MM:SS" (for comparing device clocks).
pub fn naive_seconds(text: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().expect("timestamp digits");
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Formats a ZK time the way the peer scripts print timestamps.
pub fn zk_iso(time: device_protocols::zk::ZkTime) -> String {
    let t = time.to_parts();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}
