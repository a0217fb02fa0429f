//! A minimal blocking ZK client for the tests that talk to the emulator.

use std::fs::File;
use std::sync::mpsc::Receiver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use device_protocols::zk::{
    decode_attendance, decode_users, frame_serial, frame_tcp, AttendanceLog, BulkDataset,
    BulkError, BulkRead, BulkStep, ClientSession, DeviceSizes, Packet, Request, SerialReassembler,
    SessionState, TcpReassembler, TextCodec, UserTable,
};

/// The transport under a [`TestClient`].
pub(crate) enum Link {
    Tcp(TcpStream, TcpReassembler),
    Udp(UdpSocket),
    Serial(SerialLink),
}

/// One end of a serial line: a writer, a reader thread feeding a channel (so reads can time
/// out), and the RS485 address to put on outgoing frames.
pub(crate) struct SerialLink {
    pub writer: File,
    pub incoming: Receiver<Vec<u8>>,
    pub reassembler: SerialReassembler,
    pub address: u8,
    pub timeout: Duration,
}

impl SerialLink {
    /// Wraps a line; `reader` is a second handle on it, moved to a reader thread.
    pub(crate) fn new(writer: File, mut reader: File, address: u8) -> SerialLink {
        let (tx, incoming) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        SerialLink {
            writer,
            incoming,
            reassembler: SerialReassembler::new(),
            address,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A minimal blocking client over the sans-IO types, for tests only (the agent's driver lives in
/// the agent). It shows the intended use: session → packet → frame → send; receive → reassemble
/// → decode → match reply id → feed the state machine.
pub(crate) struct TestClient {
    pub link: Link,
    pub session: ClientSession,
    /// How names are decoded (the device's configured code page).
    pub codec: TextCodec,
}

/// Everything one complete read returns.
pub(crate) struct FullRead {
    pub sizes: DeviceSizes,
    pub users: UserTable,
    pub logs: AttendanceLog,
}

impl TestClient {
    pub(crate) fn tcp(addr: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        TestClient {
            link: Link::Tcp(stream, TcpReassembler::new()),
            session: ClientSession::new(),
            codec: TextCodec::default(),
        }
    }

    pub(crate) fn udp(addr: SocketAddr) -> TestClient {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        TestClient {
            link: Link::Udp(socket),
            session: ClientSession::new(),
            codec: TextCodec::default(),
        }
    }

    pub(crate) fn serial(link: SerialLink) -> TestClient {
        TestClient {
            link: Link::Serial(link),
            session: ClientSession::new(),
            codec: TextCodec::default(),
        }
    }

    /// Changes the RS485 address put on outgoing serial frames.
    pub(crate) fn set_serial_address(&mut self, address: u8) {
        let Link::Serial(link) = &mut self.link else {
            panic!("only serial links have an address");
        };
        link.address = address;
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        match &mut self.link {
            Link::Tcp(stream, _) => stream.set_read_timeout(Some(timeout)).unwrap(),
            Link::Udp(socket) => socket.set_read_timeout(Some(timeout)).unwrap(),
            Link::Serial(link) => link.timeout = timeout,
        }
    }

    /// Sends raw ZK packet bytes with the transport's framing.
    pub(crate) fn send_raw(&mut self, packet: &[u8]) {
        match &mut self.link {
            Link::Tcp(stream, _) => stream.write_all(&frame_tcp(packet)).unwrap(),
            Link::Udp(socket) => {
                socket.send(packet).unwrap();
            }
            Link::Serial(link) => {
                let framed = frame_serial(link.address, packet);
                link.writer.write_all(&framed).unwrap();
            }
        }
    }

    /// Receives one packet; `None` on timeout or a closed connection.
    pub(crate) fn recv(&mut self) -> Option<Packet> {
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
            Link::Serial(link) => loop {
                if let Some(frame) = link.reassembler.next_frame() {
                    assert!(frame.checksum_valid, "emulator sent a bad serial checksum");
                    let incoming = Packet::decode(&frame.packet).unwrap();
                    assert!(incoming.checksum_valid, "emulator sent a bad checksum");
                    return Some(incoming.packet);
                }
                let bytes = link.incoming.recv_timeout(link.timeout).ok()?;
                link.reassembler.push(&bytes);
            },
        }
    }

    /// Waits for the peer to close a TCP connection; false if the read timed out instead.
    pub(crate) fn closed_by_peer(&mut self) -> bool {
        let Link::Tcp(stream, _) = &mut self.link else {
            panic!("only TCP connections close");
        };
        let mut buf = [0u8; 64];
        matches!(stream.read(&mut buf), Ok(0))
    }

    /// Sends a request and returns the reply to it, skipping stale packets.
    pub(crate) fn call(&mut self, request: &Request) -> Option<Packet> {
        let packet = self.session.packet(request);
        self.send_raw(packet.encode().as_bytes());
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
    pub(crate) fn connect(
        &mut self,
        key: Option<u32>,
    ) -> Result<(), device_protocols::zk::ReplyError> {
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
    pub(crate) fn bulk(
        &mut self,
        dataset: BulkDataset,
        max_chunk: u32,
    ) -> Result<Vec<u8>, BulkError> {
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
    pub(crate) fn full_read(&mut self, max_chunk: u32) -> FullRead {
        let codec = self.codec;
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

    pub(crate) fn exit(&mut self) {
        let reply = self.call(&Request::Exit).unwrap();
        self.session.expect_ok(&reply).unwrap();
    }
}
