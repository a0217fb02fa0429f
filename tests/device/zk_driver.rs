//! The agent's ZK driver against `device-sim zk` over TCP, UDP and a serial pty: complete reads,
//! the comm key, every fault knob turning into an incomplete read with its reason, `EXIT` on the
//! error paths, and `edge-agent probe` reading the emulator.

use device_protocols::zk::{CommKey, TextCodec};
use edge_agent::device::zk::{Endpoint, ZkSession, ZkSettings};
use edge_agent::device::{DeviceSession, FetchMode, MemorySink, ReadError, UserRead};
use std::path::PathBuf;
use std::time::Duration;
use test_support::pty::SerialCable;
use test_support::Emulator;

fn settings(endpoint: Endpoint) -> ZkSettings {
    ZkSettings {
        device_id: "zk-test".into(),
        endpoint,
        comm_key: CommKey(0),
        codec: TextCodec::default(),
        command_timeout: Duration::from_secs(5),
    }
}

fn tcp(sim: &Emulator) -> Endpoint {
    Endpoint::Tcp {
        address: sim.tcp.unwrap().to_string(),
        udp_fallback: false,
    }
}

fn udp(sim: &Emulator) -> Endpoint {
    Endpoint::Udp {
        address: sim.udp.unwrap().to_string(),
    }
}

async fn read_device(settings: ZkSettings) -> Result<UserRead, ReadError> {
    ZkSession::new(settings)
        .read_users(FetchMode::All, &mut MemorySink::default())
        .await
}

/// What `device-sim zk --users N` generates: user ids 1000+uid, a card on even uids, a password
/// on multiples of 3, uid 1 a super-admin.
fn assert_generated_users(read: &UserRead, users: u16) {
    assert_eq!(read.device_user_count, u64::from(users));
    assert_eq!(read.users.len(), usize::from(users));
    for uid in 1..=users {
        let user = &read.users[&(1000 + uid).to_string()].user;
        assert!(user.name.ends_with(&format!(" {uid}")), "{user:?}");
        assert_eq!(user.card.is_some(), uid % 2 == 0, "{user:?}");
        assert_eq!(user.has_password, uid % 3 == 0, "{user:?}");
        assert_eq!(user.privilege, if uid == 1 { 2 } else { 0 });
    }
    let cards = usize::from(users / 2);
    let passwords = usize::from(users / 3);
    assert_eq!(read.credentials_listed, cards + passwords);
}

/// The protocol order of a clean session, read from the emulator's command log.
fn assert_session_order(sim: &Emulator) {
    let names = sim.command_names();
    let position = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} never sent: {names:?}"))
    };
    assert_eq!(
        names.first().map(String::as_str),
        Some("CONNECT"),
        "{names:?}"
    );
    assert!(position("DISABLE_DEVICE") < position("GET_FREE_SIZES"));
    assert!(position("GET_FREE_SIZES") < position("PREPARE_BUFFER"));
    assert!(position("PREPARE_BUFFER") < position("FREE_DATA"));
    assert!(position("FREE_DATA") < position("ENABLE_DEVICE"));
    assert_eq!(names.last().map(String::as_str), Some("EXIT"), "{names:?}");
    let disable = &sim.commands()[position("DISABLE_DEVICE")];
    assert_eq!(
        disable["data_len"], 4,
        "DISABLE carries its auto re-enable timeout"
    );
    assert_eq!(sim.commands().last().unwrap()["device_enabled"], true);
}

/// The session was closed: EXIT reached the emulator even though the read failed.
fn assert_exit_sent(sim: &Emulator) {
    let names = sim.command_names();
    assert!(names.iter().any(|n| n == "EXIT"), "no EXIT: {names:?}");
}

#[tokio::test]
async fn complete_read_over_tcp_in_protocol_order() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "60"]);
    let read = read_device(settings(tcp(&sim))).await.unwrap();
    assert_generated_users(&read, 60);
    // CONNECT, DISABLE, SIZES, PREPARE_BUFFER, one READ_BUFFER, FREE_DATA, ENABLE (EXIT comes
    // after the read is counted).
    assert_eq!(read.round_trips, 7);
    assert!(read.bytes_received > 60 * 72);
    assert_session_order(&sim);
    let names = sim.command_names();
    assert!(
        names.iter().filter(|n| *n == "READ_BUFFER").count() >= 1,
        "60 × 72 bytes is above the inline threshold, so it comes in slices: {names:?}"
    );
}

