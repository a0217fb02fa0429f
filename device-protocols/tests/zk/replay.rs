//! Replays device replies captured from real terminals (public sources, see the fixture headers)
//! through the reassembler, the bulk-read machine and the record decoders, at the capture's own
//! segment boundaries and at many odd ones. Decoded users, counts and checksums must match what
//! the sources document.

use crate::support::{fixture_segments, hex};
use device_protocols::zk::{
    decode_attendance, decode_users, frame_tcp, AttendanceLayout, BulkDataset, BulkRead, BulkStep,
    ClientSession, Code, CommKey, DeviceSizes, Packet, Request, SessionState, TcpReassembler,
    TextCodec, TimeZones, UserId, UserLayout, UserRecord, UserWrite, ZkTime, MAX_CHUNK_TCP,
};

/// Reassembles a stream fed in the given pieces and decodes every packet, asserting that each
/// device-computed checksum verifies.
fn packets_from(pieces: impl IntoIterator<Item = Vec<u8>>) -> Vec<Packet> {
    let mut reassembler = TcpReassembler::new();
    let mut packets = Vec::new();
    for piece in pieces {
        reassembler.push(&piece);
        while let Some(bytes) = reassembler.next_packet().expect("stream stays in sync") {
            let incoming = Packet::decode(&bytes).expect("whole packet");
            assert!(
                incoming.checksum_valid,
                "captured {} has a bad checksum",
                incoming.packet.code
            );
            packets.push(incoming.packet);
        }
    }
    assert_eq!(reassembler.pending(), 0, "stream ended mid-frame");
    packets
}

/// The same stream as the capture's segments, re-cut every `step` bytes.
fn recut(segments: &[Vec<u8>], step: usize) -> Vec<Vec<u8>> {
    segments.concat().chunks(step).map(<[u8]>::to_vec).collect()
}

/// Runs every split the tests care about and checks they all yield the same packets.
fn packets_at_every_split(name: &str) -> Vec<Packet> {
    let segments = fixture_segments(name);
    let reference = packets_from(segments.clone());
    for step in [1, 2, 3, 5, 7, 13, 17, 31, 509, 1021, 4099] {
        assert_eq!(
            packets_from(recut(&segments, step)),
            reference,
            "{name} split every {step} bytes"
        );
    }
    reference
}

/// Drives the bulk-read machine with the captured replies, as a driver would.
fn bulk_read(dataset: BulkDataset, replies: &[Packet]) -> Vec<u8> {
    let (mut read, first) = BulkRead::start(dataset, MAX_CHUNK_TCP);
    assert_eq!(first, Request::PrepareBuffer(dataset));
    for (index, reply) in replies.iter().enumerate() {
        match read.on_packet(reply).expect("captured transfer is valid") {
            BulkStep::Complete(bytes) => {
                assert_eq!(index, replies.len() - 1, "completed before the last reply");
                return bytes;
            }
            BulkStep::Send(request) => assert!(
                matches!(request, Request::ReadBuffer { .. }),
                "unexpected {request:?}"
            ),
            BulkStep::AwaitMore => {}
        }
    }
    panic!("bulk read never completed")
}

#[test]
fn chunked_read_of_70_users_split_at_odd_boundaries() {
    let packets = packets_at_every_split("pyzk_tcp_70_users_chunked.hex");
    assert_eq!(packets.len(), 11);
    let sizes = DeviceSizes::decode(&packets[1].data).unwrap();
    assert_eq!((sizes.users, sizes.records), (70, 3225));
    assert_eq!(sizes.faces, None, "80-byte reply has no face counters");
    // Fragment index rides in the session field of DATA.
    let indices: Vec<u16> = packets[4..10].iter().map(|p| p.session_id).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 5]);

    let dataset = bulk_read(BulkDataset::Users, &packets[2..]);
    assert_eq!(dataset.len(), 5044);
    let table = decode_users(&dataset, sizes.users, None, &TextCodec::default()).unwrap();
    assert_eq!(table.layout, Some(UserLayout::Extended72));
    assert!(table.count_consistent);
    assert_eq!(table.users.len(), 70);
    let second = &table.users[1];
    assert_eq!(second.uid, 2);
    assert_eq!(second.user_id.display(), "3494866");
    assert_eq!(second.name.text, "NievesLopez");
    assert_eq!(table.users[69].uid, 70);
}

