//! TCP and UDP front ends. Each hands whole ZK packets to the shared firmware and writes its
//! replies one frame per write, paced like real firmware (pyzk and node-zklib depend on it).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sim::session_log::{Session, SessionLog};
use crate::zk::{frame_tcp, Code, Packet, TcpReassembler};
use anyhow::Context;

use super::firmware::{Firmware, Reply, Transport};

/// The firmware's UDP receive buffer; longer datagrams are truncated (and then fail the checksum),
/// exactly as on the device.
const UDP_RECEIVE_BUFFER: usize = 1032;

/// How often a TCP connection idle between requests checks for a realtime event to push.
const EVENT_TICK: Duration = Duration::from_millis(5);

/// Timing knobs shared by the front ends.
#[derive(Clone, Copy)]
pub struct Timing {
    /// Delay between the packets of one multi-packet reply.
    pub pacing: Duration,
    /// A TCP client must send its first packet within this time.
    pub first_packet_timeout: Duration,
}

/// How the TCP front end takes clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// One at a time, like firmware with `listen(backlog = 1)` and a single-threaded loop: a
    /// second client waits until the first one leaves.
    OneAtATime,
    /// Every client at once, each on its own thread. No firmware does this; the lock tests use
    /// it so that two clients that would talk to the device together show up as two overlapping
    /// sessions in the session log, instead of the second one being queued out of sight.
    Concurrent,
}

/// Serves TCP connections as `admission` says, recording each in `sessions`.
pub(crate) fn serve_tcp(
    listener: TcpListener,
    firmware: Arc<Mutex<Firmware>>,
    timing: Timing,
    admission: Admission,
    sessions: Arc<SessionLog>,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                eprintln!("device-sim zk: tcp accept failed: {err}");
                continue;
            }
        };
        let session = match stream.peer_addr() {
            Ok(peer) => sessions.begin("tcp", peer),
            Err(err) => {
                eprintln!("device-sim zk: tcp peer vanished before it was served: {err}");
                continue;
            }
        };
        match admission {
            Admission::OneAtATime => serve_recorded(stream, &firmware, timing, session),
            Admission::Concurrent => {
                let firmware = Arc::clone(&firmware);
                std::thread::spawn(move || serve_recorded(stream, &firmware, timing, session));
            }
        }
    }
}

/// Serves one connection; the session's `close` line is written when it ends, however it ends.
fn serve_recorded(
    stream: TcpStream,
    firmware: &Mutex<Firmware>,
    timing: Timing,
    mut session: Session,
) {
    if let Err(err) = serve_connection(stream, firmware, timing, &mut session) {
        eprintln!("device-sim zk: tcp connection ended: {err:#}");
    }
}

fn serve_connection(
    mut stream: TcpStream,
    firmware: &Mutex<Firmware>,
    timing: Timing,
    session: &mut Session,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timing.first_packet_timeout))?;
    let mut reassembler = TcpReassembler::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut first = true;
    // The session this connection opened, for the realtime events it registered.
    let mut session_id: Option<u16> = None;
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err)
                if first && matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                // No session for a client that stays silent (firmware's 8 s first-packet wait).
                return Ok(());
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // Between the client's requests: push the realtime event that is due, if any.
                let due =
                    session_id.and_then(|id| firmware.lock().expect("firmware lock").due_event(id));
                if let Some(event) = due {
                    stream.write_all(&frame_tcp(&event.encode()))?;
                }
                continue;
            }
            Err(err) => return Err(err).context("reading from client"),
        };
        reassembler.push(&buffer[..n]);
        while let Some(packet) = reassembler.next_packet().context("framing client stream")? {
            if first {
                first = false;
                // Wake up now and then between requests to push realtime events.
                stream.set_read_timeout(Some(EVENT_TICK))?;
            }
            let code = Packet::decode(&packet)
                .ok()
                .map(|incoming| incoming.packet.code);
            session.command(code.and_then(|code| code.name()).unwrap_or("?"));
            let reply = firmware
                .lock()
                .expect("firmware lock")
                .handle(&packet, Transport::Tcp);
            if code == Some(Code::CONNECT) {
                session_id = reply.packets.first().map(|p| p.session_id);
            }
            let watched = stream.try_clone()?;
            send_paced_with(
                &reply,
                timing.pacing,
                |pause| pause_unless_hung_up(&watched, pause),
                |packet| stream.write_all(&frame_tcp(packet)),
            )?;
            if reply.close {
                return Ok(());
            }
        }
    }
}

/// Serves UDP datagrams; replies go to the sender's address and port.
pub(crate) fn serve_udp(socket: UdpSocket, firmware: Arc<Mutex<Firmware>>, timing: Timing) {
    let mut buffer = [0u8; UDP_RECEIVE_BUFFER];
    loop {
        let (n, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(err) => {
                eprintln!("device-sim zk: udp receive failed: {err}");
                continue;
            }
        };
        let reply = firmware
            .lock()
            .expect("firmware lock")
            .handle(&buffer[..n], Transport::Udp);
        if let Err(err) = send_paced(&reply, timing.pacing, |packet| {
            socket.send_to(packet, peer).map(drop)
        }) {
            eprintln!("device-sim zk: udp send to {peer} failed: {err}");
        }
    }
}

/// Sends each packet of a reply with one write, sleeping `pacing` between packets.
pub(crate) fn send_paced(
    reply: &Reply,
    pacing: Duration,
    send: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    send_paced_with(
        reply,
        pacing,
        |pause| {
            std::thread::sleep(pause);
            Ok(())
        },
        send,
    )
}

/// [`send_paced`] with its own way of waiting between packets (`pause`), which may end the
/// reply with an error.
fn send_paced_with(
    reply: &Reply,
    pacing: Duration,
    mut pause: impl FnMut(Duration) -> std::io::Result<()>,
    mut send: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for (index, packet) in reply.packets.iter().enumerate() {
        if index > 0 && !pacing.is_zero() {
            pause(pacing)?;
        }
        send(&packet.encode())?;
    }
    Ok(())
}

/// Waits `pause` between the packets of a reply, but ends the reply as soon as the client
/// hangs up: the session's end is then recorded when the client left, not a pacing interval
/// later (the lock tests compare session ends with the next client's start).
fn pause_unless_hung_up(stream: &TcpStream, pause: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + pause;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let mut fd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: poll(2) on one pollfd we own, for a socket that outlives the call.
        let ready = unsafe { libc::poll(&mut fd, 1, millis) };
        if ready > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return Err(std::io::Error::new(
                ErrorKind::ConnectionAborted,
                "the client hung up during the reply",
            ));
        }
        if ready < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            return Err(std::io::Error::last_os_error());
        }
    }
}
