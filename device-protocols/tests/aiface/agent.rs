//! A minimal agent: one command in flight, reports acknowledged, everything through the
//! sans-IO types. Just enough protocol to drive the emulator; the real driver lives in the
//! agent package.

use std::time::Duration;

use device_protocols::aiface::{
    check_complete, page_cap, parse_device_message, Capacity, Command, CompletenessError,
    CredentialFetch, DeviceMessage, DeviceReply, DeviceReport, FetchError, ListSummary, LogUpload,
    PagedRead, PagingError, ParseError, RegReply, Registration, ReplyBody, ReplyOutcome,
    SendLogReply, SendUserReply, ServerReply, Step, UserCredential, UserListEntry, UserPush,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use test_support::Emulator;

/// Longest any single step may take before the test calls it hung.
pub(crate) const STEP: Duration = Duration::from_secs(15);

/// The `cloudtime` the test agent sends.
pub(crate) const CLOUDTIME: &str = "2026-03-04 08:00:00";

/// Starts `device-sim aiface` dialling `url` with extra `knobs`; its command log is labelled
/// `test`. It reconnects quickly and gives up after two minutes.
pub(crate) fn start_emulator(url: &str, test: &str, knobs: &[&str]) -> Emulator {
    let mut args = vec!["--run-for", "120", "--reconnect-delay-ms", "100"];
    args.extend_from_slice(knobs);
    Emulator::aiface(test, url, &args)
}

/// The commands in the emulator's log, as the frames the agent sent, in order; asserts that
/// none was destructive and that the emulator could parse every frame.
fn commands_logged(emulator: &Emulator) -> Vec<Value> {
    let lines = emulator.entries();
    for line in &lines {
        assert_eq!(
            line["destructive"], false,
            "destructive frame logged: {line}"
        );
        assert_ne!(
            line["kind"], "unparsed",
            "the agent sent a bad frame: {line}"
        );
    }
    lines
        .into_iter()
        .filter(|l| l["kind"] == "command")
        .map(|l| l["message"].clone())
        .collect()
}

/// Why the link failed to deliver a reply.
#[derive(Debug)]
pub(crate) enum LinkError {
    Closed,
    TimedOut,
    Garbage(ParseError),
}

/// Why a complete read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Link(LinkError),
    Paging(PagingError),
    Fetch(FetchError),
    Incomplete(CompletenessError),
}

impl From<LinkError> for ReadError {
    fn from(error: LinkError) -> Self {
        ReadError::Link(error)
    }
}

/// The agent side of one terminal: a listener, the current link, and what it has seen.
pub(crate) struct Agent {
    pub listener: TcpListener,
    pub ws: Option<WebSocketStream<TcpStream>>,
    /// Every command sent, as JSON, in order (compared with the emulator's log).
    pub sent: Vec<Value>,
    pub reply_timeout: Duration,
    pub ack_punches: bool,
    pub nosenduser: bool,
    pub punches: Vec<LogUpload>,
    pub pushes: Vec<UserPush>,
}

impl Agent {
    /// Listens on a free loopback port; returns the agent and the URL the terminal should dial.
    pub(crate) async fn bind() -> (Agent, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/pub/chat", listener.local_addr().unwrap());
        let agent = Agent {
            listener,
            ws: None,
            sent: Vec::new(),
            reply_timeout: Duration::from_secs(10),
            ack_punches: true,
            nosenduser: true,
            punches: Vec::new(),
            pushes: Vec::new(),
        };
        (agent, url)
    }

    /// Accepts the terminal's connection and answers its `reg`.
    pub(crate) async fn accept_device(&mut self) -> Registration {
        let accepted = RegReply::accepted(CLOUDTIME, self.nosenduser);
        self.accept_device_with(accepted).await
    }

    /// Accepts the terminal's connection and answers its `reg` with `answer`.
    pub(crate) async fn accept_device_with(&mut self, answer: RegReply) -> Registration {
        let (tcp, _) = timeout(STEP, self.listener.accept())
            .await
            .expect("device dials in")
            .unwrap();
        let config = WebSocketConfig::default()
            .max_frame_size(Some(8 << 20))
            .max_message_size(Some(8 << 20));
        self.ws = Some(
            tokio_tungstenite::accept_async_with_config(tcp, Some(config))
                .await
                .unwrap(),
        );
        match self.recv(STEP).await.expect("reg arrives") {
            DeviceMessage::Report(DeviceReport::Reg(reg)) => {
                self.send_text(ServerReply::Reg(answer).to_json()).await;
                *reg
            }
            other => panic!("expected reg first, got {other:?}"),
        }
    }

