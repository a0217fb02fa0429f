//! A private MQTT broker for tests: `mosquitto` on a free loopback port with its own config
//! and directory, never the shared broker on 1883. Tests kill it (a crash: no wills, nothing
//! saved), stop it (it saves its persistence database) and start it again on the same port.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;

/// A mosquitto started by the test on a free port, killed when dropped.
pub struct Broker {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker; `persistent` keeps sessions and queued messages across a graceful
    /// broker stop (mosquitto writes its database on SIGTERM).
    pub fn start(persistent: bool) -> Broker {
        Broker::with_config(|port, dir| {
            let mut conf =
                format!("listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n");
            if persistent {
                conf.push_str(&format!(
                    "persistence true\npersistence_location {}/\n",
                    dir.display()
                ));
            }
            conf
        })
    }

    /// Starts a broker whose config `make` writes, given the port and the broker's directory.
    /// A port found free can be taken by someone else before mosquitto binds it (tests run in
    /// parallel), so a broker that fails to bind is started again on another port.
    pub fn with_config(make: impl Fn(u16, &Path) -> String) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        // Started as root, mosquitto drops to its own user before reading certificates or
        // saving its database.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut broker = Broker {
            port: 0,
            dir,
            child: None,
        };
        for _ in 0..5 {
            broker.port = free_port();
            let conf = make(broker.port, broker.dir.path());
            std::fs::write(broker.dir.path().join("mosquitto.conf"), conf).unwrap();
            if broker.try_launch() {
                return broker;
            }
        }
        panic!("mosquitto failed to start 5 times:\n{}", broker.log());
    }

    /// The broker's own directory (config, log, persistence; test certificates may go here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What mosquitto logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts mosquitto and waits until it reports running; `false` if it exited instead
    /// (its port was taken).
    fn try_launch(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto must be installed (apt install mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.log().contains(" running") {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto does not accept connections"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        true
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker with SIGKILL (a crash: no wills are published, nothing is saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker with SIGTERM (it saves its persistence database).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port.
    pub fn restart(&mut self) {
        assert!(
            self.try_launch(),
            "mosquitto could not restart:\n{}",
            self.log()
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
