//! A complete user read, in the order the protocol requires: connect → auth → disable (with an
//! auto re-enable timeout) → sizes → users (bulk) → free → fingerprint templates (bulk, when
//! the device reports any and its counts moved since the last template read, see
//! [`TemplateCache`]) → free → [serial number → attendance log
//! (bulk) → free, when punches are wanted and `attendance::needs_read` says so] → enable → exit. The close runs on every
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
use std::time::{Duration, Instant};

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

/// Every fingerprint template the device holds now, checked against its count: what a
/// template write checks before and after.
pub(super) async fn templates_now(client: &mut Client) -> Result<Vec<FingerTemplate>, ReadError> {
    let sizes = DeviceSizes::decode(&client.expect_ok(&Request::GetFreeSizes).await?)
        .map_err(|err| ReadError::Incomplete(err.to_string()))?;
    if sizes.fingerprints == 0 {
        return Ok(Vec::new());
    }
    let dataset = client.bulk_read(BulkDataset::FingerTemplates).await?;
    let templates = decode_templates(&dataset).map_err(|err| {
        ReadError::Incomplete(format!(
            "the fingerprint templates cannot be decoded: {err}"
        ))
    })?;
    check_templates(&templates, &sizes)?;
    Ok(templates)
}

/// How long the templates of a device may be reused while its counts stand still; after that
/// a poll reads them again in full (a finger re-enrolled in place changes no count).
pub(super) const TEMPLATE_FULL_READ_EVERY: Duration = Duration::from_secs(3600);

/// The last complete template read of one device, with what it was taken at: the device's
/// user and fingerprint counts (the free-sizes reply) and the uids of its user table. A poll
/// whose counts and uids are the same, within [`TEMPLATE_FULL_READ_EVERY`] of the read, uses
/// these instead of downloading every template again (about 44 s for 3,000 fingers on a paced
/// terminal). Held in memory only, so a restarted agent reads in full once.
#[derive(Default)]
pub(super) struct TemplateCache {
    taken: Option<TakenTemplates>,
}

struct TakenTemplates {
    at: Instant,
    users: u32,
    fingerprints: u32,
    uids: Vec<u16>,
    templates: Vec<FingerTemplate>,
}

impl TemplateCache {
    /// Whether a read in `mode` of a device now at `sizes`, whose user table holds `uids`, may
    /// reuse the templates held. A backup ([`FetchMode::All`]) always reads them afresh.
    fn reusable(&self, sizes: &DeviceSizes, uids: &[u16], mode: FetchMode, now: Instant) -> bool {
        mode != FetchMode::All
            && self.taken.as_ref().is_some_and(|taken| {
                taken.users == sizes.users
                    && taken.fingerprints == sizes.fingerprints
                    && taken.uids == uids
                    && now.saturating_duration_since(taken.at) < TEMPLATE_FULL_READ_EVERY
            })
    }

    /// Keeps a complete, checked template read.
    fn keep(&mut self, sizes: &DeviceSizes, table: &UserTable, templates: Vec<FingerTemplate>) {
        self.taken = Some(TakenTemplates {
            at: Instant::now(),
            users: sizes.users,
            fingerprints: sizes.fingerprints,
            uids: uids(table),
            templates,
        });
    }

    /// The templates held (empty when none).
    fn templates(&self) -> &[FingerTemplate] {
        self.taken.as_ref().map_or(&[], |t| &t.templates)
    }

    /// Forgets what is held: after the agent wrote to the device, the next read is a full one.
    pub(super) fn forget(&mut self) {
        self.taken = None;
    }
}

/// Where this read's templates come from.
enum TemplateSource {
    /// The template bulk read, as downloaded.
    Downloaded(Vec<u8>),
    /// The device reports none (it is not asked: some firmware refuses an empty table's read).
    NoneReported,
    /// The counts stand still: the cache's.
    Unchanged,
}

/// What one session brought back.
struct Fetched {
    sizes: DeviceSizes,
    users: Result<(UserTable, TemplateSource), ReadError>,
    attendance: Option<AttendanceDownload>,
}

/// The device-side part of a read: everything between `CONNECT` and the close. The attendance
/// log is read after the user table while the device is still disabled; its failure leaves the
/// user read intact (the punches stay on the device for the next read).
async fn fetch(
    client: &mut Client,
    settings: &ZkSettings,
    punches: Option<&ZkPunches>,
    cache: &TemplateCache,
    mode: FetchMode,
) -> Result<Fetched, ReadError> {
    client.authenticate(settings.comm_key).await?;
    client.disable_device().await?;
    let sizes = DeviceSizes::decode(&client.expect_ok(&Request::GetFreeSizes).await?)
        .map_err(|err| ReadError::Incomplete(err.to_string()))?;
    let dataset = client.bulk_read(BulkDataset::Users).await?;
    let table = decode_users(&dataset, sizes.users, None, &settings.codec)
        .map_err(|err| ReadError::Incomplete(format!("the user table cannot be decoded: {err}")))
        .and_then(|table| check_complete(&table, &sizes).map(|()| table));
    // A device that reports no template is not asked (some firmware refuses the read of an
    // empty table); the count check below still holds it to its word.
    let templates = match &table {
        _ if sizes.fingerprints == 0 => TemplateSource::NoneReported,
        Ok(table) if cache.reusable(&sizes, &uids(table), mode, Instant::now()) => {
            tracing::debug!(
                device = %settings.device_id,
                fingerprints = sizes.fingerprints,
                "user and fingerprint counts unchanged; fingerprint templates not re-read"
            );
            TemplateSource::Unchanged
        }
        _ => TemplateSource::Downloaded(client.bulk_read(BulkDataset::FingerTemplates).await?),
    };
    let mut download = None;
    if let Some(punches) =
        punches.filter(|p| attendance::needs_read(p, &settings.device_id, &sizes, mode))
    {
        match read_attendance(client, settings, &sizes).await {
            Ok(read) => {
                punches.log_read();
                download = Some(read);
            }
            Err(err) => tracing::warn!(
                device = %settings.device_id,
                "attendance log not read ({err}); the punches stay on the device for the next read"
            ),
        }
    }
    client.enable_device().await?;
    Ok(Fetched {
        sizes,
        users: table.map(|table| (table, templates)),
        attendance: download,
    })
}

