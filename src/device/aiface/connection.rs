//! One WebSocket connection from an AI06, from `reg` to close.
//!
//! The reader loop sorts every frame: replies go to the session's waiting exchange, device
//! reports (`sendlog`, `senduser`, a repeated `reg`) are answered here. A `sendlog` is answered
//! only after its punches are durable; if they cannot be stored the device is told `false` and
//! keeps them, so no punch is ever acknowledged and lost.

use super::server::Context;
use super::session::AifaceSession;
use crate::config::peers;
use crate::device::quarantine;
use crate::device::registry::{self, DeviceRecord};
use device_protocols::aiface::{
    parse_device_message, DeviceMessage, DeviceReport, OutgoingFrame, RegReply, Registration,
    SendLogReply, SendUserReply, ServerReply,
};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest frame accepted: face photos run past a megabyte in base64.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// The WebSocket limits every AI06 connection is served with: a message or frame larger than
/// [`MAX_FRAME_BYTES`] ends the connection instead of growing a buffer without bound. Public so
/// the `aiface_ws_frames` fuzz target decodes frames exactly as the listener does.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}
/// How long a new connection may take to send `reg`.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of our WebSocket pings.
const PING_EVERY: Duration = Duration::from_secs(25);
/// A connection silent this long is dropped (the terminal pings or reports far more often).
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

type Socket = WebSocketStream<TcpStream>;

/// Serves one accepted TCP connection until it ends.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, context: Arc<Context>) {
    let config = websocket_config();
    // Any URL path is accepted: terminals are configured with all sorts of paths.
    let socket = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(socket) => socket,
        Err(err) => {
            tracing::warn!(%peer, %err, "WebSocket handshake failed");
            return;
        }
    };
    let (mut sink, mut source) = socket.split();
    let registration = match wait_for_registration(&mut source).await {
        Ok(registration) => registration,
        Err(reason) => {
            tracing::warn!(%peer, "connection closed before registration: {reason}");
            return;
        }
    };
    let Some(device) = context.device_for_sn(&registration.sn) else {
        let reason = format!("sn {} is not allowed on this agent", registration.sn);
        tracing::warn!(%peer, sn = %registration.sn, "terminal refused: its sn is not in any device's allowed_sn");
        let reply = ServerReply::Reg(RegReply::rejected(reason));
        let _ = sink.send(text_frame(OutgoingFrame::from(&reply))).await;
        let _ = sink.close().await;
        return;
    };
    if !peers::allowed(&device.allowed_peers, peer.ip()) {
        tracing::warn!(
            %peer,
            device = %device.device_id,
            sn = %registration.sn,
            "terminal refused: it connected from an address not in the device's allowed_peers"
        );
        let reply = ServerReply::Reg(RegReply::rejected(format!(
            "{} may not connect from {}",
            registration.sn,
            peer.ip()
        )))
        .to_json();
        let _ = sink.send(Message::text(reply)).await;
        let _ = sink.close().await;
        return;
    }
    let (outgoing, queue) = mpsc::channel(64);
    let record = registration_record(&registration, peer);
    let session = AifaceSession::new(&device.device_id, record.clone(), outgoing, device.timeouts);
    let accepted = RegReply::accepted(registry::local_cloudtime(), !device.send_user_pushes);
    if sink
        .send(text_frame(OutgoingFrame::from(&ServerReply::Reg(accepted))))
        .await
        .is_err()
    {
        return;
    }
    remember_registration(&context, &device.device_id, &record);
    tracing::info!(
        device = %device.device_id,
        sn = %registration.sn,
        %peer,
        users = ?registration.devinfo.capacity.useduser,
        firmware = ?registration.devinfo.firmware,
        "device registered"
    );
    context.hub.install(session.clone());
    let writer = tokio::spawn(write_frames(sink, queue));
    context.after_registration(&session);
    read_frames(&mut source, &session, &context).await;
    session.close();
    context.hub.remove(&session);
    writer.abort();
    tracing::info!(device = %device.device_id, %peer, "device disconnected");
}

async fn wait_for_registration(
    source: &mut futures::stream::SplitStream<Socket>,
) -> Result<Registration, String> {
    let first = tokio::time::timeout(REGISTRATION_TIMEOUT, async {
        loop {
            match source.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(_))) | None => return Err("closed".to_string()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.to_string()),
            }
        }
    })
    .await
    .map_err(|_| format!("no reg within {REGISTRATION_TIMEOUT:?}"))??;
    match parse_device_message(&first) {
        Ok(DeviceMessage::Report(DeviceReport::Reg(registration))) => Ok(*registration),
        Ok(other) => Err(format!("first frame was not reg: {other:?}")),
        Err(err) => Err(format!("first frame is not valid: {err}")),
    }
}

fn registration_record(reg: &Registration, peer: SocketAddr) -> DeviceRecord {
    let info = &reg.devinfo;
    DeviceRecord {
        sn: reg.sn.clone(),
        model: info.modelname.clone(),
        firmware: info.firmware.clone(),
        users: info.capacity.useduser,
        faces: info.capacity.usedface,
        fingerprints: info.capacity.usedfp,
        logs: info.capacity.usedlog,
        device_time: info.time.clone(),
        clock_skew_s: info.time.as_deref().and_then(|time| {
            registry::clock_skew_seconds(time, chrono::Local::now().naive_local())
        }),
        peer: peer.to_string(),
        registered_at_ms: chrono::Utc::now().timestamp_millis(),
    }
}

