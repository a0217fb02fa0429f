//! The buffered bulk-read state machine (`PREPARE_BUFFER` / `READ_BUFFER`).
//!
//! A dataset comes back in one of two shapes. Small ones arrive inline: the device answers
//! `PREPARE_BUFFER` with one `DATA` packet. Larger ones are announced (`ACK_OK` with the size)
//! and then pulled slice by slice with `READ_BUFFER`; each slice longer than 1024 bytes arrives as
//! `PREPARE_DATA`, any number of `DATA` fragments (their session field is the fragment index, not
//! the session) and a closing `ACK_OK`, while a short slice arrives as a single `DATA`. Slices are
//! requested one at a time: pipelining them (as node-zklib does) stalls real devices.
//!
//! The machine consumes packets that the driver has already matched to the outstanding request
//! ([`crate::zk::ClientSession::is_reply_to_last`]) and tells it what to send next.

use super::code::Code;
use super::packet::Packet;
use super::request::{BulkDataset, Request};

/// Largest slice to request over TCP (what pyzk uses, below the 64 KiB frame limit).
pub const MAX_CHUNK_TCP: u32 = 0xFFC0;
/// Largest slice to request over UDP and serial (keeps a slice to 16 fragments of 1024).
pub const MAX_CHUNK_UDP: u32 = 16 * 1024;

/// Largest dataset a device may announce. The biggest real tables (100,000 × 40-byte records,
/// fingerprint templates of a full terminal) stay well below it; a larger announcement is a
/// corrupt reply and must not make the agent allocate gigabytes (found by fuzzing).
pub const MAX_DATASET_LEN: u32 = 64 * 1024 * 1024;

/// What the driver does after feeding a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkStep {
    /// Send this request (a new reply id) and keep feeding replies.
    Send(Request),
    /// Keep reading: more fragments of the current reply are due.
    AwaitMore,
    /// The whole dataset (length prefix + records) has arrived; send `FreeData` next.
    Complete(Vec<u8>),
}

/// A bulk transfer that went wrong. Every variant means the read is incomplete; the driver frees
/// the buffer, ends the session and reports the read as failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkError {
    /// `ACK_ERROR` to `PREPARE_BUFFER`.
    #[error("the device refused the buffered read of {0:?} (ACK_ERROR, \"RWB not supported\"); some firmware does this above ~1000 users")]
    Refused(BulkDataset),
    /// A reply code that does not belong at this point.
    #[error("bulk read of {dataset:?}: got {code} while {expecting}")]
    Unexpected {
        /// The dataset being read.
        dataset: BulkDataset,
        /// The code received.
        code: Code,
        /// What the machine was waiting for.
        expecting: &'static str,
    },
    /// A size field is impossible.
    #[error("bulk read of {dataset:?}: {detail}")]
    Malformed {
        /// The dataset being read.
        dataset: BulkDataset,
        /// What was wrong.
        detail: String,
    },
    /// The slice closed before all its bytes arrived (a short chunk).
    #[error("bulk read of {dataset:?}: slice at offset {offset} closed after {received} of {expected} bytes; the device or link dropped data")]
    ShortSlice {
        /// The dataset being read.
        dataset: BulkDataset,
        /// Slice offset.
        offset: u32,
        /// Bytes received.
        received: usize,
        /// Bytes requested.
        expected: u32,
    },
    /// More bytes arrived than were requested.
    #[error("bulk read of {dataset:?}: slice at offset {offset} overflowed its {expected} bytes")]
    Overflow {
        /// The dataset being read.
        dataset: BulkDataset,
        /// Slice offset.
        offset: u32,
        /// Bytes requested.
        expected: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    AwaitingBuffer,
    Slice {
        offset: u32,
        len: u32,
        announced: bool,
        received: usize,
    },
    Done,
}

/// One bulk read in progress.
#[derive(Clone, Debug)]
pub struct BulkRead {
    dataset: BulkDataset,
    max_chunk: u32,
    total: u32,
    buffer: Vec<u8>,
    state: State,
}

impl BulkRead {
    /// Starts a read; send the returned request first. `max_chunk` is [`MAX_CHUNK_TCP`] or
    /// [`MAX_CHUNK_UDP`] (or smaller, e.g. for a slow link).
    pub fn start(dataset: BulkDataset, max_chunk: u32) -> (BulkRead, Request) {
        let read = BulkRead {
            dataset,
            max_chunk: max_chunk.max(1),
            total: 0,
            buffer: Vec::new(),
            state: State::AwaitingBuffer,
        };
        (read, Request::PrepareBuffer(dataset))
    }

