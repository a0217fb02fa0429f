//! For the control-plane tests: the real agent binary with a generated config, the real `ctl`
//! binary, an observer client, and the pieces of an in-process control plane. The broker
//! itself is [`crate::mosquitto::Broker`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::backoff::BackoffPolicy;
use edge_agent::mqtt::{ControlPlane, Tuning};
use edge_agent::ops::logging::{self, JournaldMode, LogOptions, LoggingHandle};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

use crate::mosquitto::Broker;

/// A key pair made with the real `keygen`, and its config lines.
pub struct AdminKey {
    /// The private key file, for `ctl --key`.
    pub file: PathBuf,
    /// The `[[mqtt.admin_key]]` lines that trust it.
    pub config_lines: String,
}

/// Runs `edge-agent keygen` in `dir`.
pub fn keygen(dir: &Path, name: &str) -> AdminKey {
    let file = dir.join(format!("{name}.key"));
    let out = Command::new(bin())
        .args(["keygen", "--name", name, "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let config_lines = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    AdminKey { file, config_lines }
}

/// A config for agent `gw1` at site `s1` talking to `broker` without TLS.
pub fn agent_config(dir: &Path, broker_port: u16, extra_mqtt: &str, admin: &AdminKey) -> String {
    format!(
        "[agent]\nid = \"gw1\"\nsite = \"s1\"\ndata_dir = \"{data}\"\nshutdown_timeout = \"5s\"\nruntime_dir = \"{run}\"\n\
         [[device]]\nid = \"zk-1\"\ndriver = \"zk\"\naddress = \"127.0.0.1:4370\"\n\
         [log]\nlevel = \"info\"\nfile = \"{log}\"\njournald = \"never\"\n\
         [lock]\ndir = \"{locks}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {broker_port}\ntls = false\nkeep_alive = \"5s\"\n\
         {extra_mqtt}\n{admin}\n",
        data = dir.join("data").display(),
        run = dir.join("run").display(),
        locks = dir.join("locks").display(),
        log = dir.join("agent.log").display(),
        admin = admin.config_lines,
    )
}

/// What the agent logs on every (re)connection to the broker.
pub const CONNECTED: &str = "connected to the MQTT broker";

pub use super::running::{bin, RunningAgent as Agent};

impl Agent {
    /// Writes `config` into `dir`, starts the agent on it and waits for its connection to the
    /// broker.
    pub fn start(dir: &Path, config: &str) -> Agent {
        let connected_before = std::fs::read_to_string(dir.join("agent.log"))
            .unwrap_or_default()
            .matches(CONNECTED)
            .count();
        let mut agent = Agent::spawn(dir, config);
        agent.wait_for_log(CONNECTED, connected_before + 1);
        agent
    }
}

/// Runs the real `edge-agent ctl` against agent gw1 at site s1.
pub fn ctl(broker: &Broker, key: Option<&Path>, words: &[&str]) -> Output {
    let mut command = Command::new(bin());
    command
        .args([
            "ctl",
            "--broker",
            &broker.url(),
            "--site",
            "s1",
            "--agent",
            "gw1",
        ])
        .args(["--timeout", "10s"]);
    if let Some(key) = key {
        command.arg("--key").arg(key);
    }
    command.args(words).output().unwrap()
}

/// A ctl call's stdout and stderr as text.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A message seen by the observer.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The topic it was published on.
    pub topic: String,
    /// The payload, as text.
    pub payload: String,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
}

/// A client that records every message on `filter`. With `session` it keeps a persistent
/// session (clean start off, one hour expiry) under that client id.
pub struct Observer {
    /// The client, to publish or subscribe further.
    pub client: AsyncClient,
    /// Every message received, in order.
    pub seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Connects to the broker on `port` and subscribes to `filter`; returns once subscribed.
    pub async fn start(port: u16, filter: &str, session: Option<&str>) -> Observer {
        let id = session.map_or_else(
            || {
                format!(
                    "observer-{}",
                    std::process::id() as u64 * 1000 + u64::from(port)
                )
            },
            str::to_owned,
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        if session.is_some() {
            options.set_clean_start(false);
            options.set_session_expiry_interval(Some(3600));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, seen) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), ready.recv())
            .await
            .expect("observer subscribed");
        Observer { client, seen, task }
    }

    /// Waits for a message whose payload satisfies `wanted`.
    pub async fn wait_for(&mut self, what: &str, wanted: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Duration::from_secs(30);
        tokio::time::timeout(deadline, async {
            loop {
                let seen = self.seen.recv().await.expect("observer running");
                if wanted(&seen) {
                    return seen;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {deadline:?}"))
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The config of an in-process agent gw1 at site s1 (no log file) for a broker on `port`.
pub fn in_process_config(port: u16) -> edge_agent::config::Config {
    edge_agent::config::parse(&format!(
        "[agent]\nid = \"gw1\"\nsite = \"s1\"\n[[device]]\nid = \"zk-1\"\ndriver = \"zk\"\n\
         address = \"127.0.0.1:4370\"\n[log]\nfile = \"\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\n"
    ))
    .expect("a valid test config")
}

/// Timings for in-process tests: fast backoff, health every second, quick alert re-sends.
pub fn compressed_time() -> Tuning {
    Tuning {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            stable_after: Duration::from_secs(1),
        },
        health_period: Duration::from_secs(1),
        alert_resend: Duration::from_millis(300),
    }
}

/// A logging handle for an in-process control plane (the subscriber is kept alive, not
/// installed).
pub struct Logging {
    _dispatch: tracing::Dispatch,
    /// The handle the control plane changes the level through.
    pub handle: Arc<LoggingHandle>,
}

impl Logging {
    /// Builds the subscriber without file or journald output.
    #[allow(clippy::new_without_default)] // builds a subscriber: not a default value
    pub fn new() -> Logging {
        let (dispatch, handle) = logging::build(&LogOptions {
            journald: JournaldMode::Never,
            file: None,
            ..LogOptions::default()
        })
        .expect("logging without file or journald");
        Logging {
            _dispatch: dispatch,
            handle: Arc::new(handle),
        }
    }
}

/// Waits until the plane's link is (or is not) connected.
pub async fn wait_connected(plane: &ControlPlane, connected: bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while plane.link.is_connected() != connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("link never became connected={connected}"));
}

/// The `state` and `reason` of a health payload.
pub fn health_state(payload: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
    (field("state"), field("reason"))
}
