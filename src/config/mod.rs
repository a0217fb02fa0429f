//! The agent's configuration: one TOML file, typed with serde, with a documented default for
//! every optional value (the annotated reference is `config/edge-agent.toml`).
//!
//! Loading never stops at the first mistake: [`load`] reports one line per problem, each naming
//! the key path and, where the file shows it, the line, so a technician can fix a broken config
//! in one pass instead of one restart per typo.

mod human;
mod load;
pub mod log_level;
pub mod peers;
mod secrets;
mod validate;

pub use human::{ByteSize, HumanDuration};
pub use load::{load, parse, ConfigError, ConfigErrors, Loaded};
pub use secrets::{read_secret, secret_warnings};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this agent is and where it keeps its state.
    pub agent: AgentConfig,
    /// The terminals this agent reads; `[[device]]` entries.
    #[serde(default)]
    pub device: Vec<DeviceConfig>,
    /// The northbound HTTP service that receives events.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The MQTT broker used for health, alerts and admin commands.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// How device sessions are serialised between processes and hosts.
    #[serde(default)]
    pub lock: LockConfig,
    /// Periodic full credential backups.
    #[serde(default)]
    pub backup: BackupConfig,
    /// The unmapped-user buffer.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Disappearance monitoring (the poll loop).
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// Local logging for field technicians.
    #[serde(default)]
    pub log: LogConfig,
    /// The embedded store (sled).
    #[serde(default)]
    pub store: StoreConfig,
    /// The electronic shelf-label gateway.
    #[serde(default)]
    pub esl: EslConfig,
    /// The Prometheus metrics endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: an opt-in Prometheus text endpoint (`GET /metrics`). Unauthenticated, so it
/// listens on loopback only unless `allow_non_loopback` says the network is trusted.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to serve on, e.g. `127.0.0.1:9464`; unset: no metrics endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// Allow a `listen` address that is not loopback (anyone who reaches it reads the figures).
    pub allow_non_loopback: bool,
}

/// `[agent]`: identity and state location.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Unique id of this agent; scopes MQTT topics and upstream events. Required.
    pub id: String,
    /// Site the agent belongs to (a store, a building); scopes MQTT topics.
    #[serde(default = "defaults::site")]
    pub site: String,
    /// Directory for the store, backups and other durable state.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// How long a graceful stop may take before tasks are abandoned.
    #[serde(default = "defaults::shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    /// Directory for run-time files: the local control socket (`control.sock`), which the
    /// on-box commands use to ask the running agent. systemd creates `/run/edge-agent`
    /// (`RuntimeDirectory=`); it must be the same for the agent and the commands.
    #[serde(default = "defaults::runtime_dir")]
    pub runtime_dir: PathBuf,
}

/// Which protocol family a device speaks.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// AI06 and other AiFace terminals: WebSocket + JSON, the device dials the agent.
    Aiface,
    /// ZK binary protocol terminals: the agent dials the device.
    Zk,
}

/// How the agent reaches a device.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The device dials our WebSocket listener (AiFace only).
    Websocket,
    /// TCP to the device's port (ZK, usually 4370).
    Tcp,
    /// UDP to the device's port (ZK, older firmware).
    Udp,
    /// RS232/RS485 through a serial adapter (ZK, experimental).
    Serial,
}