#[test]
fn the_bulk_machine_asks_for_the_slice_the_capture_answered() {
    let packets = packets_from(fixture_segments("pyzk_tcp_70_users_chunked.hex"));
    let (mut read, _) = BulkRead::start(BulkDataset::Users, MAX_CHUNK_TCP);
    assert_eq!(
        read.on_packet(&packets[2]).unwrap(),
        BulkStep::Send(Request::ReadBuffer {
            offset: 0,
            len: 5044
        })
    );
    // With a smaller chunk limit the same announcement leads to a first slice of that size.
    let (mut small, _) = BulkRead::start(BulkDataset::Users, 1024);
    assert_eq!(
        small.on_packet(&packets[2]).unwrap(),
        BulkStep::Send(Request::ReadBuffer {
            offset: 0,
            len: 1024
        })
    );
}

#[test]
fn a_slice_closed_early_is_reported_as_short() {
    let packets = packets_from(fixture_segments("pyzk_tcp_70_users_chunked.hex"));
    let (mut read, _) = BulkRead::start(BulkDataset::Users, MAX_CHUNK_TCP);
    read.on_packet(&packets[2]).unwrap();
    read.on_packet(&packets[3]).unwrap();
    read.on_packet(&packets[4]).unwrap();
    let err = read.on_packet(&packets[10]).unwrap_err();
    assert!(
        err.to_string().contains("closed after 1008 of 5044 bytes"),
        "{err}"
    );
}

#[test]
fn inline_read_of_7_users_needs_the_count_to_choose_72_over_28() {
    let cut = &fixture_segments("pyzk_sizes_reply_cut.hex")[0];
    let incoming = Packet::decode(&cut[8..]).unwrap();
    assert!(incoming.checksum_valid);
    let sizes = DeviceSizes::decode(&incoming.packet.data).unwrap();
    assert_eq!(
        (sizes.users, sizes.fingerprints, sizes.records),
        (7, 6, 605)
    );
    assert_eq!(
        (
            sizes.user_capacity,
            sizes.fingerprint_capacity,
            sizes.record_capacity
        ),
        (10_000, 3000, 100_000)
    );

    let packets = packets_at_every_split("pyzk_tcp_7_users_inline.hex");
    let dataset = bulk_read(BulkDataset::Users, &packets[1..]);
    let codec = TextCodec::default();
    let table = decode_users(&dataset, sizes.users, None, &codec).unwrap();
    assert_eq!(table.layout, Some(UserLayout::Extended72));
    assert!(table.count_consistent);
    let ids: Vec<String> = table.users.iter().map(|u| u.user_id.display()).collect();
    assert_eq!(ids, ["808", "821", "835", "831", "832", "86", "842"]);
    assert_eq!(table.users[3].uid, 4);
    assert_eq!(table.users[3].name.text, "", "the device stored no name");

    // 504 bytes are also 18 × 28: a count of 18 would select the compact layout ...
    let as_compact = decode_users(&dataset, 18, None, &codec).unwrap();
    assert_eq!(as_compact.layout, Some(UserLayout::Compact28));
    // ... and a wrong count falls back to plausibility, which rejects the 28-byte reading.
    let fallback = decode_users(&dataset, 0, None, &codec).unwrap();
    assert_eq!(fallback.layout, Some(UserLayout::Extended72));
    assert!(!fallback.count_consistent);
}

#[test]
fn k20_users_arrive_in_two_reads() {
    let packets = packets_at_every_split("pyzk_tcp_2_users_k20.hex");
    let sizes = DeviceSizes::decode(&packets[1].data).unwrap();
    assert_eq!(sizes.users, 2);
    let dataset = bulk_read(BulkDataset::Users, &packets[2..]);
    let table = decode_users(&dataset, sizes.users, None, &TextCodec::default()).unwrap();
    assert_eq!(table.users.len(), 2);
    assert_eq!(table.users[0].name.text, "cfulano");
    assert_eq!(table.users[1].uid, 2);
    assert_eq!(table.users[1].user_id.display(), "222222cb");
    assert_eq!(table.users[1].name.text, "rmengano");
}

