//! The emulator driven over real sockets with the sans-IO types: complete reads over TCP and UDP
//! in every record format, firmware semantics (§7 of the research notes) and the fault knobs.

use std::time::Duration;

use crate::client::TestClient;
use device_protocols::zk::{
    AttendanceLayout, BulkDataset, BulkError, Code, DeviceText, Packet, ReplyError, Request,
    TimeZones, UserId, UserLayout, UserRecord, UserWrite, MAX_CHUNK_TCP, MAX_CHUNK_UDP,
};
use test_support::emulator::{negative_command_log, Protocol};
use test_support::Emulator;

/// Whether a ZK time names a real day (the encoding itself allows "February 31"; a device clock
/// never produces one, and pyzk rejects it).
fn is_real_date(time: device_protocols::zk::ZkTime) -> bool {
    let t = time.to_parts();
    let leap = t.year % 4 == 0 && (t.year % 100 != 0 || t.year % 400 == 0);
    let days = match t.month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    t.day <= days
}

fn assert_complete(read: &crate::client::FullRead, users: u32, logs: u32) {
    assert_eq!((read.sizes.users, read.sizes.records), (users, logs));
    assert!(read.users.count_consistent && read.logs.count_consistent);
    assert_eq!(read.users.users.len() as u32, users);
    assert_eq!(read.logs.records.len() as u32, logs);
}

#[test]
fn complete_read_over_tcp_with_default_pacing() {
    // 5000 records span three months of generated punches, past the end of April.
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "300", "--logs", "5000"]);
    let mut client = TestClient::tcp(sim.tcp.unwrap());
    client.connect(None).unwrap();
    let read = client.full_read(MAX_CHUNK_TCP);
    assert_complete(&read, 300, 5000);
    assert_eq!(read.users.layout, Some(UserLayout::Extended72));
    assert_eq!(read.logs.layout, Some(AttendanceLayout::Full40));
    assert!(
        read.sizes.faces.is_some(),
        "TFT firmware sends the 92-byte sizes"
    );
    let first = &read.users.users[0];
    assert_eq!((first.uid, first.privilege), (1, 14));
    assert_eq!(first.user_id.display(), "1001");
    // Every record names an existing user, as generated.
    for log in &read.logs.records {
        let uid = log.uid.unwrap();
        let user = &read.users.users[usize::from(uid) - 1];
        assert_eq!(log.user_id.as_ref().unwrap(), &user.user_id);
        assert!(
            is_real_date(log.time),
            "{:?} is no calendar date",
            log.time.to_parts()
        );
    }
    sim.assert_nothing_destructive();
}

#[test]
fn complete_read_over_udp_in_compact_formats_with_many_small_slices() {
    for log_format in ["16", "8"] {
        let sim = Emulator::zk(&[
            "--udp",
            "127.0.0.1:0",
            "--users",
            "120",
            "--logs",
            "900",
            "--user-format",
            "28",
            "--log-format",
            log_format,
            "--pacing-ms",
            "0",
        ]);
        let mut client = TestClient::udp(sim.udp.unwrap());
        client.connect(None).unwrap();
        // A 2000-byte slice limit forces a PREPARE/DATA/ACK cycle per slice and a short final
        // slice answered by a lone DATA packet.
        let read = client.full_read(2000);
        assert_complete(&read, 120, 900);
        assert_eq!(read.users.layout, Some(UserLayout::Compact28));
        assert_eq!(
            read.sizes.faces, None,
            "black-and-white firmware sends 80-byte sizes"
        );
        assert_eq!(read.users.users[4].user_id, UserId::Number(1005));
        sim.assert_nothing_destructive();
    }
}

#[test]
fn unpaced_bursts_are_reassembled_over_tcp() {
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "2000",
        "--logs",
        "3000",
        "--pacing-ms",
        "0",
        "--tcp-fragment",
        "65528",
    ]);
    let mut client = TestClient::tcp(sim.tcp.unwrap());
    client.connect(None).unwrap();
    assert_complete(&client.full_read(MAX_CHUNK_TCP), 2000, 3000);
}

#[test]
fn udp_reads_with_the_udp_chunk_limit() {
    let sim = Emulator::zk(&["--udp", "127.0.0.1:0", "--users", "500", "--pacing-ms", "1"]);
    let mut client = TestClient::udp(sim.udp.unwrap());
    client.connect(None).unwrap();
    assert_complete(&client.full_read(MAX_CHUNK_UDP), 500, 100);
}

