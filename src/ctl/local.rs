//! The client side of the running agent's local control socket
//! (`crate::mqtt::command::socket`): the on-box commands ask the running agent through it, in
//! the same request/reply JSON as MQTT, one line each way.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::mqtt::command::Reply;

/// A connection to the running agent's control socket.
pub struct LocalClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// Why the socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Nobody listens at the path: the agent is not running (or runs without a socket).
    #[error("no agent answers at {path}")]
    NotListening {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but this user may not open it.
    #[error(
        "permission denied on {path}: run as root or as a member of group edge-agent \
         (sudo usermod -aG edge-agent $USER, then log in again)"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The agent answering holds another store (another config's agent).
    #[error("the agent answering at {path} holds another store ({store})")]
    OtherAgent {
        /// The socket path.
        path: PathBuf,
        /// The store it holds.
        store: PathBuf,
    },
    /// The conversation broke.
    #[error("the agent's control socket {path}: {reason}")]
    Broken {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// How long one request may take (a backup of a large terminal takes minutes).
const REPLY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl LocalClient {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<LocalClient, LocalError> {
        let stream = UnixStream::connect(path).map_err(|err| match err.kind() {
            std::io::ErrorKind::PermissionDenied => LocalError::PermissionDenied {
                path: path.to_path_buf(),
            },
            _ => LocalError::NotListening {
                path: path.to_path_buf(),
            },
        })?;
        let broken = |err: std::io::Error| LocalError::Broken {
            path: path.to_path_buf(),
            reason: err.to_string(),
        };
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(broken)?;
        let writer = stream.try_clone().map_err(broken)?;
        Ok(LocalClient {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Runs `command` with `args` on the agent and returns its reply.
    pub fn call(&mut self, command: &str, args: &Value) -> Result<Reply, LocalError> {
        let reply = self.exchange(&json!({ "command": command, "args": args }))?;
        serde_json::from_value(reply).map_err(|err| self.broken(err))
    }

    /// Connects to the socket at `path` and checks that the agent serving it holds the store
    /// at `store`: an agent of another config sharing the runtime directory is not asked.
    pub fn connect_to_store(path: &Path, store: &Path) -> Result<LocalClient, LocalError> {
        let mut client = LocalClient::connect(path)?;
        let reply = client.exchange(&json!({ "describe": true }))?;
        let served = reply["result"]["store"].as_str().map(PathBuf::from);
        if served.as_deref() != Some(store) {
            return Err(LocalError::OtherAgent {
                path: path.to_path_buf(),
                store: served.unwrap_or_default(),
            });
        }
        Ok(client)
    }

    fn broken(&self, reason: impl std::fmt::Display) -> LocalError {
        LocalError::Broken {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn exchange(&mut self, request: &Value) -> Result<Value, LocalError> {
        let mut line = serde_json::to_vec(request).map_err(|err| self.broken(err))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|err| self.broken(err))?;
        let mut reply = String::new();
        match self.reader.read_line(&mut reply) {
            Ok(0) => Err(self.broken("the agent closed the connection without a reply")),
            Ok(_) => serde_json::from_str(&reply).map_err(|err| self.broken(err)),
            Err(err) => Err(self.broken(err)),
        }
    }
}
