//! The ZK driver stores punches of every attendance layout: 16-byte records over TCP (numeric
//! user ids) and 8-byte records over UDP (internal uids only, named through the user table read
//! in the same session), 40-byte records and fingerprint templates over a serial pty (the
//! experimental transport keeps parity), each record once, and a second read stores nothing new.

use std::time::Duration;

use device_protocols::zk::{CommKey, TextCodec};
use edge_agent::device::punches::{self, PunchLog};
use edge_agent::device::zk::{Endpoint, ZkPunches, ZkSession, ZkSettings};
use edge_agent::device::{DeviceSession, FetchMode, SummarySink};
use test_support::agent::upstream::AgentSide;
use test_support::pty::SerialCable;
use test_support::Emulator;

async fn stored_after_two_reads(endpoint: Endpoint, side: &AgentSide) -> usize {
    let settings = ZkSettings {
        device_id: "zk-layouts".into(),
        endpoint,
        comm_key: CommKey(0),
        codec: TextCodec::default(),
        command_timeout: Duration::from_secs(5),
    };
    let log = PunchLog::new(side.outbox.clone(), "layouts");
    let session = ZkSession::new(settings).with_punches(ZkPunches::new(log, side.store.clone()));
    for _ in 0..2 {
        session
            .read_users(FetchMode::Missing, &mut SummarySink::default())
            .await
            .expect("complete read");
    }
    let stored = punches::of_device(&side.store, "zk-layouts").unwrap();
    for punch in &stored {
        let id: u32 = punch.punch.user_id.parse().unwrap();
        assert!((1001..=1007).contains(&id), "{punch:?}");
        assert!(punch.punch.time.starts_with("20"), "{punch:?}");
    }
    stored.len()
}

#[tokio::test]
async fn sixteen_byte_records_over_tcp_are_stored_once() {
    let sim = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "7",
        "--logs",
        "150",
        "--user-format",
        "28",
        "--log-format",
        "16",
        "--pacing-ms",
        "0",
    ]);
    let side = AgentSide::new(1_000_000_000);
    let endpoint = Endpoint::Tcp {
        address: sim.tcp.unwrap().to_string(),
        udp_fallback: false,
    };
    assert_eq!(stored_after_two_reads(endpoint, &side).await, 150);
    let stored = punches::of_device(&side.store, "zk-layouts").unwrap();
    assert!(stored.iter().all(|s| s.punch.raw["layout"] == "16"));
    sim.assert_nothing_destructive();
}

#[tokio::test]
async fn eight_byte_records_over_udp_are_named_through_the_user_table() {
    let sim = Emulator::zk(&[
        "--udp",
        "127.0.0.1:0",
        "--users",
        "7",
        "--logs",
        "150",
        "--user-format",
        "28",
        "--log-format",
        "8",
        "--pacing-ms",
        "0",
    ]);
    let side = AgentSide::new(1_000_000_000);
    let endpoint = Endpoint::Udp {
        address: sim.udp.unwrap().to_string(),
    };
    assert_eq!(stored_after_two_reads(endpoint, &side).await, 150);
    let stored = punches::of_device(&side.store, "zk-layouts").unwrap();
    assert!(stored
        .iter()
        .all(|s| s.punch.raw["layout"] == "8" && s.punch.raw["user_id_from_uid"] == "true"));
    sim.assert_nothing_destructive();
}

#[tokio::test]
async fn punches_and_templates_are_read_over_a_serial_pty() {
    let cable = SerialCable::new();
    let sim = Emulator::zk(&[
        "--serial",
        cable.device_end(),
        "--users",
        "7",
        "--logs",
        "60",
        "--fingers",
        "2",
    ]);
    let side = AgentSide::new(1_000_000_000);
    let endpoint = Endpoint::Serial {
        path: cable.agent_end().into(),
        baud: 115_200,
        address: 1,
    };
    assert_eq!(stored_after_two_reads(endpoint.clone(), &side).await, 60);
    let settings = ZkSettings {
        device_id: "zk-layouts".into(),
        endpoint,
        comm_key: CommKey(0),
        codec: TextCodec::default(),
        command_timeout: Duration::from_secs(5),
    };
    let read = ZkSession::new(settings)
        .read_users(FetchMode::All, &mut SummarySink::default())
        .await
        .expect("complete read");
    let fingerprints: Vec<u8> = read.users.values().map(|u| u.user.fingerprints).collect();
    assert_eq!(fingerprints, [2, 0, 2, 0, 2, 0, 2], "{read:?}");
    sim.assert_nothing_destructive();
}
