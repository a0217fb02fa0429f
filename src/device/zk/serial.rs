//! ZK over RS232/RS485 through tokio-serial, with the **experimental** serial frame (one leaked
//! firmware tree describes it; no capture has confirmed it yet).
//!
//! Two line-specific rules: frames from another RS485 address (another terminal on the bus) or
//! with a bad outer checksum (line noise) are skipped, not taken as answers; and a read that
//! returns zero bytes means the adapter is gone. On Linux an unplugged USB adapter returns
//! `Ok(0)` forever, so treating it as "no data yet" would spin a core at 100 %.

use super::link::{by_deadline, invalid, LinkError};
use device_protocols::zk::{frame_serial, Incoming, Packet, RequestBytes, SerialReassembler};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};

/// An open serial line to one terminal (RS232) or one address on a bus (RS485). Generic over
/// the port only so the end-of-file rule can be tested with an in-memory pipe.
pub(super) struct SerialLink<P = SerialStream> {
    port: P,
    path: PathBuf,
    address: u8,
    reassembler: SerialReassembler,
    buffer: Vec<u8>,
    skipped_frames: u64,
}

impl SerialLink {
    /// Opens `path` at `baud`, 8N1, for the device at RS485 `address` (1 on RS232).
    pub(super) fn open(path: &Path, baud: u32, address: u8) -> Result<SerialLink, LinkError> {
        let port = tokio_serial::new(path.to_string_lossy(), baud)
            .open_native_async()
            .map_err(|err| LinkError::Unreachable {
                target: format!("serial {}", path.display()),
                source: err.into(),
            })?;
        Ok(SerialLink::over(port, path, address))
    }
}

impl<P: AsyncRead + AsyncWrite + Unpin> SerialLink<P> {
    /// A link over an already open port.
    fn over(port: P, path: &Path, address: u8) -> SerialLink<P> {
        SerialLink {
            port,
            path: path.to_path_buf(),
            address,
            reassembler: SerialReassembler::new(),
            buffer: vec![0; 4096],
            skipped_frames: 0,
        }
    }

    /// Writes one framed packet addressed to this device.
    pub(super) async fn send(&mut self, packet: &RequestBytes) -> Result<(), LinkError> {
        self.port
            .write_all(&frame_serial(self.address, packet.as_bytes()))
            .await?;
        self.port.flush().await?;
        Ok(())
    }

    /// Reads until a valid frame from this device's address is complete.
    pub(super) async fn recv(&mut self, deadline: Instant) -> Result<(Incoming, usize), LinkError> {
        loop {
            while let Some(frame) = self.reassembler.next_frame() {
                if frame.address != self.address || !frame.checksum_valid {
                    self.skipped_frames += 1;
                    tracing::debug!(
                        port = %self.path.display(),
                        address = frame.address,
                        checksum_valid = frame.checksum_valid,
                        skipped = self.skipped_frames,
                        "skipped a serial frame not for us or damaged"
                    );
                    continue;
                }
                let wire_len = frame.packet.len() + device_protocols::zk::serial::SERIAL_HEADER_LEN;
                return Ok((Packet::decode(&frame.packet).map_err(invalid)?, wire_len));
            }
            let read = by_deadline(deadline, async {
                Ok(self.port.read(&mut self.buffer).await?)
            })
            .await?;
            if read == 0 {
                return Err(LinkError::DeviceGone {
                    port: self.path.display().to_string(),
                });
            }
            self.reassembler.push(&self.buffer[..read]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_protocols::zk::checksum::checksum;
    use device_protocols::zk::Code;
    use std::time::Duration;

    /// A device's `ACK_OK` for session 9, written out byte by byte: agent code (tests included)
    /// cannot encode raw packets, only requests.
    fn reply(address: u8, reply_id: u16) -> Vec<u8> {
        let mut packet = Vec::new();
        packet.extend_from_slice(&Code::ACK_OK.value().to_le_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(&9u16.to_le_bytes());
        packet.extend_from_slice(&reply_id.to_le_bytes());
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_le_bytes());
        frame_serial(address, &packet)
    }

    /// An unplugged USB adapter reads as end of file forever: the link must report the device as
    /// gone at once instead of waiting out (or spinning until) the deadline.
    #[tokio::test]
    async fn end_of_file_is_device_gone_not_a_spin() {
        let (ours, theirs) = tokio::io::duplex(64);
        drop(theirs);
        let mut link = SerialLink::over(ours, Path::new("/dev/ttyUSB9"), 1);
        let started = std::time::Instant::now();
        let deadline = Instant::now() + Duration::from_secs(30);
        let err = link.recv(deadline).await.unwrap_err();
        assert!(matches!(err, LinkError::DeviceGone { .. }), "{err}");
        assert!(err.to_string().contains("/dev/ttyUSB9"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the deadline"
        );
    }

    #[tokio::test]
    async fn skips_frames_for_other_addresses_and_damaged_frames() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut link = SerialLink::over(ours, Path::new("/dev/pts/9"), 3);
        let mut damaged = reply(3, 1);
        damaged[10] ^= 0x55;
        theirs.write_all(&reply(4, 1)).await.unwrap();
        theirs.write_all(&damaged).await.unwrap();
        theirs.write_all(&reply(3, 2)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (incoming, _) = link.recv(deadline).await.unwrap();
        assert_eq!(incoming.packet.reply_id, 2);
        assert_eq!(link.skipped_frames, 2);
    }
}