    /// Bytes received so far and the announced total (0 until announced), for progress reports.
    pub fn progress(&self) -> (usize, u32) {
        (self.buffer.len(), self.total)
    }

    /// Feeds one reply packet.
    pub fn on_packet(&mut self, packet: &Packet) -> Result<BulkStep, BulkError> {
        match self.state.clone() {
            State::AwaitingBuffer => self.on_buffer_reply(packet),
            State::Slice {
                offset,
                len,
                announced,
                received,
            } => self.on_slice_packet(packet, offset, len, announced, received),
            State::Done => Err(self.unexpected(packet, "nothing (the read is complete)")),
        }
    }

    fn on_buffer_reply(&mut self, packet: &Packet) -> Result<BulkStep, BulkError> {
        match packet.code {
            Code::DATA => {
                self.state = State::Done;
                Ok(BulkStep::Complete(packet.data.clone()))
            }
            Code::ACK_OK => {
                let size = packet
                    .data
                    .get(1..5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| {
                        self.malformed(format!(
                            "buffer announcement of {} bytes is shorter than 5",
                            packet.data.len()
                        ))
                    })?;
                if !(4..=MAX_DATASET_LEN).contains(&size) {
                    return Err(self.malformed(format!(
                        "announced buffer of {size} bytes is outside 4..={MAX_DATASET_LEN}"
                    )));
                }
                self.total = size;
                // Grow with the data actually received; reserve only a modest head start.
                self.buffer.reserve(size.min(1 << 20) as usize);
                Ok(BulkStep::Send(self.next_slice(0)))
            }
            Code::ACK_ERROR => Err(BulkError::Refused(self.dataset)),
            _ => Err(self.unexpected(packet, "the buffer announcement or inline data")),
        }
    }

    fn on_slice_packet(
        &mut self,
        packet: &Packet,
        offset: u32,
        len: u32,
        announced: bool,
        received: usize,
    ) -> Result<BulkStep, BulkError> {
        match packet.code {
            Code::PREPARE_DATA if !announced && received == 0 => {
                let size = packet
                    .data
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                if size != Some(len) {
                    return Err(self.malformed(format!(
                        "PREPARE_DATA announces {size:?} bytes for a {len}-byte slice"
                    )));
                }
                self.state = State::Slice {
                    offset,
                    len,
                    announced: true,
                    received,
                };
                Ok(BulkStep::AwaitMore)
            }
            Code::DATA => {
                let received = received + packet.data.len();
                if received > len as usize {
                    return Err(BulkError::Overflow {
                        dataset: self.dataset,
                        offset,
                        expected: len,
                    });
                }
                self.buffer.extend_from_slice(&packet.data);
                self.state = State::Slice {
                    offset,
                    len,
                    announced,
                    received,
                };
                if received == len as usize && !announced {
                    return Ok(self.slice_done(offset, len));
                }
                Ok(BulkStep::AwaitMore)
            }
            Code::ACK_OK if announced => {
                if received != len as usize {
                    return Err(BulkError::ShortSlice {
                        dataset: self.dataset,
                        offset,
                        received,
                        expected: len,
                    });
                }
                Ok(self.slice_done(offset, len))
            }
            _ => Err(self.unexpected(packet, "slice data")),
        }
    }

    fn slice_done(&mut self, offset: u32, len: u32) -> BulkStep {
        let next = offset + len;
        if next >= self.total {
            self.state = State::Done;
            BulkStep::Complete(std::mem::take(&mut self.buffer))
        } else {
            BulkStep::Send(self.next_slice(next))
        }
    }

    fn next_slice(&mut self, offset: u32) -> Request {
        let len = (self.total - offset).min(self.max_chunk);
        self.state = State::Slice {
            offset,
            len,
            announced: false,
            received: 0,
        };
        Request::ReadBuffer { offset, len }
    }

    fn unexpected(&self, packet: &Packet, expecting: &'static str) -> BulkError {
        BulkError::Unexpected {
            dataset: self.dataset,
            code: packet.code,
            expecting,
        }
    }

    fn malformed(&self, detail: String) -> BulkError {
        BulkError::Malformed {
            dataset: self.dataset,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression for a fuzzer finding: a 4 GiB announcement used to be reserved up front.
    #[test]
    fn refuses_an_absurd_announcement_without_allocating_it() {
        let (mut read, _) = BulkRead::start(BulkDataset::Users, MAX_CHUNK_TCP);
        let mut data = vec![0u8];
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        let announce = Packet::new(Code::ACK_OK, 0, 1, data);
        assert!(matches!(
            read.on_packet(&announce),
            Err(BulkError::Malformed { .. })
        ));
    }
}