/// The uids of a user table, in table order (what the templates are keyed by).
fn uids(table: &UserTable) -> Vec<u16> {
    table.users.iter().map(|u| u.uid).collect()
}

/// Puts this read's templates into `cache` (decoded and checked against the device's count
/// when downloaded), so the user read takes them from there.
fn settle_templates(
    cache: &mut TemplateCache,
    sizes: &DeviceSizes,
    table: &UserTable,
    source: TemplateSource,
    device: &str,
) -> Result<(), ReadError> {
    if let Some(faces) = sizes.faces.filter(|f| f.count > 0 && cache.taken.is_none()) {
        // Said at the first read since the start (or since a write), not at every poll.
        tracing::warn!(
            device,
            faces = faces.count,
            "the device holds face templates; this agent version does not read them (their \
             commands are not established), so backups and restores do not include faces"
        );
    }
    let templates = match source {
        TemplateSource::Unchanged => return Ok(()),
        TemplateSource::NoneReported => Vec::new(),
        TemplateSource::Downloaded(dataset) => decode_templates(&dataset).map_err(|err| {
            cache.forget();
            ReadError::Incomplete(format!(
                "the fingerprint templates cannot be decoded: {err}"
            ))
        })?,
    };
    if let Err(err) = check_templates(&templates, sizes) {
        cache.forget();
        return Err(err);
    }
    cache.keep(sizes, table, templates);
    Ok(())
}

/// The serial number: the `sn` of every punch key (the device id when the firmware will not
/// tell).
pub(super) async fn serial_number(
    client: &mut Client,
    settings: &ZkSettings,
) -> Result<String, SessionError> {
    let reply = client
        .request(&Request::ReadOption("~SerialNumber".into()))
        .await?;
    Ok(match client.session().option_reply(&reply) {
        Ok(sn) if !sn.is_empty() => sn,
        _ => {
            tracing::warn!(device = %settings.device_id, "the device does not report ~SerialNumber; punches are keyed with the device id");
            settings.device_id.clone()
        }
    })
}

/// The serial number (see [`serial_number`]) and the whole attendance log.
async fn read_attendance(
    client: &mut Client,
    settings: &ZkSettings,
    sizes: &DeviceSizes,
) -> Result<AttendanceDownload, SessionError> {
    let sn = serial_number(client, settings).await?;
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
    cache: &mut TemplateCache,
    mode: FetchMode,
    sink: &mut (dyn ReadSink + Send),
) -> Result<UserRead, ReadError> {
    let mut client = open(settings, prefer_udp).await?;
    let outcome = fetch(&mut client, settings, punches, cache, mode).await;
    let (round_trips, bytes_received) = client.traffic();
    // The close comes after the fallible part has finished, whatever its outcome.
    client.close().await;
    let Fetched {
        sizes,
        users,
        attendance: download,
    } = outcome?;
    if let (Some(punches), Ok((table, _))) = (punches, &users) {
        punches.remember_users(table);
    }
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
    let (table, source) = users?;
    settle_templates(cache, &sizes, &table, source, &settings.device_id)?;
    let mut read = to_user_read(&table, cache.templates(), &sizes, mode, sink)?;
    read.round_trips = round_trips;
    read.bytes_received = bytes_received;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_protocols::zk::{DeviceText, TimeZones, UserId, UserRecord};

    fn table(uids: &[u16]) -> UserTable {
        UserTable {
            layout: Some(UserLayout::Extended72),
            count_consistent: true,
            users: uids
                .iter()
                .map(|&uid| UserRecord {
                    uid,
                    privilege: 0,
                    password: DeviceText::utf8(""),
                    name: DeviceText::utf8("A"),
                    card: 0,
                    group: 1,
                    user_id: UserId::Text(DeviceText::utf8(&uid.to_string())),
                    time_zones: TimeZones::Extended {
                        own: 0,
                        zones: [0; 3],
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn templates_are_reused_only_while_counts_and_uids_stand_still_and_not_too_long() {
        let sizes = DeviceSizes {
            users: 2,
            fingerprints: 1,
            ..DeviceSizes::default()
        };
        let mut cache = TemplateCache::default();
        let now = Instant::now();
        assert!(!cache.reusable(&sizes, &[1, 2], FetchMode::Missing, now));
        cache.keep(&sizes, &table(&[1, 2]), Vec::new());
        assert!(cache.reusable(&sizes, &[1, 2], FetchMode::Missing, now));
        assert!(
            !cache.reusable(&sizes, &[1, 2], FetchMode::All, now),
            "a backup reads afresh"
        );
        assert!(
            !cache.reusable(&sizes, &[1, 3], FetchMode::Missing, now),
            "a uid changed"
        );
        let more = DeviceSizes {
            fingerprints: 2,
            ..sizes
        };
        assert!(!cache.reusable(&more, &[1, 2], FetchMode::Missing, now));
        let later = now + TEMPLATE_FULL_READ_EVERY + Duration::from_secs(1);
        assert!(
            !cache.reusable(&sizes, &[1, 2], FetchMode::Missing, later),
            "the periodic full read"
        );
        cache.forget();
        assert!(!cache.reusable(&sizes, &[1, 2], FetchMode::Missing, now));
    }
}
