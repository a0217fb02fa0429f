//! The MQTT control plane: connection supervision (M1), health (M2), commands (M3) and signed
//! administration (M4). `docs/mqtt.md` is the operator's view of the same thing.
//!
//! [`start`] is the agent's one entry point. It spawns four tasks on the agent's supervisor:
//!
//! | task               | job                                                           |
//! |--------------------|---------------------------------------------------------------|
//! | `mqtt-connection`  | drives rumqttc, backoff, resubscribe, routing, final `down`   |
//! | `mqtt-commands`    | the request pipeline (checks, dedup, nonce+audit, execution)  |
//! | `mqtt-health`      | retained health, periodically and on change; clock alerts     |
//! | `mqtt-alerts`      | sends durable alerts until the broker hands them back         |
//! | `mqtt-alarm-alerts`| makes every local alarm an alert ([`alert_sources`])          |
//! | `mqtt-user-alerts` | users missing / reappeared, from the sync engine's changes    |
//!
//! Every publish is non-blocking (see [`publisher`]), so losing the broker never stalls device
//! polling, the outbox or anything else that reports through this module.

pub mod alert_kinds;
mod alert_sources;
mod alerts;
pub mod broker;
pub mod command;
mod connection;
pub mod health;
pub mod publisher;
pub mod signing;
pub mod topics;

pub use alerts::{AlertError, Alerts};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tokio::sync::mpsc;

use crate::backoff::{BackoffPolicy, ReconnectBackoff};
use crate::config::Config;
use crate::lifecycle::Tasks;
use crate::ops::logging::LoggingHandle;
use crate::store::Store;
use broker::BrokerSettings;
use command::registry::Registry;
use command::router::{AuthPolicy, Router};
use health::Identity;
use publisher::{LinkState, Publisher};
use signing::AdminKeys;
use topics::Topics;

/// Requests waiting for the router at most; beyond it the connection answers `busy`.
const REQUEST_QUEUE: usize = 32;
/// Capacity of rumqttc's request channel (what `try_publish` fills).
const CLIENT_CHANNEL: usize = 64;

/// Timings that tests compress; the defaults are the production values.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Reconnect backoff.
    pub backoff: BackoffPolicy,
    /// Health refresh period when nothing changes.
    pub health_period: Duration,
    /// Re-send an unconfirmed alert after this long on the same connection.
    pub alert_resend: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            backoff: BackoffPolicy::default(),
            health_period: Duration::from_secs(60),
            alert_resend: Duration::from_secs(30),
        }
    }
}

/// What command handlers and health draw on.
pub struct Services {
    /// Who the agent is.
    pub identity: Identity,
    /// The store.
    pub store: Store,
    /// The run-time logging controls.
    pub logging: Arc<LoggingHandle>,
    /// The local log file, if file logging is on.
    pub log_file: Option<PathBuf>,
    /// The MQTT link state.
    pub link: Arc<LinkState>,
    /// The durable alert queue.
    pub alerts: Alerts,
    /// The agent-wide status report (devices, upstream, outbox, the live picture): health and
    /// `status` are built from it.
    pub status: crate::ops::status::StatusSources,
    /// The sync service, when the agent runs it (sync-now, buffer, map, conflicts, history,
    /// backups).
    pub sync: Option<crate::sync::SyncHandle>,
    /// Where backups are written.
    pub backup_dir: PathBuf,
}

/// Handles for the rest of the agent: raise alerts, report health facts.
pub struct ControlPlane {
    /// Must-deliver alerts.
    pub alerts: Alerts,
    /// The live picture health is built from (the connection reports its link into it).
    pub live: crate::live::Live,
    /// Link state (connected, connection count).
    pub link: Arc<LinkState>,
    /// The command table MQTT serves; the local control socket serves the same one.
    pub registry: Arc<Registry>,
}

/// Starts the control plane if `[mqtt]` names a broker; `None` when MQTT is off. Fails on
/// configuration that cannot work (bad key, unreadable certificate), so the agent refuses to
/// start instead of running unmanageable.
pub fn start(
    tasks: &mut Tasks,
    config: &Config,
    store: &Store,
    logging: &Arc<LoggingHandle>,
    status: Option<crate::ops::status::StatusSources>,
    sync: Option<crate::sync::SyncHandle>,
) -> anyhow::Result<Option<ControlPlane>> {
    if config.mqtt.host.is_none() {
        tracing::info!("MQTT is off (mqtt.host is not set): no remote health or commands");
        return Ok(None);
    }
    start_with(
        tasks,
        config,
        store,
        logging,
        status,
        sync,
        Tuning::default(),
    )
    .context("cannot start the MQTT control plane; fix [mqtt] in the config")
    .map(Some)
}

