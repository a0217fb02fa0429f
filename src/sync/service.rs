//! The running sync service: one poll loop per device, woken by its interval, by the device
//! connecting, by a keypad enrolment it pushed, or on demand (`sync-now`); plus the retention
//! sweep. [`start`] runs it on devices and an engine the agent hands over.

use super::listen::ListenEnd;
use super::poll::PollOutcome;
use super::retention::RetentionPolicy;
use super::Engine;
use crate::config::Config;
use crate::device::aiface::{AifaceHub, AifaceSession, Notice};
use crate::device::zk::ZkSession;
use crate::device::{DeviceSession, Devices};
use crate::lifecycle::{StopSignal, Tasks};
use crate::live::ReadEnd;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// Pause after a wake-up before reading, so the burst of `senduser` pushes of one enrolment
/// (one per credential) is over before the read that picks it up.
const SETTLE: Duration = Duration::from_millis(500);
/// How often retention runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Where the sync service gets a device session from. AI06 terminals dial in, so this is "the
/// live connection, if any"; ZK drivers will open one.
pub trait SessionSource: Send + Sync + 'static {
    /// The session type.
    type Session: DeviceSession + 'static;
    /// The device's session, waiting up to `wait` for it.
    fn session(
        &self,
        device_id: &str,
        wait: Duration,
    ) -> impl Future<Output = Option<Self::Session>> + Send;
}

impl SessionSource for AifaceHub {
    type Session = AifaceSession;

    fn session(
        &self,
        device_id: &str,
        wait: Duration,
    ) -> impl Future<Output = Option<AifaceSession>> + Send {
        AifaceHub::session(self, device_id, wait)
    }
}

/// ZK terminals do not dial in: the agent dials them at every poll, through one session object
/// per device (it keeps to one connection at a time and remembers which transport worked).
pub struct ZkSource {
    sessions: HashMap<String, Arc<ZkSession>>,
}

impl SessionSource for ZkSource {
    type Session = Arc<ZkSession>;

    fn session(
        &self,
        device_id: &str,
        _wait: Duration,
    ) -> impl Future<Output = Option<Arc<ZkSession>>> + Send {
        let session = self.sessions.get(device_id).cloned();
        async move { session }
    }
}

/// When one device is read and backed up.
#[derive(Debug, Clone)]
pub struct DeviceSchedule {
    /// The device.
    pub device_id: String,
    /// Time between polls.
    pub poll_interval: Duration,
    /// Time between backups.
    pub backup_interval: Duration,
    /// Where backups go.
    pub backup_dir: PathBuf,
}

/// Handle to the running service, for the control plane: `sync-now`, and the engine behind
/// `map`, `conflicts resolve`, `backups …`, `audit query` and `status`.
#[derive(Clone)]
pub struct SyncHandle {
    engine: Arc<Engine>,
    triggers: Arc<HashMap<String, Arc<Notify>>>,
    aiface: Arc<AifaceHub>,
    zk: Arc<ZkSource>,
}

impl SyncHandle {
    /// The engine the service runs.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Whether `device_id` is a device this service syncs.
    pub fn knows(&self, device_id: &str) -> bool {
        self.triggers.contains_key(device_id)
    }

    /// Live AI06 sessions (for status).
    pub fn aiface(&self) -> &Arc<AifaceHub> {
        &self.aiface
    }

    /// The session of a configured ZK terminal (the agent dials it when the session is used),
    /// for operator commands that read it, such as `backups create`; `None` for other devices.
    pub fn zk_session(&self, device_id: &str) -> Option<Arc<ZkSession>> {
        self.zk.sessions.get(device_id).cloned()
    }