#[test]
fn names_in_a_legacy_code_page_decode_with_the_configured_encoding_and_keep_raw_bytes() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--native-names", "gbk"]);
    let mut utf8 = TestClient::tcp(sim.tcp.unwrap());
    utf8.connect(None).unwrap();
    let misread = utf8.full_read(MAX_CHUNK_TCP).users.users[4].name.clone();
    // GBK bytes are not UTF-8: flagged as lossy, raw bytes intact, nothing silently dropped.
    assert!(!misread.lossless);
    assert_eq!(misread.raw, [0xD5, 0xC5, 0xCE, 0xB0, b' ', b'5']);
    drop(utf8); // the device serves one TCP client at a time

    let mut gbk = TestClient::tcp(sim.tcp.unwrap());
    gbk.codec = device_protocols::zk::TextCodec::for_label("gbk").unwrap();
    gbk.connect(None).unwrap();
    let users = gbk.full_read(MAX_CHUNK_TCP).users.users;
    assert_eq!(users[4].name.text, "张伟 5");
    assert!(users[4].name.lossless);
    assert_eq!(users[4].name.raw, misread.raw);
    assert!(users[3].name.text.is_ascii());
}

/// `device_enabled` of the emulator's most recent command-log entry.
fn enabled_after_last_command(sim: &Emulator) -> bool {
    sim.commands().last().unwrap()["device_enabled"]
        .as_bool()
        .unwrap()
}

#[test]
fn the_device_is_re_enabled_by_enable_by_the_last_exit_or_by_the_disable_timeout() {
    let sim = Emulator::zk(&["--udp", "127.0.0.1:0"]);
    let mut client = TestClient::udp(sim.udp.unwrap());
    client.connect(None).unwrap();
    let disable = |secs| Request::DisableDevice {
        auto_enable_after_secs: secs,
    };

    client.call(&disable(0)).unwrap();
    client.call(&Request::GetTime).unwrap();
    assert!(
        !enabled_after_last_command(&sim),
        "disabled until told otherwise"
    );
    client.call(&Request::EnableDevice).unwrap();
    assert!(enabled_after_last_command(&sim));

    // A client that dies after DISABLE: the timeout (counted from its last packet) rescues the
    // device.
    client.call(&disable(1)).unwrap();
    assert!(!enabled_after_last_command(&sim));
    std::thread::sleep(Duration::from_millis(1500));
    client.call(&Request::GetTime).unwrap();
    assert!(enabled_after_last_command(&sim));

    // EXIT of the last session re-enables, whatever the client forgot.
    client.call(&disable(0)).unwrap();
    client.exit();
    assert!(enabled_after_last_command(&sim));
}

#[test]
fn comm_key_gates_every_command() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--comm-key", "123456"]);
    let mut wrong = TestClient::tcp(sim.tcp.unwrap());
    assert_eq!(wrong.connect(Some(654_321)), Err(ReplyError::Unauthorized));
    // Still unauthenticated: everything else is refused.
    let reply = wrong.call(&Request::GetFreeSizes).unwrap();
    assert_eq!(reply.code, Code::ACK_UNAUTH);
    drop(wrong);

    let mut right = TestClient::tcp(sim.tcp.unwrap());
    right.connect(Some(123_456)).unwrap();
    assert_complete(&right.full_read(MAX_CHUNK_TCP), 20, 100);
}

