//! For the sync tests: an AI06 emulator registered as the test device, the config of an agent
//! with that one device, an agent-side listener with a sync engine over a temporary store, and
//! the store consistency check.

use edge_agent::audit::Audit;
use edge_agent::config::{self, Config};
use edge_agent::device::aiface::{AifaceHub, AifaceSession};
use edge_agent::events::{Event, EventBody};
use edge_agent::lifecycle::Tasks;
use edge_agent::lock::FlockLock;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::buffer::{self, MappingStatus};
use edge_agent::sync::{history, snapshot, state, Engine};
use edge_agent::upstream::Outbox;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::emulator::{Emulator, Protocol};
use crate::net::free_port;

/// An engine over `store` with the real outbox (uncapped) and audit log.
pub fn engine(store: &Store, agent_id: &str, lock: Arc<FlockLock>) -> Engine {
    let outbox = Outbox::open(store, u64::MAX).expect("open the outbox");
    Engine::new(
        store.clone(),
        agent_id,
        lock,
        outbox,
        Audit::new(store.clone()),
    )
}

/// Every event queued in the outbox of `store`, oldest first.
pub fn queued_events(store: &Store) -> Vec<Event> {
    Outbox::open(store, u64::MAX)
        .expect("open the outbox")
        .peek(usize::MAX)
        .expect("read the outbox")
        .into_iter()
        .map(|queued| queued.event)
        .collect()
}

/// The serial number every test emulator registers with.
pub const SN: &str = "SIM00000001";
/// The device id every test uses.
pub const DEVICE: &str = "door";
/// Generous bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Starts `device-sim aiface` registering as [`SN`], dialling the agent's listener on `port`,
/// logging commands to `log`, with extra `knobs`. It reconnects quickly and gives up after
/// five minutes.
pub fn emulator(port: u16, log: &Path, knobs: &[&str]) -> Emulator {
    let url = format!("ws://127.0.0.1:{port}/pub/chat");
    let mut args = vec![
        "--url",
        &url,
        "--sn",
        SN,
        "--run-for",
        "300",
        "--reconnect-delay-ms",
        "100",
    ];
    args.extend_from_slice(knobs);
    Emulator::start(Protocol::Aiface, log.to_path_buf(), &args)
}

/// A config for one AI06 `door` at 127.0.0.1:`port`, state under `dir`.
pub fn config(dir: &Path, port: u16, extra: &str) -> Config {
    config::parse(&config_text(dir, port, extra)).expect("test config is valid")
}

/// The text of [`config`], for tests that run the binary; `extra` goes into `[[device]]`.
pub fn config_text(dir: &Path, port: u16, extra: &str) -> String {
    let text = format!(
        "[agent]\nid = \"gw-test\"\ndata_dir = \"{data}\"\nshutdown_timeout = \"5s\"\nruntime_dir = \"{run}\"\n\
         [log]\nfile = \"\"\njournald = \"never\"\n\
         [lock]\ndir = \"{locks}\"\nacquire_retries = 2\n\
         [[device]]\nid = \"{DEVICE}\"\ndriver = \"aiface\"\nlisten = \"127.0.0.1:{port}\"\n\
         allowed_sn = [\"{SN}\"]\ncommand_timeout = \"5s\"\n{extra}",
        data = dir.join("data").display(),
        run = dir.join("run").display(),
        locks = dir.join("locks").display(),
    );
    std::fs::create_dir_all(dir.join("data")).unwrap();
    text
}

/// Writes the config of a running-agent test to `dir/agent.toml`: one AI06 `door` on `port`
/// (`device` goes into its `[[device]]` table), the log in `dir/agent.log`, forwarding to the
/// upstream at `url` with the token in `token_file` and `upstream` as extra `[upstream]` lines.
/// Returns the config and log paths.
pub fn upstream_config_file(
    dir: &Path,
    port: u16,
    device: &str,
    url: &str,
    token_file: &Path,
    upstream: &str,
) -> (PathBuf, PathBuf) {
    let log = dir.join("agent.log");
    // `config_text` ends inside `[[device]]`; the `[upstream]` table follows it.
    let mut text = config_text(dir, port, device).replace(
        "[log]\nfile = \"\"",
        &format!("[log]\nfile = \"{}\"", log.display()),
    );
    text.push_str(&format!(
        "[upstream]\nurl = \"{url}\"\ntoken_file = \"{}\"\n{upstream}",
        token_file.display()
    ));
    let config = dir.join("agent.toml");
    std::fs::write(&config, text).expect("write the agent config");
    (config, log)
}