/// One `[[device]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique id of the device within this agent (used in logs, topics, the store). Required.
    pub id: String,
    /// Protocol family. Required.
    pub driver: Driver,
    /// How to reach it; defaults to `websocket` for `aiface` and `tcp` for `zk`.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// Where our WebSocket listener binds (aiface); default `0.0.0.0:7788`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The device's `host:port` (zk over tcp/udp). Required for those transports.
    #[serde(default)]
    pub address: Option<String>,
    /// Serial device path (zk over serial), preferably `/dev/serial/by-id/...`.
    #[serde(default)]
    pub serial_port: Option<PathBuf>,
    /// Serial line speed.
    #[serde(default = "defaults::baud")]
    pub baud: u32,
    /// RS485 device address (1–255) when several terminals share a bus.
    #[serde(default)]
    pub rs485_address: Option<u8>,
    /// How often this device is read; default `monitor.interval`.
    #[serde(default)]
    pub poll_interval: Option<HumanDuration>,
    /// File holding the device's numeric comm key (zk); absent means key 0.
    #[serde(default)]
    pub comm_key_file: Option<PathBuf>,
    /// Serial numbers allowed to register as this device (aiface); empty accepts none.
    #[serde(default)]
    pub allowed_sn: Vec<String>,
    /// Addresses or networks (`10.1.0.0/16`) the terminal may connect from (aiface); empty
    /// allows any. A terminal registering from elsewhere is refused even with a good `sn`.
    #[serde(default)]
    pub allowed_peers: Vec<String>,
    /// Ask the terminal to push keypad enrolments (`senduser`) as they happen (aiface).
    #[serde(default = "defaults::yes")]
    pub send_user_pushes: bool,
    /// Text encoding of user names on the device (zk): utf-8, gbk, windows-1251, ...
    #[serde(default = "defaults::encoding")]
    pub name_encoding: String,
    /// Fall back from TCP to UDP when TCP fails (zk).
    #[serde(default)]
    pub udp_fallback: bool,
    /// Keep a session open between polls, registered for the terminal's realtime attendance
    /// events, so punches are stored within a second instead of at the next poll (zk over tcp).
    /// Opt-in: while it listens the agent holds the device lock, so other programs (vendor
    /// software, `probe`, a second agent) get the terminal only when the listener yields it at
    /// a poll, at the lock's `max_hold`, or to the agent's own backups, restores and conflict
    /// writes. See docs/locks.md ("Live events").
    #[serde(default)]
    pub live_events: bool,
    /// Per-command timeout.
    #[serde(default = "defaults::command_timeout")]
    pub command_timeout: HumanDuration,
}

/// `[upstream]`: the HTTP backend. Without `url` nothing is forwarded (events stay queued).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL of the upstream API (https in production).
    pub url: Option<String>,
    /// File holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Events per request.
    pub batch_size: u32,
    /// Requests per second at most.
    pub rate_limit: u32,
    /// TCP/TLS connect timeout.
    pub connect_timeout: HumanDuration,
    /// Whole-request timeout.
    pub request_timeout: HumanDuration,
    /// Upper bound of the retry backoff.
    pub max_backoff: HumanDuration,
    /// How often mappings are pulled.
    pub mapping_pull_interval: HumanDuration,
    /// Outbox byte cap; past it new events are refused and an alarm is raised.
    pub outbox_max_bytes: ByteSize,
}

/// `[mqtt]`: the control plane. Without `host` the agent runs without MQTT.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: Option<String>,
    /// Broker port; default 8883 with TLS, 1883 without.
    pub port: Option<u16>,
    /// Use TLS (the server certificate is always verified).
    pub tls: bool,
    /// Extra CA certificate (PEM) for the broker.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// Private key matching `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// MQTT user name.
    pub username: Option<String>,
    /// File holding the MQTT password.
    pub password_file: Option<PathBuf>,
    /// Client id; default `edge-agent-<site>-<agent id>`.
    pub client_id: Option<String>,
    /// Keep-alive interval.
    pub keep_alive: HumanDuration,
    /// Administrators whose Ed25519 keys may sign commands.
    pub admin_keys: Vec<AdminKey>,
    /// Allow read-only commands without a signature.
    pub allow_unsigned_reads: bool,
    /// Tolerated clock difference when checking a command's issue and expiry times.
    pub clock_skew: HumanDuration,
}

/// One administrator allowed to sign commands.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    /// Name recorded in the audit log for commands signed with this key.
    pub name: String,
    /// Public key, base64 (as printed by `edge-agent keygen`).
    pub public_key: String,
}

/// How device sessions are locked.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// A kernel `flock` per device: contenders on the same box.
    #[default]
    Flock,
    /// The MQTT lock arbiter: contenders on several hosts.
    Arbiter,
}

/// `[lock]`: per-device locks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LockConfig {
    /// `flock` (one box) or `arbiter` (several hosts, over MQTT).
    pub mode: LockMode,
    /// Directory of the lock files in `flock` mode.
    pub dir: PathBuf,
    /// Lease length in `arbiter` mode.
    pub lease: HumanDuration,
    /// Wait after a lease expires before granting it again.
    pub lock_delay: HumanDuration,
    /// Acquisition attempts before a poll is skipped.
    pub acquire_retries: u32,
    /// A lock held longer than this is released with a warning.
    pub max_hold: HumanDuration,
}

/// `[backup]`: periodic full backups of every credential.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Time between backups of each device.
    pub interval: HumanDuration,
    /// Backups older than this are removed.
    pub retention: HumanDuration,
    /// Where backup files go; default `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
}

/// `[buffer]`: the unmapped-user buffer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Records not seen on any device for this long are swept (never while still on a device).
    pub retention: HumanDuration,
    /// Audit records older than this are swept.
    pub audit_retention: HumanDuration,
}