#[test]
fn firmware_drops_what_firmware_drops_and_resends_its_cache() {
    let sim = Emulator::zk(&["--udp", "127.0.0.1:0"]);
    let mut client = TestClient::udp(sim.udp.unwrap());
    client.connect(None).unwrap();
    client.set_timeout(Duration::from_millis(300));
    let session = client.session.session_id();

    // Bad checksum: silently dropped.
    let mut corrupt = Packet::new(Code::GET_TIME, session, 10, Vec::new()).encode();
    corrupt[2] ^= 0xFF;
    client.send_raw(&corrupt);
    assert_eq!(client.recv(), None);

    // A datagram longer than the firmware's 1032-byte receive buffer is cut short, so its
    // checksum fails and it is dropped.
    let oversized = Packet::new(Code::OPTIONS_RRQ, session, 12, vec![b'A'; 2000]).encode();
    client.send_raw(&oversized);
    assert_eq!(client.recv(), None);

    // Unknown session: silently dropped.
    client.send_raw(&Packet::new(Code::GET_TIME, session.wrapping_add(1), 13, Vec::new()).encode());
    assert_eq!(client.recv(), None);

    // A repeated reply id gets the cached reply, byte for byte, without re-executing.
    let sizes = Packet::new(Code::GET_FREE_SIZES, session, 20, Vec::new()).encode();
    client.send_raw(&sizes);
    let first = client.recv().unwrap();
    client.send_raw(&Packet::new(Code::GET_VERSION, session, 20, Vec::new()).encode());
    assert_eq!(client.recv().unwrap(), first);

    // A lower reply id is dropped.
    client.send_raw(&Packet::new(Code::GET_TIME, session, 19, Vec::new()).encode());
    assert_eq!(client.recv(), None);

    // A client ACK_OK (event acknowledgement) gets no reply.
    client.send_raw(&Packet::new(Code::ACK_OK, session, 0, Vec::new()).encode());
    assert_eq!(client.recv(), None);

    let dispositions: Vec<String> = sim
        .commands()
        .iter()
        .map(|e| e["disposition"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "dropped-bad-checksum",
        "dropped-unknown-session",
        "resent-cached",
        "dropped-stale-reply-id",
        "no-reply",
    ] {
        assert!(
            dispositions.iter().any(|d| d == expected),
            "{expected} missing"
        );
    }
}

/// Unknown commands are answered with `ACK_UNKNOWN`, as pyzk's error recovery needs, and the
/// allow-list flags each of them: a code not known to be safe (here `CMD_CLEAR_ADMIN`, 20, which
/// the crate does not name) counts as destructive.
#[test]
fn unknown_commands_are_answered_and_flagged() {
    let mut sim = Emulator::start(
        Protocol::Zk,
        negative_command_log(Protocol::Zk, "unknown-codes"),
        &["--udp", "127.0.0.1:0"],
    );
    sim.expect_destructive();
    let mut client = TestClient::udp(sim.udp.unwrap());
    client.connect(None).unwrap();
    let session = client.session.session_id();
    for (reply_id, code) in [(30, 2001), (31, 0xFFFF), (32, 4242), (33, 20)] {
        client.send_raw(&Packet::new(Code(code), session, reply_id, Vec::new()).encode());
        assert_eq!(client.recv().unwrap().code, Code::ACK_UNKNOWN);
    }
    let flagged: Vec<u64> = sim
        .commands()
        .into_iter()
        .filter(|e| e["destructive"] == true)
        .map(|e| e["code"].as_u64().unwrap())
        .collect();
    assert_eq!(flagged, [2001, 0xFFFF, 4242, 20]);
}

#[test]
fn the_command_log_flags_a_destructive_command() {
    // The agent cannot build one, so this test crafts the raw packet: without it, "the log never
    // shows a destructive command" could pass because the flag never works.
    let mut sim = Emulator::start(
        Protocol::Zk,
        negative_command_log(Protocol::Zk, "destructive"),
        &["--udp", "127.0.0.1:0", "--users", "3"],
    );
    sim.expect_destructive();
    let mut client = TestClient::udp(sim.udp.unwrap());
    client.connect(None).unwrap();
    let session = client.session.session_id();
    let delete = Packet::new(Code::DELETE_USER, session, 5, 2u16.to_le_bytes().to_vec());
    client.send_raw(&delete.encode());
    assert_eq!(client.recv().unwrap().code, Code::ACK_OK);
    let flagged: Vec<_> = sim
        .commands()
        .into_iter()
        .filter(|e| e["destructive"] == true)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["destructive_kind"], "DeleteUser");
    assert_eq!(flagged[0]["code"], 18);
}

fn new_user(uid: u16, user_id: &str, name: &str) -> UserRecord {
    UserRecord {
        uid,
        privilege: 0,
        password: DeviceText::utf8(""),
        name: DeviceText::utf8(name),
        card: 4242,
        group: 1,
        user_id: UserId::Text(DeviceText::utf8(user_id)),
        time_zones: TimeZones::Extended {
            own: 0,
            zones: [0; 3],
        },
    }
}

#[test]
fn set_user_follows_firmware_rules_and_reads_back() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "5"]);
    let mut client = TestClient::tcp(sim.tcp.unwrap());
    client.connect(None).unwrap();
    let write =
        |user: &UserRecord| Request::SetUser(UserWrite::new(user, UserLayout::Extended72).unwrap());

    let added = new_user(50, "9050", "Zoe Added");
    let reply = client.call(&write(&added)).unwrap();
    client.session.expect_ok(&reply).unwrap();
    client.call(&Request::RefreshData).unwrap();

    // The user id 1001 belongs to uid 1: firmware refuses with detail 1.
    let reply = client.call(&write(&new_user(51, "1001", "Clash"))).unwrap();
    assert_eq!(
        client.session.expect_ok(&reply),
        Err(ReplyError::Refused {
            request: Code::USER_WRQ,
            detail: 1
        })
    );
    // uid 2 exists with another user id: a uid's user id cannot be changed.
    let reply = client
        .call(&write(&new_user(2, "7777", "Renamed")))
        .unwrap();
    assert_eq!(reply.code, Code::ACK_ERROR);
    // Same uid, same user id: an update.
    let mut renamed = new_user(3, "1003", "Updated Three");
    renamed.card = 1;
    let reply = client.call(&write(&renamed)).unwrap();
    client.session.expect_ok(&reply).unwrap();

    let read = client.full_read(MAX_CHUNK_TCP);
    assert_complete(&read, 6, 100);
    assert!(read.users.users.contains(&added));
    assert!(read.users.users.contains(&renamed));
    sim.assert_nothing_destructive();
}