/// The agent side of a test: the listener, a store, and an engine.
pub struct Agent {
    /// Temporary directory holding store, locks and backups.
    pub dir: tempfile::TempDir,
    /// The config used.
    pub config: Config,
    /// The store.
    pub store: Store,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Live sessions.
    pub hub: Arc<AifaceHub>,
    /// The bound port.
    pub port: u16,
    tasks: Option<Tasks>,
}

impl Agent {
    /// Binds a listener on a free port and opens a fresh store.
    pub async fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = config(dir.path(), port, "");
        let store = Store::open(&StoreOptions::at(config.store_dir()))
            .unwrap()
            .store;
        let mut tasks = Tasks::new();
        let hub = edge_agent::device::listen_aiface(
            &mut tasks,
            &config.device,
            Some(store.clone()),
            None,
        )
        .await
        .unwrap()
        .hub;
        let lock = FlockLock::new(config.lock.dir.clone(), 2, Duration::from_millis(50));
        let engine = Arc::new(engine(&store, "gw-test", Arc::new(lock)));
        Agent {
            dir,
            config,
            store,
            engine,
            hub,
            port,
            tasks: Some(tasks),
        }
    }

    /// The emulator's command log path for `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.jsonl"))
    }

    /// Waits for the device to be connected (a fresh connection if `previous` is given).
    pub async fn session(&self) -> AifaceSession {
        self.hub
            .session(DEVICE, PATIENCE)
            .await
            .expect("the emulator connects")
    }

    /// Waits until the connected session is a new one (after the previous emulator stopped).
    pub async fn new_session(&self, old: &AifaceSession) -> AifaceSession {
        let deadline = Instant::now() + PATIENCE;
        while !old.is_closed() {
            assert!(Instant::now() < deadline, "old session never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.session().await
    }

    /// Stops the listener.
    pub async fn stop(mut self) {
        if let Some(tasks) = self.tasks.take() {
            tasks.stop(Duration::from_secs(2)).await;
        }
    }
}

/// Asserts that the store holds a consistent picture of `device`: the snapshot, sync state,
/// history, buffer and outbox all describe the same sequence of applied reads. A
/// half-applied diff breaks at least one of these.
pub fn assert_consistent(store: &Store, device: &str) {
    let state = state::load(store, device).unwrap();
    let snapshot = snapshot::load(store, device).unwrap();
    let history = history::list(store, device).unwrap();
    assert_eq!(
        snapshot.len() as u64,
        state.users,
        "snapshot size vs sync state"
    );
    assert_eq!(
        history.len() as u64,
        state.generation,
        "one history entry per read"
    );
    if let Some(last) = history.last() {
        assert_eq!(last.generation, state.generation);
        assert_eq!(last.users, state.users);
        assert_eq!(Some(last.read_at_ms), state.last_complete_read_ms);
    }
    let buffered = buffer::list(store, Some(device), None).unwrap();
    let present: BTreeSet<&str> = buffered
        .iter()
        .filter(|u| u.status != MappingStatus::Missing.as_str())
        .map(|u| u.user_id.as_str())
        .collect();
    let in_snapshot: BTreeSet<&str> = snapshot.keys().map(String::as_str).collect();
    assert_eq!(present, in_snapshot, "buffer users present vs snapshot");
    let events = queued_events(store);
    let keys: BTreeSet<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), events.len(), "event keys are unique");
    let discovered = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::UserDiscovered(_)))
        .count();
    assert_eq!(
        discovered,
        buffered.len(),
        "one discovery event per buffered user"
    );
}

/// A complete read of users with the given ids, each with a name (`user<id>`) and a card
/// (`300000000<id>`, slot 11): the read the engine-level tests apply without a device.
pub fn card_read<I, S>(ids: I) -> edge_agent::device::UserRead
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    use edge_agent::device::{ReadUser, UserRead};
    use edge_agent::events::DeviceUser;
    let users: std::collections::BTreeMap<String, ReadUser> = ids
        .into_iter()
        .map(|id| {
            let id = id.into();
            let user = DeviceUser {
                user_id: id.clone(),
                name: format!("user{id}"),
                card: Some(format!("300000000{id}")),
                ..DeviceUser::default()
            };
            let read = ReadUser {
                user,
                slots: vec![11],
            };
            (id, read)
        })
        .collect();
    UserRead {
        device_user_count: users.len() as u64,
        users,
        ..UserRead::default()
    }
}
