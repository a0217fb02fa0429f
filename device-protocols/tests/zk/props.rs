//! Property tests: encode/decode round trips and reassembly under arbitrary splits.

use device_protocols::zk::device::{prepare_buffer_reply, read_buffer_replies, INLINE_THRESHOLD};
use device_protocols::zk::{
    frame_serial, frame_tcp, AttendanceLayout, AttendanceRecord, BulkDataset, BulkRead, BulkStep,
    Code, DeviceSizes, DeviceText, FaceSizes, Packet, Request, SerialReassembler, TcpReassembler,
    TextCodec, TimeZones, UserId, UserLayout, UserRecord, ZkDateTime, ZkTime,
};
use proptest::prelude::*;

fn packet() -> impl Strategy<Value = Packet> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..1500),
    )
        .prop_map(|(code, session, reply, data)| Packet::new(Code(code), session, reply, data))
}

/// Cuts `bytes` at the given (sorted, deduplicated) positions.
fn cut(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.retain(|&c| c > 0 && c < bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&bytes[start..c]);
        start = c;
    }
    pieces.push(&bytes[start..]);
    pieces
}

fn ascii(max: usize) -> impl Strategy<Value = DeviceText> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}"))
        .unwrap()
        .prop_map(|s| DeviceText::utf8(&s))
}

fn digits(max: usize) -> impl Strategy<Value = DeviceText> {
    proptest::string::string_regex(&format!("[0-9]{{0,{max}}}"))
        .unwrap()
        .prop_map(|s| DeviceText::utf8(&s))
}

fn user(layout: UserLayout) -> BoxedStrategy<UserRecord> {
    match layout {
        UserLayout::Extended72 => (
            any::<u16>(),
            any::<u8>(),
            digits(8),
            ascii(24),
            any::<u32>(),
            any::<u8>(),
            proptest::string::string_regex("[!-~]{0,24}").unwrap(),
            any::<u16>(),
            any::<[u16; 3]>(),
        )
            .prop_map(
                |(uid, privilege, password, name, card, group, id, own, zones)| UserRecord {
                    uid,
                    privilege,
                    password,
                    name,
                    card: u64::from(card),
                    group,
                    user_id: UserId::Text(DeviceText::utf8(&id)),
                    time_zones: TimeZones::Extended { own, zones },
                },
            )
            .boxed(),
        UserLayout::Compact28 => (
            any::<u16>(),
            any::<u8>(),
            digits(5),
            ascii(8),
            0u64..(1 << 40),
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
        )
            .prop_map(
                |(uid, privilege, password, name, card, group, id, bits)| UserRecord {
                    uid,
                    privilege,
                    password,
                    name,
                    card,
                    group,
                    user_id: UserId::Number(id),
                    time_zones: TimeZones::Compact { bits },
                },
            )
            .boxed(),
    }
}

fn attendance(layout: AttendanceLayout) -> BoxedStrategy<AttendanceRecord> {
    let common = (any::<u8>(), any::<u8>(), any::<u32>());
    match layout {
        AttendanceLayout::Full40 => (
            common,
            any::<u16>(),
            proptest::string::string_regex("[!-~]{0,24}").unwrap(),
            any::<u32>(),
        )
            .prop_map(
                |((verify, state, time), uid, id, workcode)| AttendanceRecord {
                    uid: Some(uid),
                    user_id: Some(UserId::Text(DeviceText::utf8(&id))),
                    verify,
                    state,
                    time: ZkTime(time),
                    workcode: Some(workcode),
                },
            )
            .boxed(),
        AttendanceLayout::Extended16 => (common, any::<u32>(), any::<u32>())
            .prop_map(|((verify, state, time), id, workcode)| AttendanceRecord {
                uid: None,
                user_id: Some(UserId::Number(id)),
                verify,
                state,
                time: ZkTime(time),
                workcode: Some(workcode),
            })
            .boxed(),
        AttendanceLayout::Compact8 => (common, any::<u16>())
            .prop_map(|((verify, state, time), uid)| AttendanceRecord {
                uid: Some(uid),
                user_id: None,
                verify,
                state,
                time: ZkTime(time),
                workcode: None,
            })
            .boxed(),
    }
}