    /// Asks for a poll of `device_id` now; `false` if no such device is being synced.
    pub fn sync_now(&self, device_id: &str) -> bool {
        match self.triggers.get(device_id) {
            Some(trigger) => {
                trigger.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Starts the sync service on the devices [`crate::device::start`] brought up, with the engine
/// the agent built: a poll loop per device (`sync-device:<id>`), the routing of AI06 notices to
/// those loops, and the retention sweep. It spawns only its own tasks.
pub fn start(
    tasks: &mut Tasks,
    config: &Config,
    engine: Arc<Engine>,
    devices: Devices,
) -> SyncHandle {
    let Devices {
        aiface,
        aiface_ids,
        notices,
        zk,
    } = devices;
    let mut triggers = HashMap::new();
    let zk = Arc::new(ZkSource { sessions: zk });
    for device in config
        .device
        .iter()
        .filter(|d| zk.sessions.contains_key(&d.id))
    {
        spawn_device(tasks, &engine, &zk, config, device, &mut triggers);
    }
    for device in config.device.iter().filter(|d| aiface_ids.contains(&d.id)) {
        spawn_device(tasks, &engine, &aiface, config, device, &mut triggers);
    }
    if let Some(notices) = notices {
        let routes = triggers.clone();
        tasks.spawn("sync-notices", move |stop| {
            route_notices(notices, routes, stop)
        });
    }
    let policy = RetentionPolicy {
        buffer: config.buffer.retention.get(),
        audit: config.buffer.audit_retention.get(),
        backups: config.backup.retention.get(),
    };
    let backup_dir = config.backup_dir();
    let retention_engine = Arc::clone(&engine);
    tasks.spawn("sync-retention", move |stop| {
        run_retention(retention_engine, policy, backup_dir, stop)
    });
    let thresholds = super::monitor::MonitorThresholds {
        unread_after: config.monitor.unread_alert_after.get(),
        incomplete_after: config.monitor.incomplete_alert_after,
    };
    let (monitor_engine, watched) = (Arc::clone(&engine), triggers.keys().cloned().collect());
    tasks.spawn("sync-monitor", move |stop| {
        super::monitor::run_monitor(monitor_engine, watched, thresholds, stop)
    });
    SyncHandle {
        engine,
        triggers: Arc::new(triggers),
        aiface,
        zk,
    }
}

/// Starts the poll loop of one device and registers its wake-up trigger.
fn spawn_device<S: SessionSource>(
    tasks: &mut Tasks,
    engine: &Arc<Engine>,
    source: &Arc<S>,
    config: &Config,
    device: &crate::config::DeviceConfig,
    triggers: &mut HashMap<String, Arc<Notify>>,
) {
    let trigger = Arc::new(Notify::new());
    triggers.insert(device.id.clone(), Arc::clone(&trigger));
    let schedule = DeviceSchedule {
        device_id: device.id.clone(),
        poll_interval: config.poll_interval(device).get(),
        backup_interval: config.backup.interval.get(),
        backup_dir: config.backup_dir(),
    };
    let (engine, source) = (Arc::clone(engine), Arc::clone(source));
    tasks.spawn(format!("sync-device:{}", device.id), move |stop| {
        supervise_device(engine, source, schedule, trigger, stop)
    });
}

/// First pause before a failed device loop is restarted; it doubles (with jitter) up to
/// [`RESTART_CAP`] while the loop keeps failing, and starts over once it ran [`RESTART_CAP`].
const RESTART_BASE: Duration = Duration::from_secs(1);
/// Longest pause between restarts of a failing device loop.
const RESTART_CAP: Duration = Duration::from_secs(300);

/// Runs the poll loop of one device and restarts it, with backoff and an alarm, when it panics
/// or returns before stop: one terminal sending something the agent cannot handle must not
/// end the monitoring of that terminal for good, nor take the other devices with it.
async fn supervise_device<S: SessionSource>(
    engine: Arc<Engine>,
    source: Arc<S>,
    schedule: DeviceSchedule,
    trigger: Arc<Notify>,
    mut stop: StopSignal,
) {
    use futures::FutureExt as _;
    let task = format!("sync-device:{}", schedule.device_id);
    let mut backoff = crate::backoff::Backoff::new(RESTART_BASE, RESTART_CAP);
    loop {
        let started = tokio::time::Instant::now();
        let run = run_device(
            Arc::clone(&engine),
            Arc::clone(&source),
            schedule.clone(),
            Arc::clone(&trigger),
            stop.clone(),
        );
        let ended = std::panic::AssertUnwindSafe(run).catch_unwind().await;
        if stop.is_stopping() {
            return;
        }
        let reason = match ended {
            Err(panic) => format!("panicked: {}", crate::lifecycle::panic_message(&*panic)),
            Ok(()) => "ended early".to_string(),
        };
        if started.elapsed() >= RESTART_CAP {
            backoff.succeed();
        }
        let pause = backoff
            .fail(crate::backoff::random_fraction(), None)
            .max(Duration::from_millis(100));
        let restart_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        tracing::error!(
            task = %task,
            "the poll loop of {} {reason}; restarting it in {pause:?}",
            schedule.device_id
        );
        let alarm = crate::store::Alarm {
            raised_at_unix_ms: engine.now_ms(),
            kind: crate::store::AlarmKind::TaskRestarted {
                task: task.clone(),
                reason: reason.clone(),
                restart_in_ms,
            },
            message: format!(
                "the poll loop of {} {reason} and is restarted in {pause:?}; if this repeats,                  send the log to support",
                schedule.device_id
            ),
        };
        if let Err(err) = engine.store().raise_alarm(&alarm) {
            tracing::error!("cannot record the alarm: {err}");
        } else if let Err(err) = engine.store().make_durable().await {
            tracing::error!("cannot make the alarm durable: {err}");
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.stopped() => return,
        }
    }
}

/// The poll loop of one device: waits for its interval or a wake-up, then backs up (when due)
/// or polls. A device that is not connected is simply skipped until it connects (which wakes
/// the loop).
pub async fn run_device<S: SessionSource>(
    engine: Arc<Engine>,
    source: Arc<S>,
    schedule: DeviceSchedule,
    trigger: Arc<Notify>,
    mut stop: StopSignal,
) {
    let device = schedule.device_id.as_str();
    let mut next_poll = tokio::time::Instant::now();
    loop {
        match wait_for_round(&engine, &*source, device, next_poll, &trigger, &mut stop).await {
            Wake::PollDue => {}
            Wake::Woken => {
                tokio::select! {
                    _ = tokio::time::sleep(SETTLE) => {}
                    _ = stop.stopped() => return,
                }
            }
            Wake::Stopping => return,
        }
        next_poll = tokio::time::Instant::now() + schedule.poll_interval;
        if crate::lifecycle::test_fault(&format!("device-loop:{device}")) {
            panic!("test fault injected into the poll loop of {device} (EDGE_AGENT_TEST_FAULT)");
        }
        let Some(session) = source.session(device, Duration::ZERO).await else {
            tracing::debug!(device, "not connected; it is read as soon as it connects");
            continue;
        };
        let work = sync_once(&engine, &session, &schedule);
        tokio::select! {
            _ = work => {}
            _ = stop.stopped() => return,
        }
    }
}

/// What ended the wait between two rounds.
enum Wake {
    PollDue,
    Woken,
    Stopping,
}

/// Pause before a listening session that failed is tried again (the poll still runs on time);
/// it doubles with every failure in a row within one wait, so a terminal that is off costs a
/// handful of attempts (and lock audit entries) per poll interval, not one every few seconds.
const LISTEN_RETRY: Duration = Duration::from_secs(5);

/// Waits for the next round: until `next_poll`, a wake-up or stop. A device that listens for
/// live events (`live_events`) spends the wait in listening sessions under its lock
/// ([`Engine::listen`]), yielding the device to the agent's own sessions and coming back after.
async fn wait_for_round<S: SessionSource>(
    engine: &Engine,
    source: &S,
    device: &str,
    next_poll: tokio::time::Instant,
    trigger: &Notify,
    stop: &mut StopSignal,
) -> Wake {
    let mut retry = LISTEN_RETRY;
    loop {
        let listener = match source.session(device, Duration::ZERO).await {
            Some(session) if session.listens() => Some(session),
            _ => None,
        };
        let Some(session) = listener else {
            return tokio::select! {
                _ = tokio::time::sleep_until(next_poll) => Wake::PollDue,
                _ = trigger.notified() => Wake::Woken,
                _ = stop.stopped() => Wake::Stopping,
            };
        };
        let pause = match engine.listen(&session, next_poll, trigger, stop).await {
            ListenEnd::PollDue => return Wake::PollDue,
            ListenEnd::Woken => return Wake::Woken,
            ListenEnd::Stopping => return Wake::Stopping,
            ListenEnd::Ended => continue,
            ListenEnd::Yielded => {
                tokio::select! {
                    _ = engine.until_device_unwanted(device) => {}
                    _ = stop.stopped() => return Wake::Stopping,
                }
                continue;
            }
            ListenEnd::Failed(why) => {
                tracing::warn!(device, "live-event session failed: {why}; trying again in {retry:?}, the poll stays on time");
                let pause = retry;
                retry = retry.saturating_mul(2);
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::time::sleep_until(next_poll) => return Wake::PollDue,
            _ = trigger.notified() => return Wake::Woken,
            _ = stop.stopped() => return Wake::Stopping,
        }
    }
}

/// One round for one device: a backup when due (it is a complete read too), else a poll.
async fn sync_once<S: DeviceSession>(engine: &Engine, session: &S, schedule: &DeviceSchedule) {
    let device = session.device_id();
    let interval_ms = i64::try_from(schedule.backup_interval.as_millis()).unwrap_or(i64::MAX);
    match engine.backup_due(device, interval_ms) {
        Ok(true) => {
            engine.live().read_started(device);
            let outcome = engine.backup(session, &schedule.backup_dir).await;
            let end = match &outcome {
                Ok(info) => ReadEnd::Complete {
                    users: info.trailer.users,
                    lost: 0,
                },
                Err(err) => ReadEnd::NotComplete(err.to_string()),
            };
            engine.live().read_finished(device, end);
            match outcome {
                Ok(_) => return,
                Err(err) => {
                    tracing::error!(device, %err, "scheduled backup failed; polling instead")
                }
            }
        }
        Ok(false) => {}
        Err(err) => tracing::error!(device, %err, "cannot tell whether a backup is due"),
    }
    match engine.poll(session).await {
        Ok(PollOutcome::Complete(_)) | Ok(PollOutcome::Incomplete(_)) => {}
        Err(err) => tracing::error!(device, %err, "poll failed"),
    }
}

/// Wakes a device's loop when it connects or pushes a keypad enrolment.
async fn route_notices(
    mut notices: broadcast::Receiver<Notice>,
    triggers: HashMap<String, Arc<Notify>>,
    mut stop: StopSignal,
) {
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            _ = stop.stopped() => return,
        };
        match notice {
            Ok(Notice::Connected { device_id }) | Ok(Notice::UserPushed { device_id, .. }) => {
                if let Some(trigger) = triggers.get(&device_id) {
                    trigger.notify_one();
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                triggers.values().for_each(|t| t.notify_one());
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn run_retention(
    engine: Arc<Engine>,
    policy: RetentionPolicy,
    backup_dir: PathBuf,
    mut stop: StopSignal,
) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.stopped() => return,
        }
        if let Err(err) = engine.sweep(&policy, &backup_dir).await {
            tracing::error!(%err, "retention sweep failed; it runs again in an hour");
        }
    }
}
