//! Process signals, turned into the two things the supervisor cares about.
//!
//! signal-hook replaces the default actions for good once registered (its documented rule), so a
//! second SIGTERM/SIGINT during a slow shutdown must be handled by us: the supervisor exits
//! immediately when it sees one.

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::{Handle, Signals};

/// What a signal asks the agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP: re-read the config.
    Reload,
    /// SIGTERM or SIGINT: stop cleanly (a second one: stop now).
    Stop {
        /// The signal's name, for the log line.
        signal: &'static str,
    },
}

/// The stream of signal requests; register it before any other thread starts.
pub struct SignalRequests {
    signals: Signals,
    handle: Handle,
}

impl SignalRequests {
    /// Registers SIGTERM, SIGINT and SIGHUP. Must run inside the tokio runtime.
    pub fn register() -> std::io::Result<Self> {
        let signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let handle = signals.handle();
        Ok(Self { signals, handle })
    }

    /// Waits for the next signal; `None` once the stream is closed.
    pub async fn next(&mut self) -> Option<Request> {
        let signal = self.signals.next().await?;
        Some(match signal {
            SIGHUP => Request::Reload,
            SIGINT => Request::Stop { signal: "SIGINT" },
            _ => Request::Stop { signal: "SIGTERM" },
        })
    }
}

impl Drop for SignalRequests {
    fn drop(&mut self) {
        self.handle.close();
    }
}
