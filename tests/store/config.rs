//! Every class of config mistake a new user is likely to make produces one clear line that
//! names the key and the line, and the annotated reference config is itself valid. The binary
//! exits with the documented code for a bad config, no reply and a wrong command line.

use edge_agent::cli::ExitStatus;
use edge_agent::config::{self, ConfigError};
use std::io::Write;

const GOOD_DEVICE: &str =
    "[[device]]\nid = \"door\"\ndriver = \"aiface\"\nallowed_sn = [\"SN1\"]\n";

fn errors_of(text: &str) -> Vec<ConfigError> {
    config::parse(text).expect_err("this config must be rejected")
}

/// (what is wrong, config text, expected key, expected line, fragment of the message)
const CASES: &[(&str, &str, &str, usize, &str)] = &[
    (
        "unknown key with a near miss",
        "[agent]\nid = \"a\"\n[monitor]\nintervall = \"5m\"\n",
        "monitor.intervall",
        4,
        "did you mean `interval`?",
    ),
    (
        "unknown section",
        "[agent]\nid = \"a\"\n[mqttt]\nhost = \"x\"\n",
        "mqttt",
        3,
        "did you mean `mqtt`?",
    ),
    (
        "wrong type",
        "[agent]\nid = \"a\"\n[log]\nmax_files = \"three\"\n",
        "log.max_files",
        4,
        "invalid type",
    ),
    (
        "bad duration",
        "[agent]\nid = \"a\"\n[monitor]\ninterval = \"5 minutes\"\n",
        "monitor.interval",
        4,
        "invalid duration",
    ),
    (
        "duration without quotes",
        "[agent]\nid = \"a\"\n[backup]\ninterval = 6\n",
        "backup.interval",
        4,
        "quoted string",
    ),
    (
        "bad size",
        "[agent]\nid = \"a\"\n[store]\ncache_size = \"8 bananas\"\n",
        "store.cache_size",
        4,
        "invalid size",
    ),
    (
        "missing required value",
        "[agent]\nsite = \"s\"\n",
        "agent",
        1,
        "missing required key `id`",
    ),
    (
        "missing required value in a device",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"door\"\n",
        "device[0]",
        3,
        "missing required key `driver`",
    ),
    (
        "unknown driver",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"d\"\ndriver = \"zkk\"\n",
        "device[0].driver",
        5,
        "did you mean `zk`?",
    ),
    (
        "duplicate device id",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"d\"\ndriver = \"zk\"\naddress = \"192.0.2.1:4370\"\n\
         [[device]]\nid = \"d\"\ndriver = \"zk\"\naddress = \"192.0.2.2:4370\"\n",
        "device[1].id",
        8,
        "duplicate device id `d`",
    ),
    (
        "port clash between two listeners",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"a1\"\ndriver = \"aiface\"\nallowed_sn = [\"S1\"]\n\
         listen = \"127.0.0.1:7788\"\n[[device]]\nid = \"a2\"\ndriver = \"aiface\"\n\
         allowed_sn = [\"S2\"]\nlisten = \"0.0.0.0:7788\"\n",
        "device[1].listen",
        12,
        "port clash",
    ),
    (
        "two devices reading the same terminal",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"z1\"\ndriver = \"zk\"\naddress = \"192.0.2.1:4370\"\n\
         [[device]]\nid = \"z2\"\ndriver = \"zk\"\naddress = \"192.0.2.1:4370\"\n",
        "device[1].address",
        10,
        "port clash",
    ),
    (
        "transport that does not fit the driver",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"d\"\ndriver = \"aiface\"\ntransport = \"serial\"\n",
        "device[0].transport",
        6,
        "does not work with driver",
    ),
    (
        "zk device without an address",
        "[agent]\nid = \"a\"\n[[device]]\nid = \"d\"\ndriver = \"zk\"\n",
        "device[0].address",
        3,
        "host:port",
    ),
    (
        "id unusable in topics",
        "[agent]\nid = \"a/b\"\n",
        "agent.id",
        2,
        "not a valid id",
    ),
    (
        "log level typo",
        "[agent]\nid = \"a\"\n[log]\nlevel = \"verbose\"\n",
        "log.level",
        4,
        "invalid log level",
    ),
    (
        "upstream without a token",
        "[agent]\nid = \"a\"\n[upstream]\nurl = \"https://backend.example\"\n",
        "upstream.token_file",
        3,
        "bearer token",
    ),
    (
        "syntax error",
        "[agent]\nid = \"a\n",
        "",
        2,
        "TOML syntax error",
    ),
];

#[test]
fn each_bad_input_class_gets_one_clear_line() {
    for (what, text, key, line, fragment) in CASES {
        let errors = errors_of(text);
        assert_eq!(
            errors.len(),
            1,
            "{what}: expected one problem, got {errors:#?}"
        );
        let error = &errors[0];
        assert_eq!(error.key, *key, "{what}: {error}");
        assert_eq!(error.line, Some(*line), "{what}: {error}");
        assert!(error.message.contains(fragment), "{what}: {error}");
        assert!(
            !error.to_string().contains('\n'),
            "{what}: not one line: {error}"
        );
    }
}

