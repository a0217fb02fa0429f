//! The byte transports under a ZK session, behind one small interface: send one encoded ZK
//! packet, receive the next one by a deadline.
//!
//! The three transports differ only in framing and in what a dead peer looks like, so each lives
//! in its own module ([`super::tcp`], [`super::udp`], [`super::serial`]) and this enum dispatches
//! to them. Everything above this layer (reply matching, bulk reads, the session order) is
//! transport-blind.

use super::serial::SerialLink;
use super::tcp::TcpLink;
use super::udp::UdpLink;
use device_protocols::zk::{FramingError, Incoming, RequestBytes, MAX_CHUNK_TCP, MAX_CHUNK_UDP};
use std::time::Duration;
use tokio::time::Instant;

/// Why a transport could not deliver a packet. Every variant ends the exchange; whether the
/// session can still be closed cleanly depends on which one.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The device could not be reached at all.
    #[error("cannot reach the device at {target}: {source}; check the address, cabling and that the terminal is on")]
    Unreachable {
        /// The address or serial port.
        target: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The peer closed the TCP connection.
    #[error("the device closed the connection")]
    Closed,
    /// The serial adapter reports end of file: on Linux an unplugged USB adapter returns
    /// zero-length reads forever, so this is taken as "device gone", never retried in a loop.
    #[error("the serial adapter {port} returned end of file (unplugged USB adapter?); re-plug it or check /dev/serial/by-id")]
    DeviceGone {
        /// The serial port path.
        port: String,
    },
    /// Nothing answered within the timeout.
    #[error("no reply within {0:?}")]
    TimedOut(Duration),
    /// The byte stream cannot be framed any more.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// A packet too large for one datagram (the firmware's UDP buffer is 1032 bytes).
    #[error("a {len}-byte packet does not fit the device's {max}-byte UDP receive buffer")]
    DatagramTooLarge {
        /// Packet length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Any other I/O error on an established link.
    #[error("I/O error on the link: {0}")]
    Io(#[from] std::io::Error),
}

impl LinkError {
    /// True when the link can no longer carry anything (so closing the session needs a new one).
    pub fn is_broken(&self) -> bool {
        !matches!(
            self,
            LinkError::TimedOut(_) | LinkError::DatagramTooLarge { .. }
        )
    }
}

/// One open transport to one device.
pub(super) enum Link {
    /// TCP with the 8-byte prefix.
    Tcp(TcpLink),
    /// One packet per UDP datagram.
    Udp(UdpLink),
    /// The experimental serial frame, RS232 or RS485.
    Serial(SerialLink),
}

impl Link {
    /// Sends one encoded ZK request in a single write. Only a [`RequestBytes`] (built from a
    /// `zk::Request`, which has no delete or clear) can be sent: no raw bytes reach a link.
    pub(super) async fn send(&mut self, packet: &RequestBytes) -> Result<(), LinkError> {
        match self {
            Link::Tcp(link) => link.send(packet).await,
            Link::Udp(link) => link.send(packet).await,
            Link::Serial(link) => link.send(packet).await,
        }
    }

    /// The next packet from the device, or [`LinkError::TimedOut`] at `deadline`. Returns the
    /// packet and the number of bytes it took on the wire.
    pub(super) async fn recv(&mut self, deadline: Instant) -> Result<(Incoming, usize), LinkError> {
        match self {
            Link::Tcp(link) => link.recv(deadline).await,
            Link::Udp(link) => link.recv(deadline).await,
            Link::Serial(link) => link.recv(deadline).await,
        }
    }

    /// Largest `READ_BUFFER` slice to ask for: TCP takes ~64 KiB, datagram links 16 KiB.
    pub(super) fn max_chunk(&self) -> u32 {
        match self {
            Link::Tcp(_) => MAX_CHUNK_TCP,
            Link::Udp(_) | Link::Serial(_) => MAX_CHUNK_UDP,
        }
    }

    /// Whether a lost packet is normal here, so an unanswered single-packet command is worth
    /// resending (the device answers a repeated reply id from its cache, without re-executing).
    pub(super) fn loses_packets(&self) -> bool {
        matches!(self, Link::Udp(_) | Link::Serial(_))
    }

    /// The transport's name for logs and reports.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Link::Tcp(_) => "tcp",
            Link::Udp(_) => "udp",
            Link::Serial(_) => "serial",
        }
    }

    /// A fresh TCP connection to the same device, for closing a session whose connection broke:
    /// firmware keys sessions by id, not by socket, so `EXIT` on a new connection frees it.
    /// `None` for the other transports, which have no connection to replace.
    pub(super) async fn reopen(&self, timeout: Duration) -> Option<Result<Link, LinkError>> {
        match self {
            Link::Tcp(link) => Some(
                TcpLink::connect(link.target(), timeout)
                    .await
                    .map(Link::Tcp),
            ),
            Link::Udp(_) | Link::Serial(_) => None,
        }
    }
}

/// Runs `io` until `deadline`, mapping expiry to [`LinkError::TimedOut`] with the time allowed.
pub(super) async fn by_deadline<T>(
    deadline: Instant,
    io: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    let allowed = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout_at(deadline, io).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::TimedOut(allowed)),
    }
}

/// A framed packet shorter than a ZK header: whatever sent it is not a ZK device.
pub(super) fn invalid(err: device_protocols::zk::PacketError) -> LinkError {
    LinkError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}