#[tokio::test]
async fn complete_read_over_udp() {
    let sim = Emulator::zk(&["--udp", "127.0.0.1:0", "--users", "300"]);
    let read = read_device(settings(udp(&sim))).await.unwrap();
    assert_generated_users(&read, 300);
    assert_session_order(&sim);
    // 300 × 72 bytes exceed one 16 KiB datagram-link slice: two READ_BUFFERs.
    let slices = sim
        .command_names()
        .iter()
        .filter(|n| *n == "READ_BUFFER")
        .count();
    assert_eq!(slices, 2);
}

#[tokio::test]
async fn complete_read_of_28_byte_users_in_a_legacy_code_page() {
    // Unpaced: socket reads then carry several frames, which the reassembler must split.
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "40",
        "--native-names",
        "windows-1251",
        "--pacing-ms",
        "0",
    ]);
    let mut settings = settings(tcp(&sim));
    settings.codec = TextCodec::for_label("windows-1251").unwrap();
    let read = read_device(settings).await.unwrap();
    assert_eq!(read.users.len(), 40);
    let name = &read.users["1005"].user.name;
    assert!(!name.is_ascii() && !name.contains('\u{FFFD}'), "{name:?}");

    let sim = Emulator::zk(&[
        "--udp",
        "127.0.0.1:0",
        "--users",
        "45",
        "--user-format",
        "28",
    ]);
    let read = read_device(settings_for_udp(&sim)).await.unwrap();
    assert_eq!(read.users.len(), 45);
    assert!(read.users.contains_key("1045"));
}

fn settings_for_udp(sim: &Emulator) -> ZkSettings {
    settings(udp(sim))
}

#[tokio::test]
async fn complete_read_over_a_serial_pty_with_an_rs485_address() {
    let cable = SerialCable::new();
    let sim = Emulator::zk(&[
        "--serial",
        cable.device_end(),
        "--rs485",
        "--device-id",
        "7",
        "--users",
        "30",
    ]);
    let read = read_device(settings(Endpoint::Serial {
        path: PathBuf::from(cable.agent_end()),
        baud: 115_200,
        address: 7,
    }))
    .await
    .unwrap();
    assert_generated_users(&read, 30);
    assert_session_order(&sim);
}

#[tokio::test]
async fn serial_frames_for_another_address_get_no_answer() {
    let cable = SerialCable::new();
    let sim = Emulator::zk(&[
        "--serial",
        cable.device_end(),
        "--rs485",
        "--device-id",
        "7",
    ]);
    let mut settings = settings(Endpoint::Serial {
        path: PathBuf::from(cable.agent_end()),
        baud: 115_200,
        address: 8,
    });
    settings.command_timeout = Duration::from_millis(600);
    let err = read_device(settings).await.unwrap_err();
    assert!(matches!(err, ReadError::TimedOut(_)), "{err}");
    let dispositions: Vec<_> = sim
        .commands()
        .iter()
        .map(|c| c["disposition"].clone())
        .collect();
    assert!(
        dispositions.iter().all(|d| d == "dropped-other-address"),
        "{dispositions:?}"
    );
}

#[tokio::test]
async fn comm_key_right_and_wrong() {
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "20",
        "--comm-key",
        "4242",
    ]);
    let mut right = settings(tcp(&sim));
    right.comm_key = CommKey(4242);
    let read = read_device(right).await.unwrap();
    assert_generated_users(&read, 20);

    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--comm-key", "4242"]);
    let mut wrong = settings(tcp(&sim));
    wrong.comm_key = CommKey(4243);
    let err = read_device(wrong).await.unwrap_err();
    assert!(
        matches!(err, ReadError::Refused(ref m) if m.contains("comm key")),
        "{err}"
    );
    assert_eq!(
        sim.command_names(),
        ["CONNECT", "AUTH", "EXIT"],
        "nothing but the close after a refused key"
    );
}

/// Runs a read against an emulator with one fault and returns the error and the emulator.
async fn faulty(transport: &str, fault: &str) -> (ReadError, Emulator) {
    let flag = format!("--{transport}");
    let sim = Emulator::zk(&[&flag, "127.0.0.1:0", "--users", "200", "--fault", fault]);
    let mut settings = settings(if transport == "tcp" {
        tcp(&sim)
    } else {
        udp(&sim)
    });
    settings.command_timeout = Duration::from_millis(700);
    let err = read_device(settings)
        .await
        .expect_err("a faulty device cannot give a complete read");
    (err, sim)
}

