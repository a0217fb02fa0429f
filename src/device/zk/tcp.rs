//! ZK over TCP: every packet behind the 8-byte `50 50 82 7D <len>` prefix, written in one send
//! (firmware reads the prefix with a single `recv`), read back through the reassembler because a
//! socket read may hold half a frame or several.

use super::link::{by_deadline, invalid, LinkError};
use device_protocols::zk::{frame_tcp, Incoming, Packet, RequestBytes, TcpReassembler};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The debug line logged when a TCP session to a terminal opens, with the local address the
/// terminal sees as its peer (`local=`). The lock tests join it with the device's own session
/// record; keep the words stable.
pub const SESSION_OPENED: &str = "zk tcp session opened";

/// Socket read size; a paced firmware fragment is about 1 KiB, an unpaced burst much more.
const READ_BUFFER: usize = 64 * 1024;

/// An open TCP connection to a terminal.
pub(super) struct TcpLink {
    target: String,
    stream: TcpStream,
    reassembler: TcpReassembler,
    buffer: Vec<u8>,
}

impl TcpLink {
    /// Connects to `target` (`host:port`) within `timeout`.
    pub(super) async fn connect(target: &str, timeout: Duration) -> Result<TcpLink, LinkError> {
        let unreachable = |source| LinkError::Unreachable {
            target: format!("tcp {target}"),
            source,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(unreachable(err)),
            Err(_) => {
                return Err(unreachable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no TCP connection within {timeout:?}"),
                )))
            }
        };
        stream.set_nodelay(true)?;
        // The terminal sees this local address as its peer: the line lets a session the device
        // recorded be matched with the lock (the enclosing span's fencing token) this agent held.
        if let Ok(local) = stream.local_addr() {
            tracing::debug!(local = %local, terminal = target, "{SESSION_OPENED}");
        }
        Ok(TcpLink {
            target: target.to_string(),
            stream,
            reassembler: TcpReassembler::new(),
            buffer: vec![0; READ_BUFFER],
        })
    }

    /// The `host:port` this link connected to.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// Writes one framed packet.
    pub(super) async fn send(&mut self, packet: &RequestBytes) -> Result<(), LinkError> {
        self.stream.write_all(&frame_tcp(packet.as_bytes())).await?;
        Ok(())
    }

    /// Reads until one whole packet is buffered.
    pub(super) async fn recv(&mut self, deadline: Instant) -> Result<(Incoming, usize), LinkError> {
        loop {
            if let Some(bytes) = self.reassembler.next_packet()? {
                let wire_len = bytes.len() + device_protocols::zk::framing::TCP_PREFIX_LEN;
                return Ok((Packet::decode(&bytes).map_err(invalid)?, wire_len));
            }
            let read = by_deadline(deadline, async {
                Ok(self.stream.read(&mut self.buffer).await?)
            })
            .await?;
            if read == 0 {
                return Err(LinkError::Closed);
            }
            self.reassembler.push(&self.buffer[..read]);
        }
    }
}
