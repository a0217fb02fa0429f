//! A complete user read, in the order the protocol requires: connect → auth → disable (with an
//! auto re-enable timeout) → sizes → users (bulk) → free → fingerprint templates (bulk, when
//! the device reports any) → free → [serial number → attendance log
//! (bulk) → free, when punches are wanted and the record count moved] → enable → exit. The close runs on every
//! path, errors included, because the part that can fail is awaited as one step *before* it (and
//! a read cancelled mid-way is closed by the client's `Drop`): firmware keeps a session until
//! `EXIT`, and a terminal left disabled shows "Working…".

use super::attendance::{self, AttendanceDownload, ZkPunches};
use super::client::{Client, SessionError};
use super::link::{Link, LinkError};
use super::serial::SerialLink;
use super::settings::{Endpoint, ZkSettings};
use super::tcp::TcpLink;
use super::udp::UdpLink;
use super::users::{check_complete, check_templates, to_user_read};
use crate::device::{FetchMode, ReadError, ReadSink, UserRead};
use device_protocols::zk::{
    decode_templates, decode_users, BulkDataset, DeviceSizes, FingerTemplate, Request, UserLayout,
    UserTable,
};
use std::sync::atomic::{AtomicBool, Ordering};

impl From<SessionError> for ReadError {
    fn from(err: SessionError) -> Self {
        let text = err.to_string();
        match err {
            SessionError::Link { source, .. } => match source {
                LinkError::Unreachable { .. } => ReadError::NotConnected(text),
                LinkError::TimedOut(_) => ReadError::TimedOut(text),
                LinkError::Closed
                | LinkError::DeviceGone { .. }
                | LinkError::Framing(_)
                | LinkError::Io(_) => ReadError::Disconnected(text),
                LinkError::DatagramTooLarge { .. } => ReadError::Incomplete(text),
            },
            SessionError::Reply(_) => ReadError::Refused(text),
            SessionError::Bulk(_) => ReadError::Incomplete(text),
            SessionError::Fenced(_) => ReadError::Fenced(text),
        }
    }
}

/// Opens a session: the link, then `CONNECT`. Over TCP with `udp_fallback`, a TCP attempt that
/// fails before the device answered is followed by UDP on the same address, and the choice is
/// remembered (`prefer_udp`) so later reads go straight to UDP.
pub(super) async fn open(
    settings: &ZkSettings,
    prefer_udp: &AtomicBool,
) -> Result<Client, SessionError> {
    let timeout = settings.command_timeout;
    let over = |link: Result<Link, LinkError>, what: &str| {
        link.map_err(|source| SessionError::Link {
            what: what.to_string(),
            source,
        })
    };
    match &settings.endpoint {
        Endpoint::Tcp {
            address,
            udp_fallback,
        } => {
            if *udp_fallback && prefer_udp.load(Ordering::Relaxed) {
                let link = over(UdpLink::connect(address).await.map(Link::Udp), "udp")?;
                return Client::connect(&settings.device_id, link, timeout).await;
            }
            let tcp = async {
                let link = over(
                    TcpLink::connect(address, timeout).await.map(Link::Tcp),
                    "tcp connect",
                )?;
                Client::connect(&settings.device_id, link, timeout).await
            };
            match tcp.await {
                Err(err) if *udp_fallback => {
                    tracing::warn!(device = %settings.device_id, "TCP failed ({err}); trying UDP");
                    let link = over(UdpLink::connect(address).await.map(Link::Udp), "udp")?;
                    let client = Client::connect(&settings.device_id, link, timeout).await?;
                    prefer_udp.store(true, Ordering::Relaxed);
                    Ok(client)
                }
                other => other,
            }
        }
        Endpoint::Udp { address } => {
            let link = over(UdpLink::connect(address).await.map(Link::Udp), "udp")?;
            Client::connect(&settings.device_id, link, timeout).await
        }
        Endpoint::Serial {
            path,
            baud,
            address,
        } => {
            let link = over(
                SerialLink::open(path, *baud, *address).map(Link::Serial),
                "serial open",
            )?;
            Client::connect(&settings.device_id, link, timeout).await
        }
    }
}

/// The user table as the device holds it now, checked against its count, with its layout
/// (72 bytes when the table is empty and so reveals none): what a write builds on.
pub(super) async fn users_now(
    client: &mut Client,
    settings: &ZkSettings,
) -> Result<(UserLayout, UserTable), ReadError> {
    let sizes = DeviceSizes::decode(&client.expect_ok(&Request::GetFreeSizes).await?)
        .map_err(|err| ReadError::Incomplete(err.to_string()))?;
    let dataset = client.bulk_read(BulkDataset::Users).await?;
    let table = decode_users(&dataset, sizes.users, None, &settings.codec)
        .map_err(|err| ReadError::Incomplete(format!("the user table cannot be decoded: {err}")))?;
    check_complete(&table, &sizes)?;
    Ok((table.layout.unwrap_or(UserLayout::Extended72), table))
}