#[tokio::test]
async fn wrong_counts_are_an_incomplete_read() {
    let (err, sim) = faulty("tcp", "wrong-counts").await;
    assert!(
        matches!(err, ReadError::Incomplete(ref m) if m.contains("201")),
        "{err}"
    );
    assert_session_order(&sim);
}

#[tokio::test]
async fn a_short_chunk_is_an_incomplete_read() {
    for transport in ["tcp", "udp"] {
        let (err, sim) = faulty(transport, "short-chunk").await;
        assert!(
            matches!(err, ReadError::Incomplete(ref m) if m.contains("closed after")),
            "{transport}: {err}"
        );
        assert_exit_sent(&sim);
    }
}

#[tokio::test]
async fn a_transfer_dropped_mid_way_is_reported_and_the_session_still_closed() {
    // TCP: the device closes the connection half-way; EXIT goes out on a fresh connection.
    let (err, sim) = faulty("tcp", "drop-mid-transfer").await;
    assert!(
        matches!(err, ReadError::Disconnected(ref m) if m.contains("closed")),
        "{err}"
    );
    assert_exit_sent(&sim);
    let exit = sim
        .commands()
        .into_iter()
        .rfind(|c| c["name"] == "EXIT")
        .unwrap();
    assert_eq!(
        exit["disposition"], "answered",
        "EXIT freed the session: {exit}"
    );
    assert_eq!(exit["device_enabled"], true);

    // UDP: the fragments stop; the slice is requested again (new reply id), then given up.
    let (err, sim) = faulty("udp", "drop-mid-transfer").await;
    assert!(matches!(err, ReadError::TimedOut(_)), "{err}");
    let names = sim.command_names();
    let slices = names.iter().filter(|n| *n == "READ_BUFFER").count();
    assert_eq!(slices, 3, "one slice, asked for three times: {names:?}");
    assert_exit_sent(&sim);
}

#[tokio::test]
async fn a_silent_device_times_out_and_still_gets_enable_and_exit() {
    let (err, sim) = faulty("tcp", "silence").await;
    assert!(
        matches!(err, ReadError::TimedOut(ref m) if m.contains("DISABLE")),
        "{err}"
    );
    let names = sim.command_names();
    assert_eq!(
        names,
        ["CONNECT", "DISABLE_DEVICE", "ENABLE_DEVICE", "EXIT"],
        "a disable that may have happened is undone, then the session closed"
    );
}

#[tokio::test]
async fn an_abandoned_read_still_re_enables_the_device_and_exits() {
    // 2,000 paced users take seconds; the caller drops the read once the bulk transfer runs.
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "2000", "--logs", "0"]);
    let mut reading = Box::pin(read_device(settings(tcp(&sim))));
    loop {
        tokio::select! {
            _ = &mut reading => panic!("the read finished before it could be abandoned"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if sim.command_names().iter().any(|n| n == "READ_BUFFER") {
                    break;
                }
            }
        }
    }
    drop(reading);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !sim.command_names().iter().any(|n| n == "EXIT") {
        assert!(
            std::time::Instant::now() < deadline,
            "no EXIT: {:?}",
            sim.command_names()
        );
        // Keeps this runtime turning, which runs the background close.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names = sim.command_names();
    let tail = &names[names.len() - 2..];
    assert_eq!(tail, ["ENABLE_DEVICE", "EXIT"], "{names:?}");
    assert_eq!(sim.commands().last().unwrap()["device_enabled"], true);
}

#[tokio::test]
async fn tcp_falls_back_to_udp_when_configured() {
    let sim = Emulator::zk(&["--udp", "127.0.0.1:0", "--users", "25"]);
    // Nothing listens on TCP at the UDP socket's port.
    let session = ZkSession::new(settings(Endpoint::Tcp {
        address: sim.udp.unwrap().to_string(),
        udp_fallback: true,
    }));
    let read = session
        .read_users(FetchMode::All, &mut MemorySink::default())
        .await
        .unwrap();
    assert_generated_users(&read, 25);
    // The choice is remembered: the second read goes straight to UDP and succeeds as well.
    session
        .read_users(FetchMode::Missing, &mut MemorySink::default())
        .await
        .unwrap();
    assert!(sim.commands().iter().all(|c| c["transport"] == "udp"));

    let without = settings(Endpoint::Tcp {
        address: sim.udp.unwrap().to_string(),
        udp_fallback: false,
    });
    let err = read_device(without).await.unwrap_err();
    assert!(matches!(err, ReadError::NotConnected(_)), "{err}");
}

