//! Checks that need the whole typed config: duplicates, clashes, combinations that cannot work,
//! and the files the config names. Each finding names the key and its line.

use super::load::{ConfigError, KeyIndex};
use super::secrets::{read_secret, secret_warnings};
use super::{Config, DeviceConfig, Driver, Transport};
use std::collections::HashMap;
use std::path::Path;

/// Collects the problems a human would hit at run time.
struct Findings<'a> {
    index: &'a KeyIndex,
    errors: &'a mut Vec<ConfigError>,
}

impl Findings<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.to_string(),
            line: self.index.line(key),
            message: message.into(),
        });
    }
}

/// Semantic checks that need no file system access.
pub(super) fn check(config: &Config, index: &KeyIndex, errors: &mut Vec<ConfigError>) {
    let mut findings = Findings { index, errors };
    check_name(&mut findings, "agent.id", &config.agent.id);
    check_name(&mut findings, "agent.site", &config.agent.site);
    check_devices(&mut findings, &config.device);
    check_log(&mut findings, config);
    check_intervals(&mut findings, config);
    check_upstream(&mut findings, config);
    check_mqtt(&mut findings, config);
    check_esl(&mut findings, config);
    check_lock(&mut findings, config);
    check_metrics(&mut findings, config);
}

/// The metrics endpoint has no authentication: loopback only unless explicitly allowed.
fn check_metrics(findings: &mut Findings, config: &Config) {
    let metrics = &config.metrics;
    if let Some(listen) = metrics.listen {
        if !listen.ip().is_loopback() && !metrics.allow_non_loopback {
            findings.error(
                "metrics.listen",
                format!(
                    "{listen} is not a loopback address and the metrics endpoint has no \
                     authentication; use 127.0.0.1:PORT (scrape through an SSH tunnel or a local \
                     Prometheus agent), or set metrics.allow_non_loopback = true on a trusted network"
                ),
            );
        }
    }
}

/// Ids end up in MQTT topics and file names: keep them to a safe alphabet.
fn check_name(findings: &mut Findings, key: &str, value: &str) {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        findings.error(
            key,
            format!(
                "{value:?} is not a valid id: use 1-64 letters, digits, '-', '_' or '.' \
                 (it is used in MQTT topics and file names)"
            ),
        );
    }
}

