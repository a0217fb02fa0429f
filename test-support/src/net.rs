//! Loopback ports for servers that must be named in a config before they start.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Tests that let a server bind port 0 do not need this; it exists for configs and command
/// lines that must name the port up front. Another process can take the port in between, so
/// servers started this way should retry on a bind failure (see [`crate::mosquitto`]).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}
