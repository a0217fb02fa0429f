//! Who the terminal says it is (serial number, firmware) and how far its clock is off: what
//! `probe` prints above the read, fetched in a short session of its own.

use super::client::Client;
use super::read::open;
use super::settings::ZkSettings;
use crate::device::ReadError;
use device_protocols::zk::{Request, ZkTime};
use std::sync::atomic::AtomicBool;

/// What the terminal reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `~SerialNumber`, when the firmware answers it.
    pub serial_number: Option<String>,
    /// The firmware version string.
    pub firmware: Option<String>,
    /// Device clock minus agent clock in seconds (the device keeps naive local time).
    pub clock_skew_s: Option<i64>,
    /// The transport that worked (`tcp`, `udp`, `serial`).
    pub transport: &'static str,
}

/// Opens a session, asks, and closes it again on every path.
pub(super) async fn identify(
    settings: &ZkSettings,
    prefer_udp: &AtomicBool,
) -> Result<Identity, ReadError> {
    let mut client = open(settings, prefer_udp).await?;
    let outcome = ask(&mut client, settings).await;
    client.close().await;
    outcome
}

async fn ask(client: &mut Client, settings: &ZkSettings) -> Result<Identity, ReadError> {
    client.authenticate(settings.comm_key).await?;
    // Optional facts: firmware that refuses one of these still gets probed.
    let reply = client.request(&Request::GetVersion).await?;
    let firmware = client.session().string_reply(&reply).ok();
    let reply = client
        .request(&Request::ReadOption("~SerialNumber".into()))
        .await?;
    let serial_number = client.session().option_reply(&reply).ok();
    let reply = client.request(&Request::GetTime).await?;
    let clock_skew_s = client
        .session()
        .time_reply(&reply)
        .ok()
        .and_then(skew_from_now);
    Ok(Identity {
        serial_number,
        firmware,
        clock_skew_s,
        transport: client.transport(),
    })
}

/// Device time minus local time; `None` when the device's date is impossible (ZK time treats
/// every month as 31 days, so a broken clock can say "February 31").
fn skew_from_now(time: ZkTime) -> Option<i64> {
    let parts = time.to_parts();
    let device = chrono::NaiveDate::from_ymd_opt(
        i32::from(parts.year),
        u32::from(parts.month),
        u32::from(parts.day),
    )?
    .and_hms_opt(
        u32::from(parts.hour),
        u32::from(parts.minute),
        u32::from(parts.second),
    )?;
    let now = chrono::Local::now().naive_local();
    Some((device - now).num_seconds())
}
