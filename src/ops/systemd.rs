//! The little of systemd's notify protocol the agent needs: `READY=1` once serving,
//! `RELOADING=1`/`READY=1` around a config reload, `STOPPING=1`, and `WATCHDOG=1` pings.
//!
//! It is a datagram to the socket named in `NOTIFY_SOCKET`; a dozen lines do not justify a
//! dependency. Outside systemd every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification; silently does nothing outside systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(err) = result {
        tracing::debug!(%err, state, "systemd notification failed");
    }
}

/// Half the watchdog period systemd asked for, if it asked (`WATCHDOG_USEC`).
pub fn watchdog_interval() -> Option<Duration> {
    let micros: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (micros > 0).then(|| Duration::from_micros(micros / 2))
}