fn check_devices(findings: &mut Findings, devices: &[DeviceConfig]) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut endpoints: HashMap<String, usize> = HashMap::new();
    let mut ports: HashMap<u16, (std::net::IpAddr, usize)> = HashMap::new();
    let mut serial_numbers: HashMap<&str, usize> = HashMap::new();
    for (index, device) in devices.iter().enumerate() {
        let key = |field: &str| format!("device[{index}].{field}");
        check_name(findings, &key("id"), &device.id);
        if let Some(first) = ids.insert(&device.id, index) {
            findings.error(
                &key("id"),
                format!(
                    "duplicate device id `{}` (also used by device[{first}])",
                    device.id
                ),
            );
        }
        let transport = device.effective_transport();
        match (device.driver, transport) {
            (Driver::Aiface, Transport::Websocket) => {
                let listen = device.effective_listen();
                match ports.get(&listen.port()) {
                    Some((ip, other)) if *ip != listen.ip() => findings.error(
                        &key("listen"),
                        format!(
                            "port clash: port {} is also bound on {ip} by device[{other}]; \
                             AI06 devices sharing a port must use the same listen address",
                            listen.port()
                        ),
                    ),
                    _ => {
                        ports.insert(listen.port(), (listen.ip(), index));
                    }
                }
                if device.allowed_sn.is_empty() {
                    findings.error(
                        &key("allowed_sn"),
                        "no serial number is allowed, so no terminal can register as this \
                         device; add the sn shown in the terminal's menu",
                    );
                }
                for peer in &device.allowed_peers {
                    if let Err(problem) = super::peers::PeerRule::parse(peer) {
                        findings.error(&key("allowed_peers"), problem);
                    }
                }
                for sn in &device.allowed_sn {
                    if let Some(other) = serial_numbers.insert(sn, index) {
                        findings.error(
                            &key("allowed_sn"),
                            format!("serial number `{sn}` is also allowed for device[{other}]"),
                        );
                    }
                }
            }
            (Driver::Zk, Transport::Tcp | Transport::Udp) => match &device.address {
                None => findings.error(
                    &key("address"),
                    "missing required value: the terminal's `host:port` (ZK uses port 4370)",
                ),
                Some(address) => {
                    if !valid_host_port(address) {
                        findings.error(
                            &key("address"),
                            format!("{address:?} is not `host:port` (e.g. \"192.0.2.10:4370\")"),
                        );
                    }
                    let endpoint = format!("{transport:?} {address}");
                    if let Some(other) = endpoints.insert(endpoint, index) {
                        findings.error(
                            &key("address"),
                            format!(
                                "port clash: device[{other}] already reads {address}; a \
                                 terminal allows one session at a time"
                            ),
                        );
                    }
                }
            },
            (Driver::Zk, Transport::Serial) => match &device.serial_port {
                None => findings.error(
                    &key("serial_port"),
                    "missing required value: the serial device, e.g. /dev/serial/by-id/...",
                ),
                Some(port) => {
                    let endpoint = format!(
                        "serial {} address {}",
                        port.display(),
                        device.rs485_address.unwrap_or(1)
                    );
                    if let Some(other) = endpoints.insert(endpoint, index) {
                        findings.error(
                            &key("serial_port"),
                            format!(
                                "port clash: device[{other}] uses the same serial port and \
                                 RS485 address"
                            ),
                        );
                    }
                }
            },
            (driver, transport) => findings.error(
                &key("transport"),
                format!(
                    "transport `{}` does not work with driver `{}`: aiface uses `websocket`; \
                     zk uses `tcp`, `udp` or `serial`",
                    format!("{transport:?}").to_lowercase(),
                    format!("{driver:?}").to_lowercase()
                ),
            ),
        }
        if device.live_events
            && (device.driver != Driver::Zk || device.effective_transport() != Transport::Tcp)
        {
            findings.error(
                &key("live_events"),
                "live events are for zk terminals over tcp (the listener keeps one TCP session \
                 open); remove it or set transport = \"tcp\"",
            );
        }
        if device.rs485_address == Some(0) {
            findings.error(&key("rs485_address"), "RS485 addresses run from 1 to 255");
        }
        if ![9_600, 19_200, 38_400, 57_600, 115_200].contains(&device.baud) {
            findings.error(
                &key("baud"),
                format!(
                    "{} is not a speed ZK terminals offer: use 9600, 19200, 38400, 57600 or 115200",
                    device.baud
                ),
            );
        }
        if device.command_timeout.get().as_millis() < 500 {
            findings.error(&key("command_timeout"), "must be at least 500ms");
        }
    }
}

fn valid_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn check_log(findings: &mut Findings, config: &Config) {
    if let Err(err) = super::log_level::parse_level(&config.log.level) {
        findings.error("log.level", err.to_string());
    }
    if config.log.max_files == 0 {
        findings.error("log.max_files", "must be at least 1");
    }
    if config.log.max_file_size.bytes() < 64 * 1024 {
        findings.error("log.max_file_size", "must be at least 64KiB");
    }
}