/// What one session brought back.
struct Fetched {
    sizes: DeviceSizes,
    users: Result<(UserTable, Vec<FingerTemplate>), ReadError>,
    attendance: Option<AttendanceDownload>,
}

/// The device-side part of a read: everything between `CONNECT` and the close. The attendance
/// log is read after the user table while the device is still disabled; its failure leaves the
/// user read intact (the punches stay on the device for the next read).
async fn fetch(
    client: &mut Client,
    settings: &ZkSettings,
    punches: Option<&ZkPunches>,
) -> Result<Fetched, ReadError> {
    client.authenticate(settings.comm_key).await?;
    client.disable_device().await?;
    let sizes = DeviceSizes::decode(&client.expect_ok(&Request::GetFreeSizes).await?)
        .map_err(|err| ReadError::Incomplete(err.to_string()))?;
    let dataset = client.bulk_read(BulkDataset::Users).await?;
    // A device that reports no template is not asked (some firmware refuses the read of an
    // empty table); the count check below still holds it to its word.
    let templates = if sizes.fingerprints > 0 {
        Some(client.bulk_read(BulkDataset::FingerTemplates).await?)
    } else {
        None
    };
    let mut download = None;
    if punches.is_some_and(|p| attendance::needs_read(p, &settings.device_id, &sizes)) {
        match read_attendance(client, settings, &sizes).await {
            Ok(read) => download = Some(read),
            Err(err) => tracing::warn!(
                device = %settings.device_id,
                "attendance log not read ({err}); the punches stay on the device for the next read"
            ),
        }
    }
    client.enable_device().await?;
    let users = decode_users(&dataset, sizes.users, None, &settings.codec)
        .map_err(|err| ReadError::Incomplete(format!("the user table cannot be decoded: {err}")))
        .and_then(|table| check_complete(&table, &sizes).map(|()| table))
        .and_then(|table| {
            let templates = match &templates {
                Some(dataset) => decode_templates(dataset).map_err(|err| {
                    ReadError::Incomplete(format!(
                        "the fingerprint templates cannot be decoded: {err}"
                    ))
                })?,
                None => Vec::new(),
            };
            check_templates(&templates, &sizes)?;
            Ok((table, templates))
        });
    Ok(Fetched {
        sizes,
        users,
        attendance: download,
    })
}

/// The serial number (the `sn` of every punch key; the device id when the firmware will not
/// tell) and the whole attendance log.
async fn read_attendance(
    client: &mut Client,
    settings: &ZkSettings,
    sizes: &DeviceSizes,
) -> Result<AttendanceDownload, SessionError> {
    let reply = client
        .request(&Request::ReadOption("~SerialNumber".into()))
        .await?;
    let sn = match client.session().option_reply(&reply) {
        Ok(sn) if !sn.is_empty() => sn,
        _ => {
            tracing::warn!(device = %settings.device_id, "the device does not report ~SerialNumber; punches are keyed with the device id");
            settings.device_id.clone()
        }
    };
    let dataset = client.bulk_read(BulkDataset::Attendance).await?;
    Ok(AttendanceDownload {
        dataset,
        sn,
        device_count: sizes.records,
    })
}

/// A complete read (see the module docs); the sink is fed and the punches stored after the
/// session has ended, so the terminal is back in service while the store works.
pub(super) async fn read_users(
    settings: &ZkSettings,
    prefer_udp: &AtomicBool,
    punches: Option<&ZkPunches>,
    mode: FetchMode,
    sink: &mut (dyn ReadSink + Send),
) -> Result<UserRead, ReadError> {
    let mut client = open(settings, prefer_udp).await?;
    let outcome = fetch(&mut client, settings, punches).await;
    let (round_trips, bytes_received) = client.traffic();
    // The close comes after the fallible part has finished, whatever its outcome.
    client.close().await;
    let Fetched {
        sizes,
        users,
        attendance: download,
    } = outcome?;
    if let (Some(punches), Some(download)) = (punches, download) {
        attendance::store_download(
            punches,
            &settings.device_id,
            download,
            users.as_ref().ok().map(|(table, _)| table),
            &settings.codec,
        )
        .await;
    }
    let (table, templates) = users?;
    let mut read = to_user_read(&table, &templates, &sizes, mode, sink)?;
    read.round_trips = round_trips;
    read.bytes_received = bytes_received;
    Ok(read)
}
