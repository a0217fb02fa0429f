//! A TCP fault proxy between an MQTT client (an agent) and the broker, over real sockets: the
//! lock tests' nemesis for the network.
//!
//! Each accepted client gets its own connection to the upstream address (the broker, which
//! may be down: the client is then dropped, as the broker would refuse it). Bytes are forwarded
//! one MQTT control packet at a time in each direction, so that the faults below act on whole
//! packets and never tear one (a stream that is not MQTT is forwarded as it is read). What
//! happens to a packet is the proxy's current [`Fault`], which the test changes at any time:
//!
//! - [`Fault::Pass`]: forwarded at once;
//! - [`Fault::BlackHole`]: nothing is read or forwarded, both ways (a partition: the sockets'
//!   buffers fill and keep-alives go unanswered; what was in flight is delivered after the
//!   heal, as TCP would, unless a side gave up on the connection meanwhile);
//! - [`Fault::Delay`]: each packet is held that long after it was read;
//! - [`Fault::Duplicate`]: every PUBLISH is sent twice (QoS 1 is at-least-once: a receiver must
//!   cope);
//! - [`Fault::Reorder`]: a PUBLISH is held back and sent after the packet that follows it
//!   (or after 200 ms if none follows).
//!
//! [`FaultProxy::sever`] closes every open connection, as a broker or NAT timing out would.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a reordered PUBLISH waits for a packet to overtake it.
const REORDER_HOLD: Duration = Duration::from_millis(200);
/// How often a pump looks at the fault while it has nothing to read.
const POLL: Duration = Duration::from_millis(10);

/// What the proxy does to the packets it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward at once.
    Pass,
    /// Forward nothing, either way, until the fault changes.
    BlackHole,
    /// Hold each packet this long after it was read.
    Delay(Duration),
    /// Send every PUBLISH twice.
    Duplicate,
    /// Swap a PUBLISH with the packet that follows it.
    Reorder,
}

/// Counts of what the proxy did, for the test's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Packets forwarded (duplicates counted once).
    pub packets: u64,
    /// PUBLISH packets sent a second time.
    pub duplicated: u64,
    /// PUBLISH packets sent after the packet that followed them.
    pub reordered: u64,
    /// Connections closed by [`FaultProxy::sever`].
    pub severed: u64,
}

