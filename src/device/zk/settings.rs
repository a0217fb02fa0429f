//! What a ZK session needs from a `[[device]]` entry, checked once up front so a bad comm-key
//! file or encoding label fails with a config message instead of halfway through a read.

use crate::config::{read_secret, DeviceConfig, Driver, Transport};
use device_protocols::zk::{CommKey, TextCodec};
use std::path::PathBuf;
use std::time::Duration;

/// Where the terminal is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` over TCP; `udp_fallback` tries UDP on the same address when TCP fails.
    Tcp {
        /// The device's `host:port`.
        address: String,
        /// Try UDP when TCP does not connect.
        udp_fallback: bool,
    },
    /// `host:port` over UDP.
    Udp {
        /// The device's `host:port`.
        address: String,
    },
    /// A serial port (experimental framing).
    Serial {
        /// The port, preferably `/dev/serial/by-id/...`.
        path: PathBuf,
        /// Line speed.
        baud: u32,
        /// RS485 address (the device's DeviceID; 1 on RS232).
        address: u8,
    },
}

/// Everything a ZK session needs, resolved from the config.
#[derive(Clone, Debug)]
pub struct ZkSettings {
    /// The configured device id.
    pub device_id: String,
    /// Where the device is.
    pub endpoint: Endpoint,
    /// The comm key (0 = none).
    pub comm_key: CommKey,
    /// How names are decoded: strict UTF-8 first, then this code page.
    pub codec: TextCodec,
    /// Timeout of each request and of each bulk packet.
    pub command_timeout: Duration,
}

/// A device entry that cannot drive a ZK session.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not a zk device.
    #[error("device `{0}` does not use the zk driver")]
    NotZk(String),
    /// The AiFace transport on a zk device.
    #[error("device `{0}`: zk terminals are reached over tcp, udp or serial, not websocket")]
    Websocket(String),
    /// TCP/UDP without an address.
    #[error("device `{0}`: `address` (host:port) is required for zk over tcp or udp")]
    MissingAddress(String),
    /// Serial without a port.
    #[error("device `{0}`: `serial_port` is required for zk over serial")]
    MissingSerialPort(String),
    /// The comm key file is unreadable.
    #[error("device `{device}`: cannot read comm_key_file {path}: {source}")]
    CommKeyUnreadable {
        /// Device id.
        device: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The comm key is not a number.
    #[error("device `{device}`: comm_key_file {path} must hold the device's numeric comm key (0–4294967295)")]
    CommKeyNotNumeric {
        /// Device id.
        device: String,
        /// The file.
        path: PathBuf,
    },
    /// Unknown `name_encoding`.
    #[error("device `{device}`: name_encoding: {source}")]
    Encoding {
        /// Device id.
        device: String,
        /// The codec's error.
        source: device_protocols::zk::TextError,
    },
}

impl ZkSettings {
    /// Resolves a `[[device]]` entry, reading the comm key file.
    pub fn from_config(device: &DeviceConfig) -> Result<ZkSettings, SettingsError> {
        let id = device.id.clone();
        if device.driver != Driver::Zk {
            return Err(SettingsError::NotZk(id));
        }
        let address = || {
            device
                .address
                .clone()
                .ok_or_else(|| SettingsError::MissingAddress(id.clone()))
        };
        let endpoint = match device.effective_transport() {
            Transport::Udp => Endpoint::Udp {
                address: address()?,
            },
            Transport::Serial => Endpoint::Serial {
                path: device
                    .serial_port
                    .clone()
                    .ok_or_else(|| SettingsError::MissingSerialPort(id.clone()))?,
                baud: device.baud,
                address: device.rs485_address.unwrap_or(1),
            },
            Transport::Websocket => return Err(SettingsError::Websocket(id)),
            Transport::Tcp => Endpoint::Tcp {
                address: address()?,
                udp_fallback: device.udp_fallback,
            },
        };
        let comm_key = match &device.comm_key_file {
            None => CommKey(0),
            Some(path) => {
                let text =
                    read_secret(path).map_err(|source| SettingsError::CommKeyUnreadable {
                        device: id.clone(),
                        path: path.clone(),
                        source,
                    })?;
                CommKey(text.parse().map_err(|_| SettingsError::CommKeyNotNumeric {
                    device: id.clone(),
                    path: path.clone(),
                })?)
            }
        };
        let codec = TextCodec::for_label(&device.name_encoding).map_err(|source| {
            SettingsError::Encoding {
                device: id.clone(),
                source,
            }
        })?;
        Ok(ZkSettings {
            device_id: id,
            endpoint,
            comm_key,
            codec,
            command_timeout: device.command_timeout.get(),
        })
    }
}
