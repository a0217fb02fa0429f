//! `edge-agent probe`: for a field technician standing at a terminal. Waits for the device,
//! performs one complete read, and prints either a summary (users, credentials per type, the
//! list checked against the device's own count, clock skew) or the exact reason the read is
//! incomplete. Nothing is stored and punches are left on the device. AI06 terminals dial in and
//! are waited for; ZK terminals are dialled (tcp, udp or serial).

use crate::config::{Config, DeviceConfig, Driver};
use crate::device::zk::{Endpoint, ZkSession, ZkSettings};
use crate::device::{Credential, HeldCredential};
use crate::device::{DeviceSession, FetchMode, ReadError, ReadProgress, ReadSink, UserRead};
use crate::lifecycle::Tasks;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a probe found; `edge-agent probe` prints it as text (`cli::render::probe`) or JSON.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    /// Configured device id.
    pub device: String,
    /// Serial number the device registered with.
    pub sn: String,
    /// Firmware as reported.
    pub firmware: Option<String>,
    /// Device clock minus agent clock (seconds).
    pub clock_skew_s: Option<i64>,
    /// `true` when the read was complete and checked.
    pub complete: bool,
    /// The reason, when it was not.
    pub error: Option<String>,
    /// Distinct users read.
    pub users: usize,
    /// The device's own user count (`useduser`).
    pub device_user_count: Option<u64>,
    /// Credentials by type.
    pub credentials: BTreeMap<String, usize>,
    /// Commands sent during the read.
    pub round_trips: u64,
    /// Reply bytes received during the read.
    pub bytes_received: u64,
    /// Wall time of the read.
    pub seconds: f64,
}

/// Probes one configured device; `listen` overrides its listen address (to probe while the
/// agent itself holds the usual port).
pub async fn probe(
    config: &Config,
    device_id: &str,
    listen: Option<SocketAddr>,
    wait: Duration,
    show_progress: bool,
) -> anyhow::Result<ProbeReport> {
    // A probe is a device session like any other: it takes the device's lock (and, in
    // arbiter mode, the site's lease) so it never talks to a terminal an agent is reading.
    let journal = crate::sync::lock::LockJournal::new(None, "probe");
    let lock = crate::sync::lock::from_config(config, journal, "probe-lock")?;
    let guard = lock.acquire(device_id).await?;
    guard
        .run(probe_unlocked(
            config,
            device_id,
            listen,
            wait,
            show_progress,
        ))
        .await?
}

async fn probe_unlocked(
    config: &Config,
    device_id: &str,
    listen: Option<SocketAddr>,
    wait: Duration,
    show_progress: bool,
) -> anyhow::Result<ProbeReport> {
    let mut device: DeviceConfig = config
        .device
        .iter()
        .find(|d| d.id == device_id)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<_> = config.device.iter().map(|d| d.id.as_str()).collect();
            anyhow::anyhow!(
                "no device `{device_id}` in the config (configured: {})",
                known.join(", ")
            )
        })?;
    if device.driver == Driver::Zk {
        if listen.is_some() {
            anyhow::bail!(
                "--listen applies to aiface devices only; zk devices are dialled by the agent"
            );
        }
        return probe_zk(&device, wait, show_progress).await;
    }
    if listen.is_some() {
        device.listen = listen;
    }
    let mut tasks = Tasks::new();
    let listener =
        crate::device::listen_aiface(&mut tasks, std::slice::from_ref(&device), None, None).await?;
    let hub = listener.hub;
    let addresses: Vec<String> = listener.addresses.iter().map(|a| a.to_string()).collect();
    eprintln!(
        "waiting up to {wait:?} for {device_id} (sn {}) to connect on {}; punches stay on the device",
        device.allowed_sn.join(" or "),
        addresses.join(", ")
    );
    let Some(session) = hub.session(device_id, wait).await else {
        tasks.stop(Duration::from_secs(1)).await;
        anyhow::bail!(
            "{device_id} did not connect within {wait:?}: check the terminal's cloud server \
             address and port ({}), its network, and that its sn is in allowed_sn",
            addresses.join(", ")
        );
    };
    let registration = session.registration().clone();
    let started = Instant::now();
    let mut sink = ProbeSink {
        show_progress,
        ..ProbeSink::default()
    };
    let outcome = session.read_users(FetchMode::All, &mut sink).await;
    let seconds = started.elapsed().as_secs_f64();
    tasks.stop(Duration::from_secs(1)).await;
    let mut report = ProbeReport {
        device: device_id.to_string(),
        sn: registration.sn,
        firmware: registration.firmware,
        clock_skew_s: registration.clock_skew_s,
        complete: outcome.is_ok(),
        error: None,
        users: 0,
        device_user_count: None,
        credentials: sink.kinds,
        round_trips: 0,
        bytes_received: 0,
        seconds,
    };
    match outcome {
        Ok(read) => fill(&mut report, &read),
        Err(err) => report.error = Some(err.to_string()),
    }
    Ok(report)
}