#[test]
fn several_problems_are_reported_together_in_file_order() {
    let text = "[agent]\nid = \"a\"\nsiet = \"x\"\n[monitor]\ninterval = \"5x\"\n[log]\nlevel = \"loud\"\n";
    let errors = errors_of(text);
    let keys: Vec<_> = errors.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(
        keys,
        [
            ("agent.siet", Some(3)),
            ("monitor.interval", Some(5)),
            ("log.level", Some(7))
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_minimal_config_gets_documented_defaults() {
    let config = config::parse(&format!("[agent]\nid = \"gw\"\n{GOOD_DEVICE}")).unwrap();
    assert_eq!(config.monitor.interval.to_string(), "5m");
    assert_eq!(config.backup.interval.to_string(), "6h");
    assert_eq!(config.buffer.retention.to_string(), "90d");
    assert_eq!(config.log.max_file_size.to_string(), "5MB");
    assert_eq!(config.store.cache_size.to_string(), "256KiB");
    assert!(config.store.compression);
    assert_eq!(config.device[0].effective_listen().port(), 7788);
}

#[test]
fn the_annotated_reference_config_is_valid_and_matches_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/edge-agent.toml");
    let loaded = config::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let reference = loaded.config;
    // Every section the reference spells out must equal the built-in default, so the
    // documentation can never drift from the code.
    let minimal = config::parse(&format!("[agent]\nid = \"gateway-01\"\n{GOOD_DEVICE}")).unwrap();
    assert_eq!(reference.upstream, minimal.upstream);
    assert_eq!(reference.mqtt, minimal.mqtt);
    assert_eq!(reference.lock, minimal.lock);
    assert_eq!(reference.backup, minimal.backup);
    assert_eq!(reference.buffer, minimal.buffer);
    assert_eq!(reference.monitor, minimal.monitor);
    assert_eq!(reference.log, minimal.log);
    assert_eq!(reference.store, minimal.store);
    assert_eq!(reference.esl, minimal.esl);
    assert_eq!(reference.metrics, minimal.metrics);
    assert_eq!(reference.agent, minimal.agent);
}

#[test]
fn secret_files_must_exist_and_world_readable_ones_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let config_path = dir.path().join("agent.toml");
    let text = format!(
        "[agent]\nid = \"a\"\n[upstream]\nurl = \"https://backend.example\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    std::fs::write(&config_path, &text).unwrap();

    let missing = config::load(&config_path).unwrap_err();
    assert_eq!(missing.errors.len(), 1, "{missing}");
    assert_eq!(missing.errors[0].key, "upstream.token_file");
    assert_eq!(missing.errors[0].line, Some(5));
    assert!(missing.to_string().contains("cannot read"), "{missing}");

    let mut file = std::fs::File::create(&token).unwrap();
    writeln!(file, "s3cret-token").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = config::load(&config_path).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("chmod o-rwx"));

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(config::load(&config_path).unwrap().warnings.is_empty());
}

/// Runs the `edge-agent` binary with `args`; returns its exit code, stdout and stderr.
fn edge_agent(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn code(status: ExitStatus) -> Option<i32> {
    Some(i32::from(status.code()))
}

#[test]
fn help_lists_every_exit_code_with_its_meaning() {
    let (status, help, _) = edge_agent(&["--help".as_ref()]);
    assert_eq!(status, code(ExitStatus::Success));
    let table = &help[help.find("Exit codes:").expect(&help)..];
    for status in ExitStatus::ALL {
        let line = format!("{:>3}  {}", status.code(), status.meaning());
        assert!(table.contains(&line), "{line:?} missing from:\n{table}");
    }
}

#[test]
fn a_bad_config_exits_with_the_bad_config_code_whichever_command_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"x\"\n[monitor]\ninterval = \"often\"\n",
    )
    .unwrap();
    for command in [
        &["check-config"][..],
        &["status", "--config"],
        &["run", "--config"],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = command.iter().map(|c| c.as_ref()).collect();
        args.push(config.as_os_str());
        let (status, _, stderr) = edge_agent(&args);
        assert_eq!(status, code(ExitStatus::BadConfig), "{command:?}: {stderr}");
        assert!(
            stderr.contains(":4: monitor.interval: invalid duration"),
            "{command:?}: {stderr}"
        );
    }
}

#[test]
fn ctl_without_a_broker_exits_with_the_no_reply_code() {
    // A port nothing listens on: the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("mqtt://127.0.0.1:{port}");
    let (status, _, stderr) = edge_agent(
        &[
            "ctl",
            "--broker",
            &broker,
            "--agent",
            "gw",
            "--timeout",
            "5s",
            "status",
        ]
        .map(AsRef::as_ref),
    );
    assert_eq!(status, code(ExitStatus::NoReply), "{stderr}");
    assert!(stderr.contains("MQTT connection failed"), "{stderr}");
}

#[test]
fn a_wrong_command_line_exits_with_the_usage_code() {
    let (status, _, stderr) = edge_agent(&["probe", "--no-such-option"].map(AsRef::as_ref));
    assert_eq!(status, code(ExitStatus::Usage), "{stderr}");
    let (status, _, stderr) =
        edge_agent(&["ctl", "--broker", "tcp://x", "--agent", "gw", "status"].map(AsRef::as_ref));
    assert_eq!(status, code(ExitStatus::Usage), "{stderr}");
    assert!(stderr.contains("expected mqtts://"), "{stderr}");
}