/// [`start`] with explicit timings (tests compress time with it).
pub fn start_with(
    tasks: &mut Tasks,
    config: &Config,
    store: &Store,
    logging: &Arc<LoggingHandle>,
    status: Option<crate::ops::status::StatusSources>,
    sync: Option<crate::sync::SyncHandle>,
    tuning: Tuning,
) -> anyhow::Result<ControlPlane> {
    let agent = &config.agent;
    let topics = Topics::new(&agent.site, &agent.id)?;
    let settings = BrokerSettings::from_config(&config.mqtt, &agent.site, &agent.id)?;
    let keys = AdminKeys::from_config(&config.mqtt.admin_keys)?;
    if config.mqtt.admin_keys.is_empty() {
        tracing::warn!(
            "no mqtt.admin_keys configured: every state-changing command will be refused \
             (create one with `edge-agent keygen`)"
        );
    }
    let farewell = health::down_message(&agent.id, &agent.site, "stopped");
    let mut options = settings.mqtt_options()?;
    options.set_last_will(LastWill::new(
        topics.health(),
        health::down_message(&agent.id, &agent.site, "connection lost"),
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, eventloop) = AsyncClient::new(options, CLIENT_CHANNEL);
    let link = Arc::new(LinkState::default());
    let publisher = Publisher::new(client, Arc::clone(&link));
    let alerts = Alerts::new(store.clone(), &agent.id);
    let status = status.unwrap_or_else(|| standalone_status(config, store));
    let live = status.live.clone();
    let identity = identity(config);
    let services = Services {
        identity: identity.clone(),
        store: store.clone(),
        logging: Arc::clone(logging),
        log_file: (!config.log.file.as_os_str().is_empty()).then(|| config.log.file.clone()),
        link: Arc::clone(&link),
        alerts: alerts.clone(),
        status: status.clone(),
        sync,
        backup_dir: config.backup_dir(),
    };
    let registry = Arc::new(Registry::standard(&services));

    let (request_tx, request_rx) = mpsc::channel(REQUEST_QUEUE);
    let (echo_tx, echo_rx) = mpsc::channel(REQUEST_QUEUE);
    let connection = connection::Connection {
        eventloop,
        publisher: publisher.clone(),
        link: Arc::clone(&link),
        topics: topics.clone(),
        requests: request_tx,
        echoes: echo_tx,
        backoff: ReconnectBackoff::new(tuning.backoff),
        farewell,
        client_id: settings.client_id.clone(),
        live: live.clone(),
    };
    let router = Router {
        registry: Arc::clone(&registry),
        topics: topics.clone(),
        site: agent.site.clone(),
        agent: agent.id.clone(),
        policy: AuthPolicy {
            keys,
            allow_unsigned_reads: config.mqtt.allow_unsigned_reads,
            clock_skew: config.mqtt.clock_skew.get(),
        },
        store: store.clone(),
        publisher: publisher.clone(),
    };
    let health = health::HealthPublisher {
        sources: status,
        alerts: alerts.clone(),
        publisher: publisher.clone(),
        topic: topics.health(),
        period: tuning.health_period,
    };
    let alarm_alerts = alert_sources::AlarmAlerts {
        store: store.clone(),
        alerts: alerts.clone(),
    };
    let user_alerts = services
        .sync
        .as_ref()
        .map(|sync| alert_sources::ChangeAlerts {
            engine: Arc::clone(sync.engine()),
            alerts: alerts.clone(),
        });
    let sender = alerts::AlertSender {
        alerts: alerts.clone(),
        publisher,
        topic: topics.alerts(),
        echoes: echo_rx,
        resend_after: tuning.alert_resend,
    };
    tasks.spawn("mqtt-connection", |stop| connection.run(stop));
    tasks.spawn("mqtt-commands", |stop| router.run(request_rx, stop));
    tasks.spawn("mqtt-health", |stop| health.run(stop));
    tasks.spawn("mqtt-alerts", |stop| sender.run(stop));
    tasks.spawn("mqtt-alarm-alerts", |stop| alarm_alerts.run(stop));
    if let Some(user_alerts) = user_alerts {
        tasks.spawn("mqtt-user-alerts", |stop| user_alerts.run(stop));
    }
    tracing::info!(
        broker = %format!("{}:{}", settings.host, settings.port),
        tls = settings.tls.is_some(),
        client_id = %settings.client_id,
        "MQTT control plane started"
    );
    Ok(ControlPlane {
        alerts,
        live,
        link,
        registry,
    })
}

/// Who the agent is, for health and `status`.
fn identity(config: &Config) -> Identity {
    Identity {
        agent: config.agent.id.clone(),
        site: config.agent.site.clone(),
        devices: config.device.iter().map(|d| d.id.clone()).collect(),
        started_at: chrono::Utc::now(),
        started: Instant::now(),
    }
}

/// The report sources of a control plane run without the agent's own (tests, tools): health and
/// `status` still describe the configured devices and the store.
fn standalone_status(config: &Config, store: &Store) -> crate::ops::status::StatusSources {
    crate::ops::status::StatusSources {
        config: Arc::new(config.clone()),
        store: store.clone(),
        live: crate::live::Live::default(),
        aiface: None,
        upstream: None,
        esl: None,
        started_at_ms: chrono::Utc::now().timestamp_millis(),
        logging: None,
        buffer_stats: Default::default(),
    }
}

/// The command table of an agent that runs without MQTT (`mqtt.host` unset), so the local
/// control socket still serves every command: the same handlers over the same services, with
/// a link that is never connected and alerts that stay queued in the store.
pub fn local_registry(
    config: &Config,
    store: &Store,
    logging: &Arc<LoggingHandle>,
    status: Option<crate::ops::status::StatusSources>,
    sync: Option<crate::sync::SyncHandle>,
) -> Arc<Registry> {
    let services = Services {
        identity: identity(config),
        store: store.clone(),
        logging: Arc::clone(logging),
        log_file: (!config.log.file.as_os_str().is_empty()).then(|| config.log.file.clone()),
        link: Arc::new(LinkState::default()),
        alerts: Alerts::new(store.clone(), &config.agent.id),
        status: status.unwrap_or_else(|| standalone_status(config, store)),
        sync,
        backup_dir: config.backup_dir(),
    };
    Arc::new(Registry::standard(&services))
}