#[test]
fn zp_user_entry_decodes_field_by_field() {
    let record = &fixture_segments("zp_user72_ned.hex")[0];
    let user = UserRecord::decode(record, UserLayout::Extended72, &TextCodec::default());
    assert_eq!(user.uid, 0x0D);
    assert_eq!(
        user.password.text, "444",
        "garbage after the NUL is ignored"
    );
    assert_eq!(user.name.text, "Ned");
    assert_eq!(user.card, 0xDE);
    assert_eq!(user.group, 2);
    assert_eq!(
        user.time_zones,
        TimeZones::Extended {
            own: 1,
            zones: [1, 2, 0]
        }
    );
    assert_eq!(user.user_id.display(), "555");
}

#[test]
fn zp_user_write_frame_is_reproduced_byte_for_byte() {
    let frame = &fixture_segments("zp_user_wrq_nuevo.hex")[0];
    let packet = packets_from([frame.clone()]).remove(0);
    assert_eq!(packet.code, Code::USER_WRQ);
    assert_eq!((packet.session_id, packet.reply_id), (0x8A9D, 0x5C));
    let user = UserRecord::decode(&packet.data, UserLayout::Extended72, &TextCodec::default());
    assert_eq!(user.uid, 0x0E);
    assert_eq!(user.privilege, 6);
    assert_eq!(user.password.text, "123456");
    assert_eq!(user.name.text, "Nuevo");
    assert_eq!(user.card, 6543);
    assert_eq!(user.group, 1);
    assert_eq!(
        user.user_id,
        UserId::Text(device_protocols::zk::DeviceText::utf8("11224488"))
    );

    // Our encoder writes the same record, except the SDK's garbage byte after the password NUL.
    let write = UserWrite::new(&user, UserLayout::Extended72).unwrap();
    let mut expected = packet.data.clone();
    expected[10] = 0;
    assert_eq!(write.bytes(), expected.as_slice());
    let mut captured = frame.clone();
    captured[8 + 8 + 10] = 0;
    let ours = Packet::new(Code::USER_WRQ, 0x8A9D, 0x5C, write.bytes().to_vec());
    let ours = frame_tcp(&ours.encode());
    // Only the checksum can differ (the garbage byte was part of it).
    assert_eq!(ours[..10], captured[..10]);
    assert_eq!(ours[12..], captured[12..]);
}

#[test]
fn zp_attendance_entry_decodes_field_by_field() {
    let record = &fixture_segments("zp_attlog40.hex")[0];
    let log = decode_attendance(
        &device_protocols::zk::dataset::dataset_of(record),
        1,
        None,
        &TextCodec::default(),
    )
    .unwrap();
    assert_eq!(log.layout, Some(AttendanceLayout::Full40));
    let entry = &log.records[0];
    assert_eq!(entry.uid, Some(0x0D));
    assert_eq!(entry.user_id.as_ref().unwrap().display(), "999111333");
    assert_eq!(entry.verify, 1);
    assert_eq!(entry.state, 0);
    assert_eq!(entry.time, ZkTime(0x2368_B36B));
    assert_eq!(entry.time.to_parts().hour, 17);
}

#[test]
fn client_frames_match_captured_client_frames() {
    let mut session = ClientSession::new();
    let connect = frame_tcp(session.packet(&Request::Connect).encode().as_bytes());
    assert_eq!(connect, hex("5050827d08000000e80317fc00000000"));

    let unauth = packets_from([hex("5050827d08000000d5075bb2cf450000")]).remove(0);
    assert_eq!(
        session.on_connect_reply(&unauth).unwrap(),
        SessionState::NeedsAuth
    );
    assert_eq!(session.session_id(), 0x45CF);
    let auth = frame_tcp(
        session
            .packet(&Request::Auth(CommKey(12)))
            .encode()
            .as_bytes(),
    );
    assert_eq!(auth, hex("5050827d0c0000004e044e2ccf450100614d323c"));

    let ok = packets_from([hex("5050827d08000000d0075fb2cf450100")]).remove(0);
    assert!(session.is_reply_to_last(&ok));
    session.on_auth_reply(&ok).unwrap();
    let sizes = frame_tcp(session.packet(&Request::GetFreeSizes).encode().as_bytes());
    assert_eq!(sizes, hex("5050827d080000003200fcb9cf450200"));

    let prepare = Packet::new(
        Code::PREPARE_BUFFER,
        0x45CF,
        0x14,
        Request::PrepareBuffer(BulkDataset::Users).data(0x45CF),
    );
    assert_eq!(
        frame_tcp(&prepare.encode()),
        hex("5050827d13000000df053ca6cf4514000109000500000000000000")
    );
}