struct Shared {
    fault: Mutex<Fault>,
    stop: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
    connections: AtomicU64,
    packets: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    severed: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running proxy on a free loopback port; it stops (and closes every connection) when dropped.
pub struct FaultProxy {
    /// Where clients connect (127.0.0.1).
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream`, passing everything.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            severed: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept_loop(listener, upstream, accepting));
        FaultProxy { port, shared }
    }

    /// Changes what happens to packets from now on (packets already held keep their fate).
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Closes every open connection (both sides see it end); new ones are accepted as before.
    pub fn sever(&self) {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(|p| p.into_inner()));
        for stream in open {
            if stream.shutdown(Shutdown::Both).is_ok() {
                self.shared.severed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            connections: s.connections.load(Ordering::Relaxed),
            packets: s.packets.load(Ordering::Relaxed),
            duplicated: s.duplicated.load(Ordering::Relaxed),
            reordered: s.reordered.load(Ordering::Relaxed),
            severed: s.severed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.sever();
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => continue,
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        // Broker down: the client sees its connection end, as with a refused connect.
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let pair = [&client, &server].map(|s| s.try_clone().expect("clone a proxied socket"));
        {
            let mut open = shared.open.lock().unwrap_or_else(|p| p.into_inner());
            open.retain(|s| s.peer_addr().is_ok());
            open.extend(pair);
        }
        for (from, to) in [(&client, &server), (&server, &client)] {
            let (from, to) = (
                from.try_clone().expect("clone"),
                to.try_clone().expect("clone"),
            );
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || pump(from, to, &shared));
        }
    }
}

/// Forwards `from` → `to` under the current fault until either side ends; then ends both.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut pending: Vec<u8> = Vec::new();
    let mut raw = false;
    let mut held: Option<(Vec<u8>, Instant)> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    let result: std::io::Result<()> = (|| loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fault = shared.fault();
        if fault == Fault::BlackHole {
            std::thread::sleep(POLL);
            continue;
        }
        if let Some((packet, since)) = &held {
            if since.elapsed() >= REORDER_HOLD || fault != Fault::Reorder {
                to.write_all(packet)?;
                held = None;
            }
        }
        let read_at = Instant::now();
        match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => pending.extend_from_slice(&buffer[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => return Err(err),
        }
        // A partition that began while this pump was reading holds what it read.
        if pending.is_empty() || shared.fault() == Fault::BlackHole {
            continue;
        }
        let packets = if raw {
            vec![std::mem::take(&mut pending)]
        } else {
            match split_mqtt(&mut pending) {
                Some(packets) => packets,
                None => {
                    raw = true;
                    vec![std::mem::take(&mut pending)]
                }
            }
        };
        for packet in packets {
            shared.packets.fetch_add(1, Ordering::Relaxed);
            let publish = !raw && packet.first().is_some_and(|b| b >> 4 == 3);
            match shared.fault() {
                Fault::Delay(delay) => {
                    std::thread::sleep(delay.saturating_sub(read_at.elapsed()));
                    to.write_all(&packet)?;
                }
                Fault::Duplicate if publish => {
                    // Counted first: a test reading the copies then sees the count.
                    shared.duplicated.fetch_add(1, Ordering::Relaxed);
                    to.write_all(&packet)?;
                    to.write_all(&packet)?;
                }
                Fault::Reorder if publish && held.is_none() => {
                    held = Some((packet, Instant::now()));
                }
                Fault::Reorder => {
                    to.write_all(&packet)?;
                    if let Some((earlier, _)) = held.take() {
                        shared.reordered.fetch_add(1, Ordering::Relaxed);
                        to.write_all(&earlier)?;
                    }
                }
                _ => to.write_all(&packet)?,
            }
        }
    })();
    let _ = result;
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Takes every complete MQTT control packet off the front of `bytes` (fixed header byte,
/// variable-length "remaining length", body); `None` when the bytes cannot be MQTT.
fn split_mqtt(bytes: &mut Vec<u8>) -> Option<Vec<Vec<u8>>> {
    let mut packets = Vec::new();
    loop {
        if bytes.len() < 2 {
            return Some(packets);
        }
        let mut length = 0usize;
        let mut shift = 0;
        let mut header = 1;
        loop {
            let Some(&byte) = bytes.get(header) else {
                return Some(packets);
            };
            length |= usize::from(byte & 0x7f) << shift;
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return None;
            }
        }
        let total = header + length;
        if bytes.len() < total {
            return Some(packets);
        }
        packets.push(bytes.drain(..total).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_packets_are_split_whole_and_a_partial_one_waits() {
        // PINGREQ, then a PUBLISH with 130 bytes of body (two-byte remaining length), then half
        // of another PINGREQ.
        let mut bytes = vec![0xC0, 0x00, 0x30, 0x82, 0x01];
        bytes.extend(std::iter::repeat_n(7u8, 130));
        bytes.push(0xC0);
        let packets = split_mqtt(&mut bytes).unwrap();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0], [0xC0, 0x00]);
        assert_eq!(packets[1].len(), 3 + 130);
        assert_eq!(bytes, [0xC0]);
    }

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn read_exactly(stream: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
        let mut out = vec![0u8; n];
        stream.read_exact(&mut out)?;
        Ok(out)
    }

    #[test]
    fn packets_pass_vanish_in_a_black_hole_come_back_after_it_and_are_duplicated() {
        let proxy = FaultProxy::start(echo_server());
        let mut client = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let publish = [0x30, 0x03, 0, 1, b'x'];
        client.write_all(&publish).unwrap();
        // Out and back: a PUBLISH each way.
        assert_eq!(read_exactly(&mut client, 5).unwrap(), publish);

        proxy.set(Fault::BlackHole);
        client.write_all(&[0xC0, 0x00]).unwrap();
        assert!(read_exactly(&mut client, 2).is_err(), "nothing passes");
        proxy.set(Fault::Pass);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(read_exactly(&mut client, 2).unwrap(), [0xC0, 0x00]);

        proxy.set(Fault::Duplicate);
        client.write_all(&publish).unwrap();
        // Doubled on the way out and each copy doubled on the way back.
        let echoed = read_exactly(&mut client, 20).unwrap();
        assert_eq!(echoed, publish.repeat(4));
        assert_eq!(proxy.stats().duplicated, 3);

        proxy.sever();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        assert!(matches!(client.read_to_end(&mut rest), Ok(0) | Err(_)));
    }
}
