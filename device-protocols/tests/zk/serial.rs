//! The experimental serial frame over a real pty pair: a complete read through `device-sim zk
//! --serial`, and RS485 addressing (a frame for another device is ignored).

use std::time::{Duration, Instant};

use crate::client::{SerialLink, TestClient};
use device_protocols::zk::{Request, MAX_CHUNK_UDP};
use test_support::pty::Pty;
use test_support::Emulator;

fn client(pty: &Pty, address: u8) -> TestClient {
    let reader = pty.master.try_clone().unwrap();
    let writer = pty.master.try_clone().unwrap();
    TestClient::serial(SerialLink::new(writer, reader, address))
}

#[test]
fn complete_read_over_a_pty_at_115200_baud() {
    let pty = Pty::open();
    let sim = Emulator::zk(&[
        "--serial",
        &pty.slave_path,
        "--rs485",
        "--device-id",
        "7",
        "--users",
        "100",
        "--logs",
        "300",
    ]);
    let mut client = client(&pty, 7);
    let started = Instant::now();
    client.connect(None).unwrap();
    let read = client.full_read(MAX_CHUNK_UDP);
    let elapsed = started.elapsed();
    assert_eq!((read.sizes.users, read.sizes.records), (100, 300));
    assert!(read.users.count_consistent && read.logs.count_consistent);
    assert_eq!(read.users.users.len(), 100);
    assert_eq!(read.logs.records.len(), 300);
    // A figure, not an assertion: how close the read came to the line's byte rate.
    let payload = 4 + 100 * 72 + 4 + 300 * 40;
    eprintln!(
        "serial read of {payload} dataset bytes took {:.2} s; 115200 baud minimum {:.2} s",
        elapsed.as_secs_f64(),
        payload as f64 * 10.0 / 115_200.0
    );
    sim.assert_nothing_destructive();
}

#[test]
fn rs485_ignores_frames_for_another_address_and_rs232_does_not() {
    let pty = Pty::open();
    let sim = Emulator::zk(&["--serial", &pty.slave_path, "--rs485", "--device-id", "7"]);
    let mut stranger = client(&pty, 8);
    stranger.set_timeout(Duration::from_millis(800));
    assert_eq!(
        stranger.call(&Request::Connect),
        None,
        "answered another address"
    );
    assert!(sim
        .commands()
        .iter()
        .any(|e| e["disposition"] == "dropped-other-address"));

    // The same line, now addressed to the device (one reader per line: reuse the link).
    let mut addressed = stranger;
    addressed.set_serial_address(7);
    addressed.set_timeout(Duration::from_secs(10));
    addressed.session = device_protocols::zk::ClientSession::new();
    addressed.connect(None).unwrap();
    addressed.exit();
    drop(sim);

    // RS232 firmware does not check the address.
    let pty = Pty::open();
    let _sim = Emulator::zk(&["--serial", &pty.slave_path, "--device-id", "7"]);
    let mut any = client(&pty, 8);
    any.connect(None).unwrap();
    any.exit();
}