/// `[monitor]`: the poll loop that watches for vanished users.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Time between complete reads of each device.
    pub interval: HumanDuration,
    /// A complete read losing more than this share of the previous read's users (and at least
    /// `mass_missing_min` of them), or dropping to 0 users, is a mass disappearance: its
    /// `user_missing` events are held for an administrator.
    pub mass_missing_share: f64,
    /// The fewest missing users that count as a mass disappearance.
    pub mass_missing_min: u64,
    /// A device not completely read for this long (not connected, or every read failing)
    /// raises a `device_unread` alarm and alert.
    pub unread_alert_after: HumanDuration,
    /// This many incomplete reads of a device in a row raise a `reads_incomplete` alarm and
    /// alert.
    pub incomplete_alert_after: u32,
    /// A device's first complete read with more new users than this commits them in steps of
    /// this many users (each step a consistent store that knows fewer users), so its memory
    /// stays bounded; 0 applies the whole read in one transaction.
    pub first_read_chunk: u32,
}

/// Whether logs go to journald.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JournaldChoice {
    /// When running under systemd (`JOURNAL_STREAM` is set).
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `[log]`: local logs for field technicians.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level or filter directive (`info`, `debug`, `edge_agent::device=debug,info`); `RUST_LOG`
    /// overrides it.
    pub level: String,
    /// The size-capped log file; empty string disables it.
    pub file: PathBuf,
    /// Size of one log file before it is rotated.
    pub max_file_size: ByteSize,
    /// Number of log files kept (current + rotated); total ≤ max_file_size × max_files.
    pub max_files: u32,
    /// Journald output: `auto`, `always` or `never`.
    pub journald: JournaldChoice,
}

/// `[store]`: the embedded sled store.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Page cache size (sled's own default of 1 GiB is far too big for a gateway box).
    pub cache_size: ByteSize,
    /// Whether sled compresses the store (zstd, cheapest level). Changing it rewrites the
    /// store once at the next start (see `StoreOptions::compression`).
    pub compression: bool,
    /// How long the group committer lingers before a flush and fsync so that writers arriving
    /// close together share it (see `StoreOptions::group_commit_window`). `0s`, the default,
    /// suits a disk with a fast fsync; a slow SD card may gain from a few ms. Events reach the
    /// upstream only after that fsync, so this is also the added forwarding delay.
    pub group_commit_window: HumanDuration,
}

/// `[esl]`: the shelf-label gateway (AIMS). Disabled unless `enabled = true`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EslConfig {
    /// Turn the ESL adapter on.
    pub enabled: bool,
    /// Base URL of the AIMS API.
    pub url: Option<String>,
    /// AIMS company code.
    pub company: Option<String>,
    /// AIMS store code.
    pub store: Option<String>,
    /// AIMS user name.
    pub username: Option<String>,
    /// File holding the AIMS password.
    pub password_file: Option<PathBuf>,
    /// How often articles are checked for drift (a full paged read of the store's articles).
    pub verify_interval: HumanDuration,
    /// Requests per second to the gateway at most (AIMS documents no limit; one request at a
    /// time, paced, and `Retry-After` honoured on 429).
    pub rate_limit: u32,
    /// How long a write may stay unconfirmed by reading back before it is reported as
    /// `esl_failed` (`unconfirmed`) and left to the next verification.
    pub confirm_timeout: HumanDuration,
}

impl DeviceConfig {
    /// The transport in effect, after the per-driver default.
    pub fn effective_transport(&self) -> Transport {
        self.transport.unwrap_or(match self.driver {
            Driver::Aiface => Transport::Websocket,
            Driver::Zk => Transport::Tcp,
        })
    }

    /// The WebSocket listen address in effect (aiface).
    pub fn effective_listen(&self) -> SocketAddr {
        self.listen.unwrap_or_else(defaults::aiface_listen)
    }
}