#[tokio::test]
async fn a_card_and_a_template_are_written_and_read_back_and_a_face_write_is_refused() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--pacing-ms", "0"]);
    let session = ZkSession::new(settings(tcp(&sim)));
    let mut credential = edge_agent::device::Credential {
        user_id: "1001".into(),
        slot: 20,
        name: "Ana".into(),
        // User 1001 is the super user: the privilege a credential carries is written too.
        privilege: 2,
        value: device_protocols::aiface::CredentialValue::Text("AAAA".into()),
    };
    // A face template (slot 20) and a fingerprint that is not base64 are refused unsent.
    let err = session.write_credential(&credential).await.unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    credential.slot = 3;
    credential.value = device_protocols::aiface::CredentialValue::Text("not base64!".into());
    let err = session.write_credential(&credential).await.unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
    assert!(sim.commands().is_empty(), "nothing was sent");

    // Finger 3 of user 1001 goes up as one upload and reads back; again, nothing is sent.
    credential.value = device_protocols::aiface::CredentialValue::Text("AAECAwQF".into());
    session.write_credential(&credential).await.unwrap();
    let read = session
        .read_users(FetchMode::All, &mut MemorySink::default())
        .await
        .unwrap();
    assert_eq!(read.users["1001"].slots, [3], "{:?}", read.users["1001"]);
    session.write_credential(&credential).await.unwrap();
    let names = sim.command_names();
    assert_eq!(
        names.iter().filter(|n| *n == "TMP_WRITE").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.iter().filter(|n| *n == "USER_WRQ").count(), 0);

    credential.slot = 11;
    credential.value = device_protocols::aiface::CredentialValue::Text("123".into());
    session.write_credential(&credential).await.unwrap();
    let read = session
        .read_users(FetchMode::All, &mut MemorySink::default())
        .await
        .unwrap();
    assert_eq!(read.users["1001"].user.card.as_deref(), Some("123"));
    assert_eq!(read.users.len(), 20, "no user added or lost");
    let names = sim.command_names();
    assert_eq!(
        names.iter().filter(|n| *n == "USER_WRQ").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        read.users["1001"].slots,
        [3, 11],
        "the finger is still there"
    );
    // Writing the same value again sends no write at all.
    session.write_credential(&credential).await.unwrap();
    let names = sim.command_names();
    assert_eq!(names.iter().filter(|n| *n == "USER_WRQ").count(), 1);

    // A PIN written with an admin privilege changes both, and reads back so.
    let pin = edge_agent::device::Credential {
        user_id: "1002".into(),
        slot: 10,
        name: "ignored for an existing user".into(),
        privilege: 1,
        value: device_protocols::aiface::CredentialValue::Text("777".into()),
    };
    session.write_credential(&pin).await.unwrap();
    let read = session
        .read_users(FetchMode::All, &mut MemorySink::default())
        .await
        .unwrap();
    let user = &read.users["1002"].user;
    assert!(user.has_password && user.privilege == 1, "{user:?}");
    assert!(user.name.ends_with(" 2"), "the name is untouched: {user:?}");
}

// ---- `edge-agent probe`, the real binary ----

struct Probe {
    status: i32,
    stdout: String,
    stderr: String,
}

fn probe(device: &str) -> Probe {
    probe_with(device, &[])
}

