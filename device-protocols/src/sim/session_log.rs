//! The record of every client session an emulated terminal serves, one JSON object per line,
//! timed on the emulator's own monotonic clock.
//!
//! A terminal cannot check a fencing token, so the only witness of "two programs talked to this
//! device at once" is the device itself. The lock tests read this log as that witness: each
//! session is an `open` line when the connection is accepted and a `close` line when it ends,
//! both stamped with `CLOCK_MONOTONIC` read by the emulator (never the client's clock, never
//! wall time), and the `close` line lists the commands the session carried. The peer address
//! (the client's local socket address) lets a checker join a session with what the client says
//! it held at the time; the times of its first and last command tell an idle open connection
//! (a paused client's) from one that is touching the device.
//!
//! Lines are written and flushed as they happen, so a session still open when the emulator is
//! stopped shows up as an `open` without a `close`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;

/// Nanoseconds on `CLOCK_MONOTONIC`: the emulator's clock for session times. Tests on the same
/// host read the same clock (Rust's `Instant` is built on it), so they can relate a fault they
/// injected to the sessions the emulator saw.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

/// One line of the session log.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum Line<'a> {
    /// A client connected.
    Open {
        session: u64,
        transport: &'static str,
        peer: SocketAddr,
        mono_ns: u64,
    },
    /// That client's session ended (it closed, or the emulator closed it).
    Close {
        session: u64,
        transport: &'static str,
        peer: SocketAddr,
        mono_ns: u64,
        commands: &'a [&'static str],
        /// When the first and the last command arrived (`null` without commands): a session
        /// kept open but idle, such as one of a paused client, touches the device only
        /// between these.
        first_command_ns: Option<u64>,
        last_command_ns: Option<u64>,
    },
}

/// An open session log; without a file, sessions are counted but nothing is written.
pub struct SessionLog {
    out: Option<Mutex<BufWriter<File>>>,
    next: AtomicU64,
}

impl SessionLog {
    /// Opens (appending) the log at `path`, if one was asked for.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Arc<SessionLog>> {
        let out = match path {
            Some(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open session log {}", path.display()))?;
                Some(Mutex::new(BufWriter::new(file)))
            }
            None => None,
        };
        Ok(Arc::new(SessionLog {
            out,
            next: AtomicU64::new(1),
        }))
    }

    /// Records that `peer` opened a session over `transport` now; the session's `close` line is
    /// written when the returned record is dropped.
    pub fn begin(self: &Arc<Self>, transport: &'static str, peer: SocketAddr) -> Session {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        self.write(&Line::Open {
            session,
            transport,
            peer,
            mono_ns: monotonic_ns(),
        });
        Session {
            log: Arc::clone(self),
            session,
            transport,
            peer,
            commands: Vec::new(),
            first_command_ns: None,
            last_command_ns: None,
        }
    }

    fn write(&self, line: &Line<'_>) {
        let Some(out) = &self.out else {
            return;
        };
        let text = serde_json::to_string(line).expect("a session-log line serialises");
        let mut out = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            eprintln!("device-sim: cannot write the session log: {error}");
        }
    }
}

/// A session being served; dropping it writes its `close` line.
pub struct Session {
    log: Arc<SessionLog>,
    session: u64,
    transport: &'static str,
    peer: SocketAddr,
    commands: Vec<&'static str>,
    first_command_ns: Option<u64>,
    last_command_ns: Option<u64>,
}

impl Session {
    /// Notes one command the session carried (its protocol name, `?` when unknown), now.
    pub fn command(&mut self, name: &'static str) {
        let now = monotonic_ns();
        self.first_command_ns.get_or_insert(now);
        self.last_command_ns = Some(now);
        self.commands.push(name);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.log.write(&Line::Close {
            session: self.session,
            transport: self.transport,
            peer: self.peer,
            mono_ns: monotonic_ns(),
            commands: &self.commands,
            first_command_ns: self.first_command_ns,
            last_command_ns: self.last_command_ns,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_session_is_an_open_and_a_close_line_on_the_monotonic_clock() {
        let path = std::env::temp_dir().join(format!(
            "device-protocols-session-log-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let log = SessionLog::open(Some(&path)).unwrap();
        let peer: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        {
            let mut first = log.begin("tcp", peer);
            first.command("CONNECT");
            first.command("EXIT");
            let _second = log.begin("tcp", "127.0.0.1:40002".parse().unwrap());
        }
        let lines: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        std::fs::remove_file(&path).unwrap();
        let events: Vec<_> = lines
            .iter()
            .map(|l| (l["event"].as_str().unwrap(), l["session"].as_u64().unwrap()))
            .collect();
        // The second session opened while the first was open, and closed first (drop order).
        assert_eq!(
            events,
            [("open", 1), ("open", 2), ("close", 2), ("close", 1)]
        );
        assert_eq!(lines[0]["peer"], "127.0.0.1:40001");
        assert_eq!(lines[3]["commands"], serde_json::json!(["CONNECT", "EXIT"]));
        assert!(lines[3]["first_command_ns"].as_u64() <= lines[3]["last_command_ns"].as_u64());
        assert!(lines[2]["last_command_ns"].is_null(), "no commands");
        let times: Vec<u64> = lines
            .iter()
            .map(|l| l["mono_ns"].as_u64().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }
}
