//! One ZK session over one [`Link`]: requests out, matched replies in, bulk reads, and the close
//! that must happen on every path.
//!
//! The sans-IO [`ClientSession`] and [`BulkRead`] make every protocol decision; this type only
//! moves bytes, applies the per-packet timeout, retries what is safe to retry and counts traffic.
//! Exactly one request is outstanding at a time: bulk slices are requested one after another
//! (pipelining them stalls real terminals).

use super::link::{Link, LinkError};
use device_protocols::zk::{
    BulkDataset, BulkError, BulkRead, BulkStep, ClientSession, CommKey, Packet, ReplyError,
    Request, RequestBytes, SessionState,
};
use std::time::Duration;
use tokio::time::Instant;

/// Attempts per unanswered request on links that lose packets, and per bulk slice everywhere.
pub(super) const MAX_ATTEMPTS: u32 = 3;

/// Seconds of silence after which the firmware re-enables a disabled terminal by itself: if the
/// agent dies between `DISABLE` and `ENABLE`, the terminal is back in service within a minute.
pub const DISABLE_TIMEOUT_SECS: u32 = 60;

/// What went wrong in a session, with enough context for an operator.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The transport failed while waiting for `what`.
    #[error("{what}: {source}")]
    Link {
        /// The request that was in flight.
        what: String,
        /// The transport error.
        source: LinkError,
    },
    /// The device answered, but not as required.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A bulk read went wrong.
    #[error(transparent)]
    Bulk(#[from] BulkError),
    /// The device lock is no longer held: nothing more is sent.
    #[error(transparent)]
    Fenced(#[from] crate::lock::Fenced),
}

/// An open session (the device has answered `CONNECT`).
///
/// Close it with [`Client::close`]. If it is dropped instead (the read's future was cancelled,
/// e.g. at shutdown), `Drop` hands the link to a background task that performs the same close.
pub(super) struct Client {
    /// Always present; taken only by `Drop` to finish the close in the background.
    link: Option<Link>,
    device: String,
    /// True from a successful `CONNECT` until [`Client::close`] starts: a session exists on the
    /// device that `Drop` must close if nobody else does.
    needs_close: bool,
    session: ClientSession,
    timeout: Duration,
    device_disabled: bool,
    round_trips: u64,
    bytes_received: u64,
}

impl Client {
    /// Sends `CONNECT` on a fresh link. No session exists on the device until this succeeds, so
    /// a failure here needs no `EXIT`.
    pub(super) async fn connect(
        device: &str,
        link: Link,
        timeout: Duration,
    ) -> Result<Client, SessionError> {
        let mut client = Client {
            link: Some(link),
            device: device.to_string(),
            needs_close: false,
            session: ClientSession::new(),
            timeout,
            device_disabled: false,
            round_trips: 0,
            bytes_received: 0,
        };
        let reply = client.call(&Request::Connect).await?;
        client.session.on_connect_reply(&reply)?;
        client.needs_close = true;
        Ok(client)
    }

    /// The transport in use.
    pub(super) fn transport(&self) -> &'static str {
        self.link().name()
    }

    /// Requests answered and reply bytes received so far.
    pub(super) fn traffic(&self) -> (u64, u64) {
        (self.round_trips, self.bytes_received)
    }

    /// Answers `ACK_UNAUTH` with the comm key when the device asked for one.
    pub(super) async fn authenticate(&mut self, key: CommKey) -> Result<(), SessionError> {
        if self.session.state() != SessionState::NeedsAuth {
            return Ok(());
        }
        let reply = self.call(&Request::Auth(key)).await?;
        self.session.on_auth_reply(&reply)?;
        Ok(())
    }

    /// Sends `request` and checks for `ACK_OK`, returning the reply data.
    pub(super) async fn expect_ok(&mut self, request: &Request) -> Result<Vec<u8>, SessionError> {
        let reply = self.call(request).await?;
        Ok(self.session.expect_ok(&reply)?.to_vec())
    }

    /// The raw reply to `request`, for replies the sans-IO session decodes (time, options).
    pub(super) async fn request(&mut self, request: &Request) -> Result<Packet, SessionError> {
        self.call(request).await
    }

    /// The sans-IO session, to decode replies.
    pub(super) fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Disables keypad and sensor with the auto re-enable timeout, so counts cannot change.
    pub(super) async fn disable_device(&mut self) -> Result<(), SessionError> {
        // Marked before sending: if the reply is lost the device may still be disabled.
        self.device_disabled = true;
        self.expect_ok(&Request::DisableDevice {
            auto_enable_after_secs: DISABLE_TIMEOUT_SECS,
        })
        .await?;
        Ok(())
    }

    /// Re-enables the device.
    pub(super) async fn enable_device(&mut self) -> Result<(), SessionError> {
        self.expect_ok(&Request::EnableDevice).await?;
        self.device_disabled = false;
        Ok(())
    }

    /// Downloads a whole dataset with sequential `READ_BUFFER` slices, each waited for with the
    /// per-packet timeout and re-requested (with a new reply id, as firmware requires) when it
    /// stalls; then frees the device's buffer.
    pub(super) async fn bulk_read(
        &mut self,
        dataset: BulkDataset,
    ) -> Result<Vec<u8>, SessionError> {
        let (mut read, mut request) = BulkRead::start(dataset, self.link().max_chunk());
        let data = loop {
            let before_slice = read.clone();
            let mut attempt = 1;
            let step = loop {
                match self.slice(&mut read, &request).await {
                    Err(SessionError::Link {
                        source: LinkError::TimedOut(_),
                        what,
                    }) if attempt < MAX_ATTEMPTS => {
                        tracing::warn!(
                            transport = self.link().name(),
                            attempt,
                            "{what} stalled; requesting it again"
                        );
                        read = before_slice.clone();
                        attempt += 1;
                    }
                    other => break other?,
                }
            };
            match step {
                BulkStep::Send(next) => request = next,
                BulkStep::Complete(data) => break data,
                BulkStep::AwaitMore => unreachable!("slice() returns only at a slice boundary"),
            }
        };
        self.expect_ok(&Request::FreeData).await?;
        Ok(data)
    }

    /// Sends one bulk request and feeds its replies to `read` until the slice is complete.
    async fn slice(
        &mut self,
        read: &mut BulkRead,
        request: &Request,
    ) -> Result<BulkStep, SessionError> {
        let packet = self.session.packet(request);
        let what = describe(request);
        self.send(&packet.encode(), &what).await?;
        loop {
            let reply = self.reply_to_last(&what).await?;
            match read.on_packet(&reply)? {
                BulkStep::AwaitMore => {}
                step => {
                    self.round_trips += 1;
                    return Ok(step);
                }
            }
        }
    }

    /// The next realtime event the terminal pushes (code 500), waiting at most `wait`; `None`
    /// when none came. Anything else that arrives (a late duplicate reply) is skipped.
    pub(super) async fn next_event(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Packet>, SessionError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.link_mut().recv(deadline).await {
                Ok((incoming, wire_len)) => {
                    self.bytes_received += wire_len as u64;
                    if ClientSession::event_code(&incoming.packet).is_some() {
                        return Ok(Some(incoming.packet));
                    }
                }
                Err(LinkError::TimedOut(_)) => return Ok(None),
                Err(source) => {
                    return Err(SessionError::Link {
                        what: "waiting for realtime events".to_string(),
                        source,
                    })
                }
            }
        }
    }

    /// Acknowledges a realtime event (`ACK_OK` with the session id and the event's reply id),
    /// so the terminal sends the next one; it answers nothing.
    pub(super) async fn ack_event(&mut self, event: &Packet) -> Result<(), SessionError> {
        let bytes = self.session.event_ack(event).encode();
        self.send(&bytes, "ACK_OK of a realtime event").await
    }

    /// Ends the session on every path: re-enables the device if this session disabled it, then
    /// sends `EXIT` (firmware frees sessions only on `EXIT`, and re-enables itself when the last
    /// one goes). When the TCP connection broke, `EXIT` goes out on a fresh connection, since
    /// firmware finds sessions by id. Failures are logged, never raised: the read's own outcome
    /// is what the caller reports.
    pub(super) async fn close(mut self) {
        self.needs_close = false;
        let device = self.device.clone();
        let device = device.as_str();
        if self.device_disabled {
            if let Err(err) = self.enable_device().await {
                tracing::warn!(device, "could not re-enable the device (it re-enables itself after {DISABLE_TIMEOUT_SECS} s): {err}");
                self.reconnect_if_broken(device, &err).await;
            }
        }
        if let Err(err) = self.expect_ok(&Request::Exit).await {
            tracing::warn!(device, "EXIT failed: {err}");
            if self.reconnect_if_broken(device, &err).await {
                if let Err(err) = self.expect_ok(&Request::Exit).await {
                    tracing::warn!(device, "EXIT on a fresh connection failed too: {err}");
                }
            }
        }
    }

    fn link(&self) -> &Link {
        self.link
            .as_ref()
            .expect("the link is taken only when the client is dropped")
    }

    fn link_mut(&mut self) -> &mut Link {
        self.link
            .as_mut()
            .expect("the link is taken only when the client is dropped")
    }

    /// Replaces a broken TCP connection; true when there is a new one to send on.
    async fn reconnect_if_broken(&mut self, device: &str, err: &SessionError) -> bool {
        let SessionError::Link { source, .. } = err else {
            return false;
        };
        if !source.is_broken() {
            return false;
        }
        let timeout = self.timeout;
        match self.link().reopen(timeout).await {
            Some(Ok(link)) => {
                tracing::info!(
                    device,
                    "sending EXIT on a fresh connection to free the session"
                );
                self.link = Some(link);
                true
            }
            Some(Err(err)) => {
                tracing::warn!(device, "cannot reconnect to free the session: {err}");
                false
            }
            None => false,
        }
    }

    /// Sends `request` and waits for its reply; on a link that loses packets, an unanswered
    /// request is resent unchanged (same reply id: the device answers from its cache).
    async fn call(&mut self, request: &Request) -> Result<Packet, SessionError> {
        let bytes = self.session.packet(request).encode();
        let what = describe(request);
        let attempts = if self.link().loses_packets() {
            MAX_ATTEMPTS
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            self.send(&bytes, &what).await?;
            match self.reply_to_last(&what).await {
                Err(SessionError::Link {
                    source: LinkError::TimedOut(_),
                    ..
                }) if attempt < attempts => {
                    tracing::debug!(
                        transport = self.link().name(),
                        attempt,
                        "{what}: no reply, resending"
                    );
                    attempt += 1;
                }
                Ok(reply) => {
                    self.round_trips += 1;
                    return Ok(reply);
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn send(&mut self, bytes: &RequestBytes, what: &str) -> Result<(), SessionError> {
        crate::lock::fence::check_current()?;
        self.link_mut()
            .send(bytes)
            .await
            .map_err(|source| SessionError::Link {
                what: what.to_string(),
                source,
            })
    }

    /// The next packet answering the last request, skipping stale duplicates and realtime
    /// events; one timeout for the whole wait.
    async fn reply_to_last(&mut self, what: &str) -> Result<Packet, SessionError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let (incoming, wire_len) =
                self.link_mut()
                    .recv(deadline)
                    .await
                    .map_err(|source| SessionError::Link {
                        what: format!("waiting for the reply to {what}"),
                        source: match source {
                            LinkError::TimedOut(_) => LinkError::TimedOut(self.timeout),
                            other => other,
                        },
                    })?;
            self.bytes_received += wire_len as u64;
            if !incoming.checksum_valid {
                // Policy: log and accept (some simulators and old firmware get it wrong).
                tracing::warn!(
                    transport = self.link().name(),
                    code = %incoming.packet.code,
                    "reply with a bad checksum accepted"
                );
            }
            if self.session.is_reply_to_last(&incoming.packet) {
                return Ok(incoming.packet);
            }
        }
    }
}

impl Drop for Client {
    /// A session abandoned without [`Client::close`] (its future was dropped) is closed by a
    /// background task, so even a cancelled read re-enables the device and sends `EXIT`.
    fn drop(&mut self) {
        if !self.needs_close {
            return;
        }
        let (Some(link), Ok(runtime)) = (self.link.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        tracing::warn!(device = %self.device, "read abandoned mid-session; closing the session in the background");
        let orphan = Client {
            link: Some(link),
            device: std::mem::take(&mut self.device),
            // Its own close is the spawned task; if the runtime drops that task unstarted
            // (shutting down), dropping it must not spawn yet another one.
            needs_close: false,
            session: self.session.clone(),
            timeout: self.timeout,
            device_disabled: self.device_disabled,
            round_trips: 0,
            bytes_received: 0,
        };
        runtime.spawn(orphan.close());
    }
}

/// A request named for error messages.
fn describe(request: &Request) -> String {
    match request {
        Request::ReadBuffer { offset, len } => {
            format!("READ_BUFFER of {len} bytes at offset {offset}")
        }
        Request::PrepareBuffer(dataset) => format!("PREPARE_BUFFER for {dataset:?}"),
        other => format!("{}", other.code()),
    }
}
