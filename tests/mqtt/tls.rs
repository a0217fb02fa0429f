//! Securing the link: TLS with rustls (ring) — the agent and `ctl` verify the broker against
//! the configured CA and authenticate with client certificates when the broker requires them,
//! and a broker whose certificate the agent cannot verify is never talked to; and the MQTT
//! password, read from its file.
//!
//! Certificates are made with the `openssl` command line tool (test-time only; the agent itself
//! links no OpenSSL).

use std::path::{Path, PathBuf};
use std::process::Command;

use support_mqtt::{bin, keygen, texts, Agent};
use test_support::agent::mqtt as support_mqtt;
use test_support::mosquitto::Broker;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl tool is needed to make test certificates");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, and a certificate signed by it for `name` (with `ext` as its extensions).
fn issue(dir: &Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A broker with a TLS listener that requires client certificates from `ca`.
fn tls_broker() -> (Broker, PathBuf) {
    let broker = Broker::with_config(|port, dir| {
        make_ca(dir, "ca");
        issue(
            dir,
            "ca",
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        issue(dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
        make_ca(dir, "other-ca");
        for entry in std::fs::read_dir(dir).unwrap() {
            use std::os::unix::fs::PermissionsExt;
            let path = entry.unwrap().path();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {d}/ca.pem\n\
             certfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
            d = dir.display()
        )
    });
    let certs = broker.dir().to_path_buf();
    (broker, certs)
}

fn config(dir: &Path, port: u16, certs: &Path, ca: &str, admin: &str) -> String {
    format!(
        "[agent]\nid = \"gw1\"\nsite = \"s1\"\ndata_dir = \"{data}\"\nruntime_dir = \"{run}\"\n\
         [log]\nfile = \"{log}\"\njournald = \"never\"\n[lock]\ndir = \"{locks}\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = true\nca_file = \"{c}/{ca}.pem\"\n\
         client_cert_file = \"{c}/client.pem\"\nclient_key_file = \"{c}/client.key\"\n{admin}\n",
        data = dir.join("data").display(),
        run = dir.join("run").display(),
        locks = dir.join("locks").display(),
        log = dir.join("agent.log").display(),
        c = certs.display(),
    )
}

#[test]
fn agent_and_ctl_speak_mutual_tls_with_a_verified_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, certs) = tls_broker();
    let admin = keygen(dir.path(), "ops");
    let _agent = Agent::start(
        dir.path(),
        &config(dir.path(), broker.port, &certs, "ca", &admin.config_lines),
    );
    let out = Command::new(bin())
        .args([
            "ctl",
            "--broker",
            &format!("mqtts://127.0.0.1:{}", broker.port),
        ])
        .arg("--ca-file")
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("client.pem"))
        .arg("--cert-key")
        .arg(certs.join("client.key"))
        .args(["--site", "s1", "--agent", "gw1", "--key"])
        .arg(&admin.file)
        .arg("status")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("agent: gw1"), "{stdout}");
}

#[test]
fn a_broker_the_agent_cannot_verify_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, certs) = tls_broker();
    let admin = keygen(dir.path(), "ops");
    let mut agent = Agent::spawn(
        dir.path(),
        &config(
            dir.path(),
            broker.port,
            &certs,
            "other-ca",
            &admin.config_lines,
        ),
    );
    agent.wait_for_log("cannot reach the MQTT broker", 1);
    let log = agent.log_text();
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert!(!log.contains(support_mqtt::CONNECTED), "{log}");

    // ctl verifies too.
    let out = Command::new(bin())
        .args([
            "ctl",
            "--broker",
            &format!("mqtts://127.0.0.1:{}", broker.port),
        ])
        .arg("--ca-file")
        .arg(certs.join("other-ca.pem"))
        .args([
            "--site",
            "s1",
            "--agent",
            "gw1",
            "--timeout",
            "5s",
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(i32::from(edge_agent::cli::ExitStatus::NoReply.code())),
        "{:?}",
        texts(&out)
    );
}

#[test]
fn the_password_comes_from_its_file_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::with_config(|port, dir| {
        let file = dir.join("passwords");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args(["gw1", "s3cret"])
            .output()
            .expect("mosquitto_passwd is part of the mosquitto package");
        assert!(out.status.success(), "{out:?}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            file.display()
        )
    });
    let admin = keygen(dir.path(), "ops");
    let config = |password_file: &Path| {
        format!(
            "[agent]\nid = \"gw1\"\nsite = \"s1\"\ndata_dir = \"{data}\"\n\
             runtime_dir = \"{run}\"\n\
             [log]\nfile = \"{log}\"\njournald = \"never\"\n[lock]\ndir = \"{locks}\"\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\nusername = \"gw1\"\n\
             password_file = \"{pw}\"\n{admin}\n",
            data = dir.path().join("data").display(),
            run = dir.path().join("run").display(),
            locks = dir.path().join("locks").display(),
            log = dir.path().join("agent.log").display(),
            port = broker.port,
            pw = password_file.display(),
            admin = admin.config_lines,
        )
    };
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "guess\n").unwrap();
    let mut agent = Agent::spawn(dir.path(), &config(&wrong));
    agent.wait_for_log("cannot reach the MQTT broker", 1);
    assert!(!agent.log_text().contains(support_mqtt::CONNECTED));
    drop(agent);

    let right = dir.path().join("mqtt.pw");
    std::fs::write(&right, "s3cret\n").unwrap();
    let _agent = Agent::start(dir.path(), &config(&right));
}
