//! Client-side session bookkeeping: session id, reply ids and reply checks.
//!
//! The device assigns the session id in its `CONNECT` reply and looks sessions up by that id,
//! not by socket. Reply ids are the client's: they must increase (wrapping 65535 → 0), a repeated
//! one makes the device resend its cached reply instead of executing again, and a lower one is
//! dropped. This type owns those rules so a driver only moves bytes and waits.

use super::code::Code;
use super::packet::{Packet, RequestPacket};
use super::request::Request;
use super::time::ZkTime;

/// Where a session stands in the connect/auth handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No `CONNECT` reply yet.
    Connecting,
    /// The device demands the comm key (`ACK_UNAUTH`); send [`Request::Auth`].
    NeedsAuth,
    /// Commands may be sent.
    Ready,
}

/// A reply that is not what the request needed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// The device refused the comm key.
    #[error("the device rejected the comm key (ACK_UNAUTH); set the device's comm key in the agent config")]
    Unauthorized,
    /// The device does not know the command.
    #[error("the device does not support {0} (ACK_UNKNOWN)")]
    Unsupported(Code),
    /// The device answered with an error.
    #[error(
        "the device answered {request} with ACK_ERROR (detail {detail}); the operation was refused"
    )]
    Refused {
        /// What was asked.
        request: Code,
        /// Firmware's reason code from the session field.
        detail: u16,
    },
    /// Any other reply code.
    #[error("the device answered {request} with {reply}, which this driver does not expect")]
    Unexpected {
        /// What was asked.
        request: Code,
        /// What came back.
        reply: Code,
    },
    /// The reply carried too little data.
    #[error("the device's reply to {request} carried {len} bytes, too few to decode")]
    ShortReply {
        /// What was asked.
        request: Code,
        /// Bytes received.
        len: usize,
    },
}

/// One client session with one device.
#[derive(Clone, Debug)]
pub struct ClientSession {
    session_id: u16,
    last_reply_id: u16,
    last_code: Code,
    state: SessionState,
}

impl Default for ClientSession {
    fn default() -> ClientSession {
        ClientSession::new()
    }
}

impl ClientSession {
    /// A session before `CONNECT`. The first request gets reply id 0, as pyzk's does.
    pub fn new() -> ClientSession {
        ClientSession {
            session_id: 0,
            last_reply_id: u16::MAX,
            last_code: Code::CONNECT,
            state: SessionState::Connecting,
        }
    }

    /// The device-assigned session id (0 before the connect reply).
    pub fn session_id(&self) -> u16 {
        self.session_id
    }

    /// The handshake state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Builds the next packet for `request` with a fresh reply id.
    ///
    /// To retransmit a single-packet command over UDP, resend the previous bytes unchanged (same
    /// reply id ⇒ the device answers from its cache). To re-request a lost bulk chunk, call this
    /// again: the cache holds only the chunk's final ACK, so a new reply id is required.
    pub fn packet(&mut self, request: &Request) -> RequestPacket {
        self.last_reply_id = self.last_reply_id.wrapping_add(1);
        self.last_code = request.code();
        // CONNECT always opens a fresh session, even when this object is reused to reconnect.
        let session_id = match request {
            Request::Connect => 0,
            _ => self.session_id,
        };
        RequestPacket::of(Packet::new(
            request.code(),
            session_id,
            self.last_reply_id,
            request.data(self.session_id),
        ))
    }

    /// The event code of a realtime event packet (code 500, the code in the session field),
    /// `None` for anything else.
    pub fn event_code(packet: &Packet) -> Option<u16> {
        (packet.code == Code::REG_EVENT).then_some(packet.session_id)
    }

    /// The acknowledgement of a realtime event: `ACK_OK` with this session's id and the event's
    /// reply id (research §3.6: firmware re-sends the oldest event until exactly this arrives).
    /// It does not advance the reply id: the terminal sends nothing back.
    pub fn event_ack(&self, event: &Packet) -> RequestPacket {
        RequestPacket::of(Packet::new(
            Code::ACK_OK,
            self.session_id,
            event.reply_id,
            Vec::new(),
        ))
    }

    /// Whether `packet` answers the most recent request (same reply id). Anything else is a stale
    /// duplicate, or a realtime event, and must be skipped, not treated as the answer.
    pub fn is_reply_to_last(&self, packet: &Packet) -> bool {
        packet.reply_id == self.last_reply_id && packet.code != Code::REG_EVENT
    }

    /// Takes the `CONNECT` reply: adopts the session id and moves to `Ready` or `NeedsAuth`.
    pub fn on_connect_reply(&mut self, reply: &Packet) -> Result<SessionState, ReplyError> {
        self.state = match reply.code {
            Code::ACK_OK => SessionState::Ready,
            Code::ACK_UNAUTH => SessionState::NeedsAuth,
            _ => return Err(self.unexpected(reply)),
        };
        self.session_id = reply.session_id;
        Ok(self.state)
    }