proptest! {
    #[test]
    fn packets_round_trip_with_valid_checksums(p in packet()) {
        let incoming = Packet::decode(&p.encode()).unwrap();
        prop_assert!(incoming.checksum_valid);
        prop_assert_eq!(incoming.packet, p);
    }

    #[test]
    fn any_flipped_bit_breaks_the_checksum(p in packet(), bit in any::<usize>()) {
        let mut bytes = p.encode();
        let bit = bit % (bytes.len() * 8);
        // Flipping a bit of the checksum field itself also must be detected.
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!Packet::decode(&bytes).unwrap().checksum_valid);
    }

    #[test]
    fn tcp_reassembly_is_independent_of_read_boundaries(
        packets in prop::collection::vec(packet(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream: Vec<u8> = packets.iter().flat_map(|p| frame_tcp(&p.encode())).collect();
        let cuts = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        let mut reassembler = TcpReassembler::new();
        let mut out = Vec::new();
        for piece in cut(&stream, cuts) {
            reassembler.push(piece);
            while let Some(bytes) = reassembler.next_packet().unwrap() {
                out.push(Packet::decode(&bytes).unwrap().packet);
            }
        }
        prop_assert_eq!(out, packets);
        prop_assert_eq!(reassembler.pending(), 0);
    }

    #[test]
    fn serial_reassembly_is_independent_of_read_boundaries(
        packets in prop::collection::vec(packet(), 1..5),
        address in 1u8..=254,
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream: Vec<u8> = packets
            .iter()
            .flat_map(|p| frame_serial(address, &p.encode()))
            .collect();
        let cuts = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        let mut reassembler = SerialReassembler::new();
        let mut out = Vec::new();
        for piece in cut(&stream, cuts) {
            reassembler.push(piece);
            while let Some(frame) = reassembler.next_frame() {
                prop_assert!(frame.checksum_valid);
                prop_assert_eq!(frame.address, address);
                out.push(Packet::decode(&frame.packet).unwrap().packet);
            }
        }
        prop_assert_eq!(out, packets);
    }

    #[test]
    fn users_round_trip_72(u in user(UserLayout::Extended72)) {
        let bytes = u.encode(UserLayout::Extended72).unwrap();
        prop_assert_eq!(bytes.len(), 72);
        prop_assert_eq!(UserRecord::decode(&bytes, UserLayout::Extended72, &TextCodec::default()), u);
    }

    #[test]
    fn users_round_trip_28(u in user(UserLayout::Compact28)) {
        let bytes = u.encode(UserLayout::Compact28).unwrap();
        prop_assert_eq!(bytes.len(), 28);
        prop_assert_eq!(UserRecord::decode(&bytes, UserLayout::Compact28, &TextCodec::default()), u);
    }

    #[test]
    fn attendance_round_trips(
        (layout, record) in prop_oneof![
            Just(AttendanceLayout::Full40),
            Just(AttendanceLayout::Extended16),
            Just(AttendanceLayout::Compact8),
        ].prop_flat_map(|l| (Just(l), attendance(l)))
    ) {
        let bytes = record.encode(layout).unwrap();
        prop_assert_eq!(AttendanceRecord::decode(&bytes, layout, &TextCodec::default()), record);
    }

    #[test]
    fn sizes_round_trip(
        counts in any::<[u32; 9]>(),
        faces in prop::option::of(any::<(u32, u32)>()),
    ) {
        let sizes = DeviceSizes {
            users: counts[0],
            fingerprints: counts[1],
            records: counts[2],
            oplog: counts[3],
            admins: counts[4],
            passwords: counts[5],
            fingerprint_capacity: counts[6],
            user_capacity: counts[7],
            record_capacity: counts[8],
            faces: faces.map(|(count, capacity)| FaceSizes { count, capacity }),
        };
        let bytes = sizes.encode();
        prop_assert_eq!(bytes.len(), if faces.is_some() { 92 } else { 80 });
        prop_assert_eq!(DeviceSizes::decode(&bytes).unwrap(), sizes);
    }

    #[test]
    fn zk_time_round_trips_for_valid_dates(
        year in 2000u16..2100, month in 1u8..=12, day in 1u8..=31,
        hour in 0u8..24, minute in 0u8..60, second in 0u8..60,
    ) {
        let parts = ZkDateTime { year, month, day, hour, minute, second };
        prop_assert_eq!(ZkTime::from_parts(parts).to_parts(), parts);
    }

    /// Whatever slice limit the client picks and whatever fragment size the device uses, the
    /// bulk machine reassembles exactly the dataset the device held.
    #[test]
    fn bulk_read_reassembles_any_slicing(
        records in prop::collection::vec(any::<u8>(), 0..20_000),
        max_chunk in 1u32..70_000,
        fragment in 1usize..5000,
    ) {
        let dataset = device_protocols::zk::dataset::dataset_of(&records);
        let (mut read, mut request) = BulkRead::start(BulkDataset::Attendance, max_chunk);
        let mut rounds = 0;
        let result = 'transfer: loop {
            rounds += 1;
            prop_assert!(rounds < 100_000, "bulk read does not terminate");
            let replies = match request {
                Request::PrepareBuffer(_) => {
                    vec![prepare_buffer_reply(&dataset, INLINE_THRESHOLD, 1, 1)]
                }
                Request::ReadBuffer { offset, len } => {
                    read_buffer_replies(&dataset, offset, len, fragment, 1, 1)
                }
                other => panic!("unexpected request {other:?}"),
            };
            let mut next = None;
            for reply in &replies {
                match read.on_packet(reply).unwrap() {
                    BulkStep::AwaitMore => {}
                    BulkStep::Send(r) => next = Some(r),
                    BulkStep::Complete(bytes) => break 'transfer bytes,
                }
            }
            request = next.expect("every reply batch ends in a step");
        };
        prop_assert_eq!(result, dataset);
    }
}
