//! One AI06 connection seen from the agent's side: send a command, wait for its reply.
//!
//! AiFace replies carry no request id, only the command name (`ret`), so exactly one command
//! may be in flight per device. [`AifaceSession::exchange`] holds a FIFO lock for the whole
//! exchange; a reply that does not answer the command in flight (a late reply to a command that
//! already timed out, say) is logged and ignored rather than taken for the current answer.

use crate::device::registry::DeviceRecord;
use device_protocols::aiface::{Command, DeviceReply, OutgoingFrame, ServerReply};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Attempts per command (the first try and two retries).
pub const MAX_ATTEMPTS: u32 = 3;

/// Why an exchange produced no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The connection closed (or was replaced by a newer one from the same device).
    #[error("the connection to the device closed")]
    Closed,
    /// The device lock is no longer held: the command was not sent.
    #[error(transparent)]
    Fenced(#[from] crate::sync::lock::Fenced),
    /// No reply within the timeout on any attempt.
    #[error("no reply to {command} after {attempts} attempts of {timeout:?} each")]
    TimedOut {
        /// The command's name.
        command: String,
        /// Attempts made.
        attempts: u32,
        /// Timeout of each attempt.
        timeout: Duration,
    },
}

/// Timeouts of a session: photos take longer than everything else.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For ordinary commands.
    pub normal: Duration,
    /// For commands whose reply may carry a photo.
    pub large: Duration,
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<DeviceReply>,
}

struct Shared {
    device_id: String,
    registration: DeviceRecord,
    outgoing: mpsc::Sender<OutgoingFrame>,
    pending: Mutex<Option<Pending>>,
    turn: tokio::sync::Mutex<()>,
    closed: watch::Sender<bool>,
    timeouts: Timeouts,
    round_trips: AtomicU64,
    bytes_received: AtomicU64,
}

/// A handle to one live AI06 connection. Cheap to clone.
#[derive(Clone)]
pub struct AifaceSession {
    shared: Arc<Shared>,
}

impl AifaceSession {
    /// A session writing its frames to `outgoing` (the connection's writer).
    pub(super) fn new(
        device_id: &str,
        registration: DeviceRecord,
        outgoing: mpsc::Sender<OutgoingFrame>,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                device_id: device_id.to_string(),
                registration,
                outgoing,
                pending: Mutex::new(None),
                turn: tokio::sync::Mutex::new(()),
                closed: watch::channel(false).0,
                timeouts,
                round_trips: AtomicU64::new(0),
                bytes_received: AtomicU64::new(0),
            }),
        }
    }

    /// The configured device id.
    pub fn device_id(&self) -> &str {
        &self.shared.device_id
    }

    /// The serial number the device registered with.
    pub fn sn(&self) -> &str {
        &self.shared.registration.sn
    }

    /// What the device said about itself when it registered on this connection.
    pub fn registration(&self) -> &DeviceRecord {
        &self.shared.registration
    }

    /// Sends `command` and waits for its reply, retrying on timeout; commands from several
    /// callers queue in arrival order.
    pub async fn exchange(&self, command: Command) -> Result<DeviceReply, ExchangeError> {
        let _turn = self.shared.turn.lock().await;
        let timeout = if command.expects_large_reply() {
            self.shared.timeouts.large
        } else {
            self.shared.timeouts.normal
        };
        let mut closed = self.shared.closed.subscribe();
        for attempt in 1..=MAX_ATTEMPTS {
            if *closed.borrow() {
                return Err(ExchangeError::Closed);
            }
            let (tx, rx) = oneshot::channel();
            *self.pending() = Some(Pending {
                command: command.clone(),
                reply: tx,
            });
            crate::sync::lock::fence::check_current()?;
            let frame = OutgoingFrame::from(&command);
            if self.shared.outgoing.send(frame).await.is_err() {
                self.pending().take();
                return Err(ExchangeError::Closed);
            }
            tokio::select! {
                reply = rx => return reply.map_err(|_| ExchangeError::Closed),
                _ = closed.wait_for(|closed| *closed) => {
                    self.pending().take();
                    return Err(ExchangeError::Closed);
                }
                _ = tokio::time::sleep(timeout) => {
                    self.pending().take();
                    tracing::warn!(
                        device = %self.shared.device_id,
                        command = %command.name(),
                        attempt,
                        "no reply within {timeout:?}"
                    );
                }
            }
        }
        Err(ExchangeError::TimedOut {
            command: command.name().to_string(),
            attempts: MAX_ATTEMPTS,
            timeout,
        })
    }

    /// Hands a reply from the connection to the waiting exchange. Returns `false` (and the
    /// caller logs it) when nothing waits for it or it answers a different command.
    pub(super) fn deliver(&self, reply: DeviceReply, frame_len: usize) -> bool {
        let mut pending = self.pending();
        let answers = pending
            .as_ref()
            .is_some_and(|waiting| reply.answers(&waiting.command));
        if !answers {
            return false;
        }
        let waiting = pending.take().expect("checked above");
        self.shared.round_trips.fetch_add(1, Ordering::Relaxed);
        self.shared
            .bytes_received
            .fetch_add(frame_len as u64, Ordering::Relaxed);
        let _ = waiting.reply.send(reply);
        true
    }

    /// Sends the agent's answer to a device report. Only a [`ServerReply`] can be sent this way,
    /// never hand-written text (pings are the connection writer's own).
    pub(super) async fn send(&self, reply: &ServerReply) -> Result<(), ExchangeError> {
        self.shared
            .outgoing
            .send(OutgoingFrame::from(reply))
            .await
            .map_err(|_| ExchangeError::Closed)
    }

    /// Marks the session closed; waiting exchanges fail at once.
    pub(super) fn close(&self) {
        self.shared.closed.send_replace(true);
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Same underlying connection?
    pub(super) fn same_as(&self, other: &AifaceSession) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Commands answered and reply bytes received so far on this connection.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.shared.round_trips.load(Ordering::Relaxed),
            self.shared.bytes_received.load(Ordering::Relaxed),
        )
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