fn remember_registration(context: &Context, device_id: &str, record: &DeviceRecord) {
    if let Some(skew) = record.clock_skew_s.filter(|skew| skew.abs() > 60) {
        tracing::warn!(
            device = device_id,
            skew_s = skew,
            "device clock differs from the agent's by more than a minute"
        );
    }
    if let Some(store) = &context.store {
        if let Err(err) = registry::remember(store, device_id, record) {
            tracing::warn!(device = device_id, %err, "could not record the registration");
        }
    }
}

async fn write_frames(
    mut sink: futures::stream::SplitSink<Socket, Message>,
    mut queue: mpsc::Receiver<OutgoingFrame>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            frame = queue.recv() => match frame {
                Some(frame) => text_frame(frame),
                None => break,
            },
            _ = ping.tick() => Message::Ping(Vec::new().into()),
        };
        if sink.send(frame).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

async fn read_frames(
    source: &mut futures::stream::SplitStream<Socket>,
    session: &AifaceSession,
    context: &Context,
) {
    let device = session.device_id().to_string();
    loop {
        let frame = match tokio::time::timeout(SILENCE_LIMIT, source.next()).await {
            Err(_) => {
                tracing::warn!(%device, "no frame for {SILENCE_LIMIT:?}; dropping the connection");
                return;
            }
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Err(err))) => {
                tracing::warn!(%device, %err, "connection error");
                return;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if session.is_closed() {
            return;
        }
        let Message::Text(text) = frame else {
            continue;
        };
        match parse_device_message(&text) {
            Ok(DeviceMessage::Reply(reply)) => {
                let ret = reply.ret.clone();
                if !session.deliver(reply, text.len()) {
                    tracing::warn!(%device, %ret, "reply matches no command in flight (late or stale); ignored");
                }
            }
            Ok(DeviceMessage::Report(report)) => {
                if answer_report(report, session, context).await.is_err() {
                    return;
                }
            }
            Err(err) => tracing::warn!(%device, %err, "unreadable frame ignored"),
        }
    }
}

/// Test fault point: with `EDGE_AGENT_FAULT=kill-after-punch-store` the process kills itself
/// with SIGKILL after punches are durable and before the device hears about it, the window
/// the durability rule exists for. Tests use it to prove the device resends and nothing is
/// stored twice.
fn crash_point_after_punch_store() {
    if std::env::var_os("EDGE_AGENT_FAULT").is_some_and(|fault| fault == "kill-after-punch-store") {
        tracing::warn!("fault injection: killing the agent after storing punches, before replying");
        // SAFETY: plain syscalls on our own pid.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

async fn answer_report(
    report: DeviceReport,
    session: &AifaceSession,
    context: &Context,
) -> Result<(), super::session::ExchangeError> {
    let device = session.device_id();
    let reply = match report {
        DeviceReport::SendLog(upload) => {
            let outcome = match (&context.punches, &context.store) {
                (Some(punches), Some(store)) => {
                    // Unreadable records are kept aside first, so the frame can be answered.
                    let quarantined = if upload.malformed.is_empty() {
                        Ok(())
                    } else {
                        quarantine::keep(store, device, session.sn(), "sendlog", &upload.malformed)
                            .await
                    };
                    match quarantined {
                        Ok(()) => punches
                            .record(device, session.sn(), &upload.records)
                            .await
                            .map_err(|err| err.to_string()),
                        Err(err) => Err(format!("cannot quarantine an unreadable record: {err}")),
                    }
                }
                _ => Err("punches are not stored in this mode".to_string()),
            };
            match outcome {
                Ok(batch) => {
                    tracing::info!(
                        device,
                        new = batch.new,
                        repeated = batch.duplicates,
                        "punches stored"
                    );
                    crash_point_after_punch_store();
                    ServerReply::SendLog(SendLogReply::ack(&upload, registry::local_cloudtime()))
                }
                Err(err) => {
                    tracing::error!(device, %err, "punches NOT stored; told the device to keep them");
                    ServerReply::SendLog(SendLogReply::refuse())
                }
            }
        }
        DeviceReport::SendUser(push) => {
            tracing::info!(
                device,
                user = push.credential.enrollid,
                slot = push.credential.backupnum.0,
                "keypad enrolment pushed by the device"
            );
            context.user_pushed(device, &push.credential);
            ServerReply::SendUser(SendUserReply::ack(&push, registry::local_cloudtime()))
        }
        DeviceReport::Reg(_) => ServerReply::Reg(RegReply::accepted(
            registry::local_cloudtime(),
            !context.send_user_pushes(device),
        )),
        other => {
            tracing::debug!(device, cmd = other.cmd(), "report ignored");
            return Ok(());
        }
    };
    session.send(&reply).await
}

/// The one way a text frame is made on an AI06 connection: from an [`OutgoingFrame`], which
/// only a `Command` or a `ServerReply` produces.
fn text_frame(frame: OutgoingFrame) -> Message {
    Message::text(frame.into_text())
}
