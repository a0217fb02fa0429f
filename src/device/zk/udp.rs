//! ZK over UDP: one bare packet per datagram, one local socket for the whole session (firmware
//! keys UDP sessions by source address and port), and nothing larger than the firmware's
//! 1032-byte receive buffer.

use super::link::{by_deadline, invalid, LinkError};
use device_protocols::zk::{Incoming, Packet, RequestBytes};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The firmware's UDP receive buffer: a longer datagram is truncated and then dropped for its
/// checksum, so the driver refuses to send one.
pub(super) const MAX_DATAGRAM: usize = 1032;

/// Largest datagram accepted from the device (a bulk fragment is 1024 data bytes, but some
/// firmware sends larger ones).
const RECEIVE_BUFFER: usize = 64 * 1024;

/// A UDP "connection" to a terminal.
pub(super) struct UdpLink {
    socket: UdpSocket,
    buffer: Vec<u8>,
}

impl UdpLink {
    /// Binds an ephemeral local port and fixes the peer to `target` (`host:port`).
    pub(super) async fn connect(target: &str) -> Result<UdpLink, LinkError> {
        let unreachable = |source| LinkError::Unreachable {
            target: format!("udp {target}"),
            source,
        };
        let peer = tokio::net::lookup_host(target)
            .await
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| {
                unreachable(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the host name resolved to no address",
                ))
            })?;
        let local = if peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local).await.map_err(unreachable)?;
        socket.connect(peer).await.map_err(unreachable)?;
        Ok(UdpLink {
            socket,
            buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    /// Sends one packet as one datagram.
    pub(super) async fn send(&mut self, packet: &RequestBytes) -> Result<(), LinkError> {
        let packet = packet.as_bytes();
        if packet.len() > MAX_DATAGRAM {
            return Err(LinkError::DatagramTooLarge {
                len: packet.len(),
                max: MAX_DATAGRAM,
            });
        }
        self.socket.send(packet).await?;
        Ok(())
    }

    /// Receives the next datagram. An ICMP "port unreachable" surfaces here as an I/O error.
    pub(super) async fn recv(&mut self, deadline: Instant) -> Result<(Incoming, usize), LinkError> {
        let len = by_deadline(deadline, async {
            Ok(self.socket.recv(&mut self.buffer).await?)
        })
        .await?;
        let bytes = &self.buffer[..len];
        Ok((Packet::decode(bytes).map_err(invalid)?, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_a_datagram_the_firmware_would_truncate() {
        let device = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut link = UdpLink::connect(&device.local_addr().unwrap().to_string())
            .await
            .unwrap();
        // An option read of an n-byte name is an 8-byte header, the name and its NUL.
        let option_read = |name_len: usize| {
            device_protocols::zk::ClientSession::new()
                .packet(&device_protocols::zk::Request::ReadOption(
                    "A".repeat(name_len),
                ))
                .encode()
        };
        let err = link.send(&option_read(MAX_DATAGRAM - 8)).await.unwrap_err();
        assert!(
            matches!(err, LinkError::DatagramTooLarge { len: 1033, .. }),
            "{err}"
        );
        link.send(&option_read(MAX_DATAGRAM - 9)).await.unwrap();
    }
}
