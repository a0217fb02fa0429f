//! How to reach the broker: address, TLS and credentials, turned into rumqttc options.
//!
//! Shared by the agent and `edge-agent ctl` so both speak to the broker the same way. TLS is
//! rustls with the *ring* provider only (no OpenSSL, no aws-lc, so cross-compiling stays a
//! pure-Rust affair), and the server certificate is always verified: against `ca_file` when
//! given, otherwise against the system's trust store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::MqttConfig;

/// Largest packet this client accepts from the broker (requests are small; this leaves room
/// for generous arguments while refusing a flood).
pub const MAX_INCOMING_PACKET: u32 = 64 * 1024;

/// At most this many QoS 1 publishes of ours await the broker's acknowledgement at once.
/// rumqttc sizes its in-flight table by this limit when the client is created and defaults it
/// to 65,535, which preallocates 65,536 slots of a whole `Publish` each: about 14 MB resident
/// as soon as `[mqtt]` is configured, broker or not (measured with heaptrack, `README.md`
/// "Performance"). The agent publishes alerts, health and command replies one by one; a
/// hundred in flight is far more than it ever has.
const OUTGOING_INFLIGHT: u16 = 100;

/// Everything needed to open an MQTT connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSettings {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS material; `None` for plain TCP (loopback or a trusted LAN only).
    pub tls: Option<TlsFiles>,
    /// User name and the password (already read from its file).
    pub credentials: Option<(String, String)>,
    /// Client id; must be unique per process, or two clients keep kicking each other off.
    pub client_id: String,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

/// Files that configure TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Extra CA (PEM) to trust instead of the system trust store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) and its private key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The broker settings could not be turned into a working client configuration.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// A file named in the settings could not be read or parsed.
    #[error("mqtt: cannot use {what} {}: {reason}", path.display())]
    File {
        /// Which setting (`mqtt.ca_file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No trusted CA could be found for verifying the broker.
    #[error(
        "mqtt: no CA certificates to verify the broker with: the system trust store is empty \
         or unreadable ({0}); set mqtt.ca_file"
    )]
    NoTrustRoots(String),
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("mqtt: TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// `[mqtt]` has no `host`.
    #[error("mqtt: no broker configured (mqtt.host is not set)")]
    NoHost,
}

impl BrokerSettings {
    /// The agent's settings from `[mqtt]`, reading the password file now so a missing file is
    /// reported at start, not at the first reconnect.
    pub fn from_config(
        config: &MqttConfig,
        site: &str,
        agent_id: &str,
    ) -> Result<BrokerSettings, BrokerError> {
        let host = config.host.clone().ok_or(BrokerError::NoHost)?;
        let credentials = match (&config.username, &config.password_file) {
            (Some(user), Some(file)) => {
                Some((user.clone(), read_text("mqtt.password_file", file)?))
            }
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        let tls = config.tls.then(|| TlsFiles {
            ca_file: config.ca_file.clone(),
            client_cert: config
                .client_cert_file
                .clone()
                .zip(config.client_key_file.clone()),
        });
        Ok(BrokerSettings {
            host,
            port: config.effective_port(),
            tls,
            credentials,
            client_id: config
                .client_id
                .clone()
                .unwrap_or_else(|| format!("edge-agent-{site}-{agent_id}")),
            keep_alive: config.keep_alive.get(),
        })
    }

    /// rumqttc options for MQTT 5 with a clean start (this client keeps no broker session:
    /// it resubscribes on every connection and re-sends what it must deliver from the store).
    pub fn mqtt_options(&self) -> Result<MqttOptions, BrokerError> {
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_keep_alive(self.keep_alive.max(Duration::from_secs(5)))
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_INCOMING_PACKET))
            .set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT)
            .set_connection_timeout(10);
        // Requests and replies are small single packets: without TCP_NODELAY, Nagle's
        // algorithm meets the peer's delayed ACK and adds ~40 ms per hop (measured: ~90 ms
        // round trips on loopback instead of a few ms).
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user, password);
        }
        if let Some(files) = &self.tls {
            let config = client_tls_config(files)?;
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
        }
        Ok(options)
    }
}

fn read_text(what: &'static str, path: &Path) -> Result<String, BrokerError> {
    crate::config::read_secret(path).map_err(|err| BrokerError::File {
        what,
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

/// A rustls client configuration on the ring provider that verifies the server.
fn client_tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, BrokerError> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            for cert in read_certs("mqtt.ca_file", path)? {
                roots.add(cert).map_err(|err| BrokerError::File {
                    what: "mqtt.ca_file",
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or("no certificates found".to_owned(), ToString::to_string);
                return Err(BrokerError::NoTrustRoots(why));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match &files.client_cert {
        Some((cert, key)) => {
            let chain = read_certs("mqtt.client_cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|err| BrokerError::File {
                what: "mqtt.client_key_file",
                path: key.clone(),
                reason: err.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let bad = |reason: String| BrokerError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(err.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MqttConfig {
        MqttConfig {
            host: Some("broker.local".into()),
            tls: false,
            ..MqttConfig::default()
        }
    }

    #[test]
    fn default_client_id_names_site_and_agent() {
        let settings = BrokerSettings::from_config(&config(), "s1", "gw").unwrap();
        assert_eq!(settings.client_id, "edge-agent-s1-gw");
        assert_eq!(settings.port, 1883);
        assert!(settings.tls.is_none());
    }

    #[test]
    fn the_in_flight_table_is_sized_for_the_agent_not_for_the_protocol_maximum() {
        let settings = BrokerSettings::from_config(&config(), "s1", "gw").unwrap();
        let options = settings.mqtt_options().unwrap();
        assert_eq!(
            options.get_outgoing_inflight_upper_limit(),
            Some(OUTGOING_INFLIGHT)
        );
    }

    #[test]
    fn a_missing_password_file_is_reported_with_its_key() {
        let mut config = config();
        config.username = Some("u".into());
        config.password_file = Some("/nonexistent/edge-agent-test".into());
        let err = BrokerSettings::from_config(&config, "s", "a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.password_file"), "{err}");
    }

    #[test]
    fn a_bad_ca_file_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let mut config = config();
        config.tls = true;
        config.ca_file = Some(ca);
        let settings = BrokerSettings::from_config(&config, "s", "a").unwrap();
        let err = settings.mqtt_options().unwrap_err().to_string();
        assert!(err.contains("mqtt.ca_file"), "{err}");
    }
}