fn check_intervals(findings: &mut Findings, config: &Config) {
    let at_least = |findings: &mut Findings, key: &str, value: std::time::Duration, min_s: u64| {
        if value.as_secs() < min_s {
            findings.error(key, format!("must be at least {min_s}s"));
        }
    };
    at_least(
        findings,
        "monitor.interval",
        config.monitor.interval.get(),
        1,
    );
    at_least(
        findings,
        "backup.interval",
        config.backup.interval.get(),
        60,
    );
    let share = config.monitor.mass_missing_share;
    if !(share > 0.0 && share <= 1.0) {
        findings.error(
            "monitor.mass_missing_share",
            "must be a share above 0 and at most 1 (0.2 = 20 %)",
        );
    }
    at_least(
        findings,
        "monitor.unread_alert_after",
        config.monitor.unread_alert_after.get(),
        1,
    );
    at_least(
        findings,
        "agent.shutdown_timeout",
        config.agent.shutdown_timeout.get(),
        1,
    );
    if config.store.cache_size.bytes() < 64 << 10 {
        findings.error("store.cache_size", "must be at least 64KiB");
    }
    if config.store.group_commit_window.get() > std::time::Duration::from_secs(1) {
        findings.error(
            "store.group_commit_window",
            "must be at most 1s (every write that must be durable waits this long)",
        );
    }
    if config.backup.retention.get() < config.backup.interval.get() {
        findings.error(
            "backup.retention",
            "is shorter than backup.interval, so no backup would ever be kept",
        );
    }
}

fn check_upstream(findings: &mut Findings, config: &Config) {
    let upstream = &config.upstream;
    if let Some(url) = &upstream.url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            findings.error(
                "upstream.url",
                format!("{url:?} must start with https:// (or http:// on a trusted network)"),
            );
        }
        if upstream.token_file.is_none() {
            findings.error(
                "upstream.token_file",
                "missing required value: the upstream needs a bearer token, read from this file",
            );
        }
    }
    if !(1..=1000).contains(&upstream.batch_size) {
        findings.error("upstream.batch_size", "must be between 1 and 1000");
    }
    if upstream.rate_limit == 0 {
        findings.error(
            "upstream.rate_limit",
            "must be at least 1 request per second",
        );
    }
}

fn check_mqtt(findings: &mut Findings, config: &Config) {
    let mqtt = &config.mqtt;
    if mqtt.client_cert_file.is_some() != mqtt.client_key_file.is_some() {
        findings.error(
            "mqtt.client_cert_file",
            "client_cert_file and client_key_file must be given together",
        );
    }
    if mqtt.username.is_some() != mqtt.password_file.is_some() {
        findings.error(
            "mqtt.password_file",
            "username and password_file must be given together",
        );
    }
    for (index, admin) in mqtt.admin_keys.iter().enumerate() {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD.decode(admin.public_key.trim());
        if decoded.map_or(true, |bytes| bytes.len() != 32) {
            findings.error(
                &format!("mqtt.admin_keys[{index}].public_key"),
                "not an Ed25519 public key: expected 32 bytes in base64 (from `edge-agent keygen`)",
            );
        }
    }
}

fn check_esl(findings: &mut Findings, config: &Config) {
    let esl = &config.esl;
    if !esl.enabled {
        return;
    }
    let required = [
        ("esl.url", esl.url.is_some()),
        ("esl.company", esl.company.is_some()),
        ("esl.store", esl.store.is_some()),
        ("esl.username", esl.username.is_some()),
        ("esl.password_file", esl.password_file.is_some()),
    ];
    for (key, present) in required {
        if !present {
            findings.error(
                key,
                "missing required value (needed when esl.enabled = true)",
            );
        }
    }
    if config.upstream.url.is_none() {
        findings.error(
            "esl.enabled",
            "the shelf-label articles come from the upstream's feed: set upstream.url (and upstream.token_file) or turn esl.enabled off",
        );
    }
    if let Some(url) = &esl.url {
        if reqwest::Url::parse(url).is_err() {
            findings.error(
                "esl.url",
                "not a valid URL (e.g. https://eu.common.solumesl.com/common)",
            );
        }
    }
    if esl.rate_limit == 0 {
        findings.error("esl.rate_limit", "must be at least 1 request per second");
    }
    if esl.verify_interval.get() < std::time::Duration::from_secs(1) {
        findings.error("esl.verify_interval", "must be at least 1s");
    }
}