impl Config {
    /// Directory of backup files in effect.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup
            .dir
            .clone()
            .unwrap_or_else(|| self.agent.data_dir.join("backups"))
    }

    /// The local control socket of the running agent: where it listens and where the on-box
    /// commands (`status`, `buffer list`, …) look for it.
    pub fn control_socket(&self) -> PathBuf {
        self.agent.runtime_dir.join("control.sock")
    }

    /// Directory of the sled store.
    pub fn store_dir(&self) -> PathBuf {
        self.agent.data_dir.join("store")
    }

    /// How the store is opened (directory and `[store]` cache size): the store does not read
    /// the config, so the agent and the on-box commands convert it here, the same way.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            cache_capacity: self.store.cache_size.bytes(),
            group_commit_window: self.store.group_commit_window.get(),
            compression: self.store.compression,
            ..crate::store::StoreOptions::at(self.store_dir())
        }
    }

    /// Poll interval of one device in effect.
    pub fn poll_interval(&self, device: &DeviceConfig) -> HumanDuration {
        device.poll_interval.unwrap_or(self.monitor.interval)
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: None,
            token_file: None,
            ca_file: None,
            batch_size: 100,
            rate_limit: 10,
            connect_timeout: HumanDuration::from_secs(5),
            request_timeout: HumanDuration::from_secs(30),
            max_backoff: HumanDuration::from_secs(300),
            mapping_pull_interval: HumanDuration::from_secs(60),
            outbox_max_bytes: ByteSize(64_000_000),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: true,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            username: None,
            password_file: None,
            client_id: None,
            keep_alive: HumanDuration::from_secs(30),
            admin_keys: Vec::new(),
            allow_unsigned_reads: false,
            clock_skew: HumanDuration::from_secs(120),
        }
    }
}

impl MqttConfig {
    /// The broker port in effect: 8883 with TLS, 1883 without, unless set.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 8883 } else { 1883 })
    }
}

impl Default for LockConfig {
    fn default() -> Self {
        Self {
            mode: LockMode::Flock,
            dir: PathBuf::from("/run/edge-agent/locks"),
            lease: HumanDuration::from_secs(10),
            lock_delay: HumanDuration::from_secs(5),
            acquire_retries: 3,
            max_hold: HumanDuration::from_secs(600),
        }
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            interval: HumanDuration::from_secs(6 * 3600),
            retention: HumanDuration::from_secs(30 * 86_400),
            dir: None,
        }
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            retention: HumanDuration::from_secs(90 * 86_400),
            audit_retention: HumanDuration::from_secs(365 * 86_400),
        }
    }
}

/// How many new users a big first read commits per step unless `[monitor] first_read_chunk`
/// says otherwise. Chosen with `benches/footprint.rs` (release agent, 10,000 users with an
/// 8 KB photo + card each): steps of 500 peaked at 41.2 MB in 4.3 s, of 200 at 32.2 MB in
/// 8.9 s, of 100 at 29.1 MB in 7.0 s (the peak is the nodes sled keeps of what each step
/// wrote, not the step's own data).
pub const DEFAULT_FIRST_READ_CHUNK: u32 = 100;

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: HumanDuration::from_secs(300),
            mass_missing_share: 0.2,
            mass_missing_min: 5,
            unread_alert_after: HumanDuration::from_secs(3600),
            incomplete_alert_after: 3,
            first_read_chunk: DEFAULT_FIRST_READ_CHUNK,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            file: PathBuf::from("/var/log/edge-agent/edge-agent.log"),
            max_file_size: ByteSize(5_000_000),
            max_files: 5,
            journald: JournaldChoice::Auto,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_size: ByteSize(256 << 10),
            compression: true,
            group_commit_window: HumanDuration(std::time::Duration::ZERO),
        }
    }
}

impl Default for EslConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: None,
            company: None,
            store: None,
            username: None,
            password_file: None,
            verify_interval: HumanDuration::from_secs(300),
            rate_limit: 2,
            confirm_timeout: HumanDuration::from_secs(60),
        }
    }
}

/// Default values referenced by `#[serde(default = ...)]`; one place so the annotated
/// reference config can be checked against them.
mod defaults {
    use super::HumanDuration;
    use std::net::SocketAddr;
    use std::path::PathBuf;

    pub(super) fn site() -> String {
        "default".into()
    }
    pub(super) fn data_dir() -> PathBuf {
        PathBuf::from("/var/lib/edge-agent")
    }
    pub(super) fn runtime_dir() -> PathBuf {
        PathBuf::from("/run/edge-agent")
    }
    pub(super) fn shutdown_timeout() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    pub(super) fn baud() -> u32 {
        115_200
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn encoding() -> String {
        "utf-8".into()
    }
    pub(super) fn command_timeout() -> HumanDuration {
        HumanDuration::from_secs(12)
    }
    pub(super) fn aiface_listen() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 7788))
    }
}

/// A device id as a file name part (lock files, backup files): letters, digits, `-`, `_` and
/// `.` (not leading) stay, every other byte becomes `%XX`, so two device ids never share a
/// file and no id can climb out of its directory.
pub fn file_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (index, byte) in id.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || byte == b'-'
            || byte == b'_'
            || (byte == b'.' && index > 0);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