    /// Takes the `AUTH` reply.
    pub fn on_auth_reply(&mut self, reply: &Packet) -> Result<(), ReplyError> {
        self.expect_ok(reply)?;
        self.state = SessionState::Ready;
        Ok(())
    }

    /// Checks that `reply` is `ACK_OK` and returns its data.
    pub fn expect_ok<'a>(&self, reply: &'a Packet) -> Result<&'a [u8], ReplyError> {
        match reply.code {
            Code::ACK_OK => Ok(&reply.data),
            _ => Err(self.unexpected(reply)),
        }
    }

    /// Decodes the `GET_TIME` reply.
    pub fn time_reply(&self, reply: &Packet) -> Result<ZkTime, ReplyError> {
        let data = self.expect_ok(reply)?;
        let bytes: [u8; 4] =
            data.get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(ReplyError::ShortReply {
                    request: self.last_code,
                    len: data.len(),
                })?;
        Ok(ZkTime(u32::from_le_bytes(bytes)))
    }

    /// Decodes an `OPTIONS_RRQ` reply `"Name=Value\0"` into the value.
    pub fn option_reply(&self, reply: &Packet) -> Result<String, ReplyError> {
        let data = self.expect_ok(reply)?;
        let text = data.split(|&b| b == 0).next().unwrap_or_default();
        let text = String::from_utf8_lossy(text);
        Ok(match text.split_once('=') {
            Some((_, value)) => value.to_owned(),
            None => text.into_owned(),
        })
    }

    /// Decodes a NUL-terminated string reply such as `GET_VERSION`.
    pub fn string_reply(&self, reply: &Packet) -> Result<String, ReplyError> {
        let data = self.expect_ok(reply)?;
        let text = data.split(|&b| b == 0).next().unwrap_or_default();
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    fn unexpected(&self, reply: &Packet) -> ReplyError {
        match reply.code {
            Code::ACK_UNAUTH => ReplyError::Unauthorized,
            Code::ACK_UNKNOWN => ReplyError::Unsupported(self.last_code),
            Code::ACK_ERROR => ReplyError::Refused {
                request: self.last_code,
                detail: reply.session_id,
            },
            other => ReplyError::Unexpected {
                request: self.last_code,
                reply: other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_ids_increase_and_wrap_and_connect_uses_session_zero() {
        let mut session = ClientSession::new();
        assert_eq!(session.packet(&Request::Connect).reply_id, 0);
        let reply = Packet::new(Code::ACK_OK, 77, 0, Vec::new());
        session.on_connect_reply(&reply).unwrap();
        let sizes = session.packet(&Request::GetFreeSizes);
        assert_eq!((sizes.session_id, sizes.reply_id), (77, 1));
        for _ in 0..u16::MAX {
            session.packet(&Request::GetTime);
        }
        assert_eq!(
            session.packet(&Request::GetTime).reply_id,
            1,
            "wraps 65535 -> 0"
        );
        assert_eq!(session.packet(&Request::Connect).session_id, 0);
    }

    #[test]
    fn stale_replies_and_events_are_not_answers() {
        let mut session = ClientSession::new();
        let sent = session.packet(&Request::Connect);
        let stale = Packet::new(Code::ACK_OK, 1, sent.reply_id.wrapping_sub(1), Vec::new());
        let event = Packet::new(Code::REG_EVENT, 1, sent.reply_id, Vec::new());
        let answer = Packet::new(Code::ACK_OK, 1, sent.reply_id, Vec::new());
        assert!(!session.is_reply_to_last(&stale));
        assert!(!session.is_reply_to_last(&event));
        assert!(session.is_reply_to_last(&answer));
    }

    #[test]
    fn error_replies_name_the_request() {
        let mut session = ClientSession::new();
        session.packet(&Request::GetVersion);
        let unknown = Packet::new(Code::ACK_UNKNOWN, 1, 0, Vec::new());
        assert_eq!(
            session.expect_ok(&unknown),
            Err(ReplyError::Unsupported(Code::GET_VERSION))
        );
        let time = Packet::new(Code::ACK_OK, 1, 0, vec![1, 2]);
        assert!(matches!(
            session.time_reply(&time),
            Err(ReplyError::ShortReply { len: 2, .. })
        ));
        let option = Packet::new(Code::ACK_OK, 1, 0, b"~Platform=ZEM760_TFT\0".to_vec());
        assert_eq!(session.option_reply(&option).unwrap(), "ZEM760_TFT");
    }
}