/// Probes a ZK terminal: the agent dials it (tcp, udp or serial) until it answers or `wait` runs
/// out, asks who it is, then reads every user in a second session.
async fn probe_zk(
    device: &DeviceConfig,
    wait: Duration,
    show_progress: bool,
) -> anyhow::Result<ProbeReport> {
    let settings = ZkSettings::from_config(device)?;
    eprintln!(
        "dialling {} ({}); punches stay on the device",
        device.id,
        describe_endpoint(&settings.endpoint)
    );
    let session = ZkSession::new(settings);
    let started = Instant::now();
    let mut report = ProbeReport {
        device: device.id.clone(),
        sn: "unknown".to_string(),
        firmware: None,
        clock_skew_s: None,
        complete: false,
        error: None,
        users: 0,
        device_user_count: None,
        credentials: BTreeMap::new(),
        round_trips: 0,
        bytes_received: 0,
        seconds: 0.0,
    };
    let identity = loop {
        match session.identify().await {
            Err(ReadError::NotConnected(reason)) if started.elapsed() + ZK_REDIAL < wait => {
                eprintln!("  not reachable yet ({reason}); trying again");
                tokio::time::sleep(ZK_REDIAL).await;
            }
            other => break other,
        }
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(err) => {
            report.error = Some(err.to_string());
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
    };
    if show_progress {
        eprintln!("  connected over {}", identity.transport);
    }
    report.sn = identity.serial_number.unwrap_or_else(|| "unknown".into());
    report.firmware = identity.firmware;
    report.clock_skew_s = identity.clock_skew_s;
    let started = Instant::now();
    let mut sink = ProbeSink {
        show_progress,
        ..ProbeSink::default()
    };
    let outcome = session.read_users(FetchMode::All, &mut sink).await;
    report.seconds = started.elapsed().as_secs_f64();
    report.complete = outcome.is_ok();
    report.credentials = sink.kinds;
    match outcome {
        Ok(read) => fill(&mut report, &read),
        Err(err) => report.error = Some(err.to_string()),
    }
    Ok(report)
}

/// Pause between dial attempts while waiting for a ZK terminal to come up.
const ZK_REDIAL: Duration = Duration::from_secs(2);

fn describe_endpoint(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Tcp {
            address,
            udp_fallback: true,
        } => format!("tcp {address}, udp fallback"),
        Endpoint::Tcp { address, .. } => format!("tcp {address}"),
        Endpoint::Udp { address } => format!("udp {address}"),
        Endpoint::Serial {
            path,
            baud,
            address,
        } => format!(
            "serial {} at {baud} baud, RS485 address {address}",
            path.display()
        ),
    }
}

fn fill(report: &mut ProbeReport, read: &UserRead) {
    report.users = read.users.len();
    report.device_user_count = Some(read.device_user_count);
    report.round_trips = read.round_trips;
    report.bytes_received = read.bytes_received;
}

/// Counts credentials by type and prints progress; keeps no values.
#[derive(Default)]
struct ProbeSink {
    kinds: BTreeMap<String, usize>,
    show_progress: bool,
}

impl ReadSink for ProbeSink {
    fn held(&self, _user_id: &str, _slot: u16) -> Option<HeldCredential> {
        None
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        let kind = crate::device::slot_kind_name(credential.slot);
        *self.kinds.entry(kind.to_string()).or_default() += 1;
        Ok(())
    }

    fn progress(&mut self, progress: ReadProgress) {
        if self.show_progress {
            eprintln!("  {}", progress_line(&progress));
        }
    }
}

/// One progress line for a person watching.
pub fn progress_line(progress: &ReadProgress) -> String {
    match progress {
        ReadProgress::ListPage {
            pages,
            entries,
            announced,
        } => format!(
            "user list: page {pages}, {entries} entries{}",
            announced.map_or(String::new(), |n| format!(" of {n}"))
        ),
        ReadProgress::ListComplete {
            users,
            credentials,
            to_fetch,
        } => format!(
            "user list complete and checked: {users} users, {credentials} credentials, {to_fetch} to fetch"
        ),
        ReadProgress::Credentials { fetched, total } => {
            format!("credentials: {fetched}/{total}")
        }
    }
}