#[test]
fn short_chunk_fault_is_detected() {
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "200",
        "--fault",
        "short-chunk",
        "--pacing-ms",
        "0",
    ]);
    let mut client = TestClient::tcp(sim.tcp.unwrap());
    client.connect(None).unwrap();
    let err = client.bulk(BulkDataset::Users, MAX_CHUNK_TCP).unwrap_err();
    assert!(matches!(err, BulkError::ShortSlice { .. }), "{err}");
}

#[test]
fn drop_mid_transfer_closes_the_connection_before_the_dataset_is_complete() {
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "200",
        "--fault",
        "drop-mid-transfer",
        "--pacing-ms",
        "0",
    ]);
    let mut client = TestClient::tcp(sim.tcp.unwrap());
    client.connect(None).unwrap();
    let (mut read, first) =
        device_protocols::zk::BulkRead::start(BulkDataset::Users, MAX_CHUNK_TCP);
    let announce = client.call(&first).unwrap();
    let device_protocols::zk::BulkStep::Send(slice) = read.on_packet(&announce).unwrap() else {
        panic!("200 users are too many to send inline");
    };
    let mut reply = client.call(&slice);
    while let Some(packet) = reply {
        assert!(
            !matches!(
                read.on_packet(&packet).unwrap(),
                device_protocols::zk::BulkStep::Complete(_)
            ),
            "completed despite the dropped transfer"
        );
        reply = client.recv();
    }
    let (received, total) = read.progress();
    assert!(received < total as usize);
}

#[test]
fn wrong_counts_make_the_read_inconsistent() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--fault", "wrong-counts"]);
    let mut client = TestClient::tcp(sim.tcp.unwrap());
    client.connect(None).unwrap();
    let read = client.full_read(MAX_CHUNK_TCP);
    assert_eq!(read.sizes.users, 21);
    assert!(!read.users.count_consistent);
    assert!(!read.logs.count_consistent);
    assert_eq!(read.users.users.len(), 20);
}

#[test]
fn silence_fault_answers_connect_only() {
    let sim = Emulator::zk(&["--udp", "127.0.0.1:0", "--fault", "silence"]);
    let mut client = TestClient::udp(sim.udp.unwrap());
    client.connect(None).unwrap();
    client.set_timeout(Duration::from_millis(300));
    assert_eq!(client.call(&Request::GetFreeSizes), None);
}

#[test]
fn a_silent_tcp_client_is_disconnected_and_the_next_one_served() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--first-packet-timeout-secs", "1"]);
    let mut silent = TestClient::tcp(sim.tcp.unwrap());
    // pyzk's probe: connect and close at once; it must not occupy the device.
    drop(std::net::TcpStream::connect(sim.tcp.unwrap()).unwrap());
    // The silent client is cut off: end of stream, not our own read timeout.
    assert!(silent.closed_by_peer());
    let mut next = TestClient::tcp(sim.tcp.unwrap());
    next.connect(None).unwrap();
    assert_complete(&next.full_read(MAX_CHUNK_TCP), 20, 100);
}

/// CPU time of this process so far (user + system), for the figures below.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zero-initialised struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Prints the figures for a 10,000-user / 100,000-record read with the sans-IO codec (the test
/// client stands in for the agent's driver). Not a pass/fail test: run it on demand with
/// `cargo test --release -p device-protocols --test zk emulator:: -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints figures, takes minutes with firmware pacing"]
fn bulk_read_figures() {
    for (pacing, transport) in [("20", "tcp"), ("0", "tcp"), ("20", "udp")] {
        let flag = format!("--{transport}");
        let sim = Emulator::zk(&[
            &flag,
            "127.0.0.1:0",
            "--users",
            "10000",
            "--logs",
            "100000",
            "--pacing-ms",
            pacing,
        ]);
        let (wall, cpu) = (std::time::Instant::now(), cpu_seconds());
        let mut client = match transport {
            "tcp" => TestClient::tcp(sim.tcp.unwrap()),
            _ => TestClient::udp(sim.udp.unwrap()),
        };
        client.connect(None).unwrap();
        let chunk = if transport == "tcp" {
            MAX_CHUNK_TCP
        } else {
            MAX_CHUNK_UDP
        };
        let read = client.full_read(chunk);
        assert_complete(&read, 10_000, 100_000);
        eprintln!(
            "sans-IO client over {transport}, pacing {pacing} ms: 10000 users + 100000 records \
             in {:.2} s wall, {:.2} s CPU",
            wall.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
}