fn probe_with(device: &str, args: &[&str]) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge-agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"probe-test\"\ndata_dir = \"{data}\"\nruntime_dir = \"{data}/run\"\n\
             [lock]\ndir = \"{data}/locks\"\n[[device]]\nid = \"zk1\"\n\
             driver = \"zk\"\ncommand_timeout = \"2s\"\n{device}",
            data = dir.path().display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["probe", "--device", "zk1", "--config"])
        .arg(&config)
        .args(args)
        .output()
        .unwrap();
    Probe {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_probe_complete(probe: &Probe, users: u32) {
    assert_eq!(
        probe.status, 0,
        "stdout:\n{}\nstderr:\n{}",
        probe.stdout, probe.stderr
    );
    assert!(
        probe.stdout.contains(&format!(
            "COMPLETE read: {users} users (device reports {users})"
        )),
        "{}",
        probe.stdout
    );
    assert!(probe.stdout.contains("sn DSIM000001"), "{}", probe.stdout);
    assert!(probe.stdout.contains("card"), "{}", probe.stdout);
}

#[test]
fn probe_reads_the_emulator_over_tcp_udp_and_serial() {
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--users",
        "80",
    ]);
    let tcp = probe(&format!(
        "transport = \"tcp\"\naddress = \"{}\"\n",
        sim.tcp.unwrap()
    ));
    assert_probe_complete(&tcp, 80);
    let udp = probe(&format!(
        "transport = \"udp\"\naddress = \"{}\"\n",
        sim.udp.unwrap()
    ));
    assert_probe_complete(&udp, 80);

    let cable = SerialCable::new();
    let _serial_sim = Emulator::zk(&[
        "--serial",
        cable.device_end(),
        "--rs485",
        "--device-id",
        "3",
        "--users",
        "12",
    ]);
    let serial = probe(&format!(
        "transport = \"serial\"\nserial_port = \"{}\"\nrs485_address = 3\n",
        cable.agent_end()
    ));
    assert_probe_complete(&serial, 12);
}

#[test]
fn probe_prints_the_exact_reason_of_an_incomplete_read() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--fault", "wrong-counts"]);
    let probe = probe(&format!("address = \"{}\"\n", sim.tcp.unwrap()));
    assert_eq!(probe.status, 3, "{}\n{}", probe.stdout, probe.stderr);
    assert!(
        probe.stdout.contains("INCOMPLETE read") && probe.stdout.contains("reports 21 users"),
        "{}",
        probe.stdout
    );
}

#[test]
fn probe_redials_an_unreachable_terminal_until_the_wait_runs_out() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let probe = probe_with(&format!("address = \"{address}\"\n"), &["--wait", "5s"]);
    assert_eq!(probe.status, 3, "{}\n{}", probe.stdout, probe.stderr);
    assert!(
        probe.stdout.contains("cannot reach the device"),
        "{}",
        probe.stdout
    );
    assert!(probe.stderr.contains("trying again"), "{}", probe.stderr);
}

// ---- figures (run with `--ignored --nocapture`; printed, never asserted) ----

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

async fn measure(label: &str, endpoint: Endpoint) {
    let wall = std::time::Instant::now();
    let cpu = cpu_time();
    let read = read_device(settings(endpoint)).await.unwrap();
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    assert_eq!(read.users.len(), 10_000);
    println!(
        "FIGURE zk driver, 10,000 users, {label}: wall {:.2} s, CPU {:.3} s, {} KiB in {} round trips",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        read.bytes_received / 1024,
        read.round_trips
    );
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn figure_bulk_read_of_10000_users_on_loopback() {
    for pacing in ["20", "0"] {
        let sim = Emulator::zk(&[
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--users",
            "10000",
            "--logs",
            "0",
            "--pacing-ms",
            pacing,
        ]);
        measure(&format!("tcp, pacing {pacing} ms"), tcp(&sim)).await;
        measure(&format!("udp, pacing {pacing} ms"), udp(&sim)).await;
    }
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn figure_serial_read_against_the_line_rate() {
    let cable = SerialCable::new();
    let _sim = Emulator::zk(&[
        "--serial",
        cable.device_end(),
        "--users",
        "2000",
        "--logs",
        "0",
    ]);
    let wall = std::time::Instant::now();
    let cpu = cpu_time();
    let read = read_device(settings(Endpoint::Serial {
        path: PathBuf::from(cable.agent_end()),
        baud: 115_200,
        address: 1,
    }))
    .await
    .unwrap();
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    assert_eq!(read.users.len(), 2000);
    // 8N1: ten bits on the line per byte.
    let minimum = read.bytes_received as f64 / (115_200.0 / 10.0);
    println!(
        "FIGURE zk driver, 2,000 users over a pty at 115200 baud (emulator throttled, 20 ms \
         pacing): wall {:.2} s, CPU {:.3} s, {} bytes received, line minimum {:.2} s ({:.0} %)",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        read.bytes_received,
        minimum,
        100.0 * minimum / wall.as_secs_f64()
    );
}