/// `[lock]`: the arbiter's settings must leave room for renewals and the safety margin, and
/// arbiter mode needs a broker. Lease, lock-delay and max_hold matter in arbiter mode (and
/// max_hold in flock mode too: a session held longer is stopped).
fn check_lock(findings: &mut Findings, config: &Config) {
    use std::time::Duration;
    let lock = &config.lock;
    if lock.acquire_retries == 0 {
        findings.error("lock.acquire_retries", "must be at least 1");
    }
    let lease = lock.lease.get();
    if lease < Duration::from_secs(3) {
        findings.error(
            "lock.lease",
            format!(
                "must be at least 3s: the holder renews every third of the lease (here {:?}) \
                 and stops a fifth before its end, which needs room for a network round trip",
                lease / 3
            ),
        );
    }
    if lease > Duration::from_secs(600) {
        findings.error(
            "lock.lease",
            "must be at most 10min: a dead holder keeps the device for its lease",
        );
    }
    if lock.lock_delay.get() > Duration::from_secs(600) {
        findings.error("lock.lock_delay", "must be at most 10min");
    }
    if lock.max_hold.get() <= lease / 3 {
        findings.error(
            "lock.max_hold",
            "must be longer than the renewal period (a third of lock.lease); a session held \
             longer than max_hold is stopped",
        );
    }
    if lock.mode == super::LockMode::Arbiter && config.mqtt.host.is_none() {
        findings.error(
            "lock.mode",
            "arbiter mode asks the site's lock arbiter over MQTT: set mqtt.host",
        );
    }
}

/// Settings that work but cost something the operator should know about (printed by
/// `check-config` and logged at start-up as warnings).
pub(super) fn trade_offs(config: &Config) -> Vec<String> {
    config
        .device
        .iter()
        .enumerate()
        .filter(|(_, device)| device.live_events)
        .map(|(index, device)| {
            format!(
                "device[{index}].live_events: the agent keeps a session with {} open between \
                 polls and holds its device lock meanwhile; vendor software, `edge-agent probe` \
                 or another agent get the terminal only at a poll, at lock.max_hold or when the \
                 session fails (docs/locks.md, \"Live events\")",
                device.id
            )
        })
        .collect()
}

/// Checks the secret files the config names; returns warnings (e.g. world-readable secrets).
pub(super) fn check_files(
    config: &Config,
    index: &KeyIndex,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let mut findings = Findings { index, errors };
    let mut warnings = Vec::new();
    let mut secrets: Vec<(String, &Path)> = Vec::new();
    secrets.extend(
        config
            .upstream
            .token_file
            .as_deref()
            .map(|p| ("upstream.token_file".into(), p)),
    );
    secrets.extend(
        config
            .mqtt
            .password_file
            .as_deref()
            .map(|p| ("mqtt.password_file".into(), p)),
    );
    secrets.extend(
        config
            .mqtt
            .client_key_file
            .as_deref()
            .map(|p| ("mqtt.client_key_file".into(), p)),
    );
    secrets.extend(
        config
            .esl
            .password_file
            .as_deref()
            .map(|p| ("esl.password_file".into(), p)),
    );
    for (index, device) in config.device.iter().enumerate() {
        if let Some(path) = device.comm_key_file.as_deref() {
            let key = format!("device[{index}].comm_key_file");
            if let Ok(text) = read_secret(path) {
                if text.parse::<u32>().is_err() {
                    findings.error(&key, format!("{} must hold a number", path.display()));
                }
            }
            secrets.push((key, path));
        }
    }
    for (key, path) in secrets {
        match read_secret(path) {
            Ok(_) => warnings.extend(secret_warnings(&key, path)),
            Err(err) => findings.error(&key, format!("cannot read {}: {err}", path.display())),
        }
    }
    warnings
}