    /// Sends one raw text frame.
    pub(crate) async fn send_text(&mut self, text: String) {
        self.ws
            .as_mut()
            .unwrap()
            .send(Message::text(text))
            .await
            .unwrap();
    }

    /// The next decoded frame, or why none came within `wait`.
    pub(crate) async fn recv(&mut self, wait: Duration) -> Result<DeviceMessage, LinkError> {
        let ws = self.ws.as_mut().ok_or(LinkError::Closed)?;
        loop {
            let frame = timeout(wait, ws.next())
                .await
                .map_err(|_| LinkError::TimedOut)?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return parse_device_message(&text).map_err(LinkError::Garbage)
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    self.ws = None;
                    return Err(LinkError::Closed);
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Handles a report the device pushed while we waited for something else.
    async fn on_report(&mut self, report: DeviceReport) {
        match report {
            DeviceReport::SendLog(upload) => {
                if self.ack_punches {
                    self.send_text(
                        ServerReply::SendLog(SendLogReply::ack(&upload, CLOUDTIME)).to_json(),
                    )
                    .await;
                }
                self.punches.push(upload);
            }
            DeviceReport::SendUser(push) => {
                self.send_text(
                    ServerReply::SendUser(SendUserReply::ack(&push, CLOUDTIME)).to_json(),
                )
                .await;
                self.pushes.push(push);
            }
            other => panic!("unexpected report {other:?}"),
        }
    }

    /// Waits for the next report, answering it.
    pub(crate) async fn next_report(&mut self) -> DeviceReport {
        match self.recv(STEP).await.unwrap() {
            DeviceMessage::Report(report) => {
                self.on_report(report.clone()).await;
                report
            }
            other => panic!("expected a report, got {other:?}"),
        }
    }

    /// Sends a command (recording it) and waits for its reply, answering pushed reports meanwhile.
    pub(crate) async fn request(&mut self, command: &Command) -> Result<DeviceReply, LinkError> {
        self.sent
            .push(serde_json::from_str(&command.to_json()).unwrap());
        self.send_text(command.to_json()).await;
        loop {
            match self.recv(self.reply_timeout).await? {
                DeviceMessage::Reply(reply) => return Ok(reply),
                DeviceMessage::Report(report) => self.on_report(report).await,
            }
        }
    }

    /// `getuserlist` to completion, capped at the pages a full device could need (up to 13
    /// credentials per user: 10 fingerprints, password, card, photo).
    pub(crate) async fn read_users(
        &mut self,
        capacity: &Capacity,
    ) -> Result<Vec<UserListEntry>, ReadError> {
        let users = capacity
            .usersize
            .unwrap_or(0)
            .max(capacity.useduser.unwrap_or(0));
        let mut read = PagedRead::users(page_cap(users, 13, 40));
        let mut command = read.first_request();
        loop {
            let reply = self.request(&command).await?;
            match read.on_reply(reply).map_err(ReadError::Paging)? {
                Step::Request(next) => command = next,
                Step::Complete(entries) => return Ok(entries),
            }
        }
    }

    /// The device's counters (`getdevcap`).
    pub(crate) async fn devcap(&mut self) -> Result<Capacity, ReadError> {
        match self.request(&Command::GetDevCap).await?.outcome {
            ReplyOutcome::Success(ReplyBody::DevCap(cap)) => Ok(cap.capacity),
            other => panic!("getdevcap failed: {other:?}"),
        }
    }

    /// The complete user read of the issue: devcap, list, devcap, check, then every credential.
    pub(crate) async fn complete_read(
        &mut self,
    ) -> Result<(ListSummary, Vec<UserCredential>), ReadError> {
        let before = self.devcap().await?;
        let entries = self.read_users(&before).await?;
        let after = self.devcap().await?;
        let summary = check_complete(&entries, &before, &after).map_err(ReadError::Incomplete)?;
        let mut fetch = CredentialFetch::new(entries.iter().map(UserListEntry::credential_ref));
        let mut step = fetch.start();
        loop {
            match step {
                Step::Request(command) => {
                    let reply = self.request(&command).await?;
                    step = fetch.on_reply(reply).map_err(ReadError::Fetch)?;
                }
                Step::Complete(credentials) => return Ok((summary, credentials)),
            }
        }
    }

    /// Stops the emulator and checks its log holds exactly the commands sent, none destructive.
    pub(crate) fn finish(self, emulator: Emulator) -> Value {
        let logged = commands_logged(&emulator);
        assert_eq!(
            logged, self.sent,
            "the command log must hold every command the agent sent, in order"
        );
        let summary = emulator.stop();
        assert_eq!(summary["stats"]["destructive_commands"], 0);
        summary
    }
}
