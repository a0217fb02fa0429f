//! Exact bytes of everything the agent sends, and round trips of every message type.

use device_protocols::aiface::{
    is_destructive, parse_device_message, parse_server_message, BackupNum, Command,
    CredentialValue, DeviceMessage, DeviceReport, LogUpload, RegReply, SendLogReply, SendUserReply,
    ServerMessage, ServerReply, SetUserInfo, UserCredential, UserPush,
};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn commands_are_written_exactly() {
    let cases = [
        (
            Command::GetUserList { stn: true },
            r#"{"cmd":"getuserlist","stn":true}"#,
        ),
        (
            Command::GetUserList { stn: false },
            r#"{"cmd":"getuserlist","stn":false}"#,
        ),
        (
            Command::GetUserInfo {
                enrollid: 5,
                backupnum: BackupNum(50),
            },
            r#"{"cmd":"getuserinfo","enrollid":5,"backupnum":50}"#,
        ),
        (
            Command::GetUserName { enrollid: 5 },
            r#"{"cmd":"getusername","enrollid":5}"#,
        ),
        (
            Command::EnableUser {
                enrollid: 5,
                enflag: 1,
            },
            r#"{"cmd":"enableuser","enrollid":5,"enflag":1}"#,
        ),
        (
            Command::GetNewLog { stn: true },
            r#"{"cmd":"getnewlog","stn":true}"#,
        ),
        (
            Command::GetAllLog {
                stn: false,
                from: None,
                to: None,
            },
            r#"{"cmd":"getalllog","stn":false}"#,
        ),
        (
            Command::GetAllLog {
                stn: true,
                from: Some("2026-03-01".into()),
                to: Some("2026-03-03".into()),
            },
            r#"{"cmd":"getalllog","stn":true,"from":"2026-03-01","to":"2026-03-03"}"#,
        ),
        (Command::GetTime, r#"{"cmd":"gettime"}"#),
        (
            Command::SetTime {
                cloudtime: "2026-03-04 08:00:00".into(),
            },
            r#"{"cmd":"settime","cloudtime":"2026-03-04 08:00:00"}"#,
        ),
        (Command::GetDevInfo, r#"{"cmd":"getdevinfo"}"#),
        (Command::GetDevCap, r#"{"cmd":"getdevcap"}"#),
        (
            Command::SetUserInfo(SetUserInfo {
                enrollid: 9,
                name: "hana".into(),
                backupnum: BackupNum::CARD,
                admin: 0,
                record: CredentialValue::Number(3052871234u64.into()),
            }),
            r#"{"cmd":"setuserinfo","enrollid":9,"name":"hana","backupnum":11,"admin":0,"record":3052871234}"#,
        ),
    ];
    for (command, wire) in cases {
        assert_eq!(command.to_json(), wire);
        assert!(!is_destructive(command.name().as_str()));
    }
}

#[test]
fn replies_to_device_reports_are_written_exactly() {
    let accepted = ServerReply::Reg(RegReply::accepted("2026-03-04 08:00:00", true));
    assert_eq!(
        accepted.to_json(),
        r#"{"ret":"reg","result":true,"cloudtime":"2026-03-04 08:00:00","nosenduser":true}"#
    );
    let rejected = ServerReply::Reg(RegReply::rejected("unknown device"));
    assert_eq!(
        rejected.to_json(),
        r#"{"ret":"reg","result":false,"reason":"unknown device"}"#
    );

    let upload: LogUpload = serde_json::from_value(json!({"sn": "S", "count": "1", "logindex": 17,
        "record": [{"enrollid": 1, "time": "2026-03-04 08:00:00"}]}))
    .unwrap();
    let ack = ServerReply::SendLog(SendLogReply::ack(&upload, "2026-03-04 08:00:01"));
    assert_eq!(
        ack.to_json(),
        r#"{"ret":"sendlog","result":true,"count":"1","logindex":17,"cloudtime":"2026-03-04 08:00:01"}"#,
        "count and logindex echoed exactly as they came"
    );
    assert_eq!(
        ServerReply::SendLog(SendLogReply::refuse()).to_json(),
        r#"{"ret":"sendlog","result":false,"reason":1}"#
    );

    let push = UserPush {
        sn: "S".into(),
        credential: UserCredential {
            enrollid: 3,
            name: None,
            backupnum: BackupNum::PHOTO,
            admin: None,
            record: CredentialValue::Text("x".into()),
            extras: Default::default(),
        },
    };
    let reply = ServerReply::SendUser(SendUserReply::ack(&push, "2026-03-04 08:00:02"));
    assert_eq!(
        reply.to_json(),
        r#"{"ret":"senduser","result":true,"enrollid":3,"backupnum":50,"cloudtime":"2026-03-04 08:00:02"}"#
    );
}

fn credential_value() -> impl Strategy<Value = CredentialValue> {
    prop_oneof![
        any::<u64>().prop_map(|n| CredentialValue::Number(n.into())),
        "[A-Za-z0-9+/=()]{0,64}".prop_map(CredentialValue::Text),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let date = proptest::option::of("20[0-9]{2}-[01][0-9]-[0-3][0-9]");
    prop_oneof![
        any::<bool>().prop_map(|stn| Command::GetUserList { stn }),
        (any::<u64>(), any::<u16>()).prop_map(|(enrollid, b)| Command::GetUserInfo {
            enrollid,
            backupnum: BackupNum(b)
        }),
        (
            any::<u64>(),
            "\\PC{0,12}",
            any::<u16>(),
            0u64..3,
            credential_value()
        )
            .prop_map(|(enrollid, name, b, admin, record)| Command::SetUserInfo(
                SetUserInfo {
                    enrollid,
                    name,
                    backupnum: BackupNum(b),
                    admin,
                    record
                }
            )),
        any::<u64>().prop_map(|enrollid| Command::GetUserName { enrollid }),
        (any::<u64>(), 0u64..2)
            .prop_map(|(enrollid, enflag)| Command::EnableUser { enrollid, enflag }),
        any::<bool>().prop_map(|stn| Command::GetNewLog { stn }),
        (any::<bool>(), date.clone(), date).prop_map(|(stn, from, to)| Command::GetAllLog {
            stn,
            from,
            to
        }),
        Just(Command::GetTime),
        "[0-9: -]{0,19}".prop_map(|cloudtime| Command::SetTime { cloudtime }),
        Just(Command::GetDevInfo),
        Just(Command::GetDevCap),
    ]
}

fn user_push() -> impl Strategy<Value = DeviceMessage> {
    (
        "[A-Z0-9]{1,12}",
        any::<u64>(),
        proptest::option::of("\\PC{0,12}"),
        any::<u16>(),
        credential_value(),
    )
        .prop_map(|(sn, enrollid, name, b, record)| {
            DeviceMessage::Report(DeviceReport::SendUser(UserPush {
                sn,
                credential: UserCredential {
                    enrollid,
                    name,
                    backupnum: BackupNum(b),
                    admin: Some(0),
                    record,
                    extras: Default::default(),
                },
            }))
        })
}

fn log_upload() -> impl Strategy<Value = DeviceMessage> {
    let record = (any::<u64>(), "[0-9: -]{19}", 0i64..20, 0i64..2, proptest::option::of("\\PC{0,8}")).prop_map(
        |(enrollid, time, mode, inout, name)| {
            json!({"enrollid": enrollid, "time": time, "mode": mode, "inout": inout, "event": 0, "name": name})
        },
    );
    ("[A-Z0-9]{1,12}", proptest::collection::vec(record, 0..5), any::<u32>()).prop_map(|(sn, records, index)| {
        let frame = json!({"cmd": "sendlog", "sn": sn, "count": records.len(), "logindex": index, "record": records});
        parse_device_message(&frame.to_string()).unwrap()
    })
}

/// Frame names the decoders treat specially, plus random ones.
fn frame_name() -> impl Strategy<Value = String> {
    const KNOWN: &[&str] = &[
        "reg",
        "sendlog",
        "senduser",
        "getuserlist",
        "getuserinfo",
        "getnewlog",
        "getdevcap",
        "gettime",
        "deleteuser",
    ];
    prop_oneof![
        proptest::sample::select(KNOWN).prop_map(str::to_owned),
        "[a-z]{1,8}"
    ]
}

/// Field names the decoders read, plus random ones (some with stray spaces).
fn field_name() -> impl Strategy<Value = String> {
    const KNOWN: &[&str] = &[
        "sn",
        "record",
        "count",
        "from",
        "to",
        "result",
        "enrollid",
        "backupnum",
        "devinfo",
    ];
    prop_oneof![
        proptest::sample::select(KNOWN).prop_map(str::to_owned),
        "[a-z ]{1,6}"
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[0-9a-z -]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn every_command_round_trips_and_none_is_destructive(command in command()) {
        let wire = command.to_json();
        let ServerMessage::Command(received) = parse_server_message(&wire).unwrap() else {
            panic!("not a command")
        };
        prop_assert!(!received.is_destructive());
        prop_assert_eq!(received.command, Ok(command));
    }

    #[test]
    fn device_messages_round_trip(message in prop_oneof![user_push(), log_upload()]) {
        prop_assert_eq!(parse_device_message(&message.to_json()).unwrap(), message);
    }

    #[test]
    fn server_replies_round_trip(time in "[0-9: -]{19}", nosenduser: bool, reason in "\\PC{0,20}") {
        for reply in [
            ServerReply::Reg(RegReply::accepted(time.clone(), nosenduser)),
            ServerReply::Reg(RegReply::rejected(reason.clone())),
            ServerReply::SendLog(SendLogReply::refuse()),
        ] {
            let ServerMessage::Reply(back) = parse_server_message(&reply.to_json()).unwrap() else {
                panic!("not a reply")
            };
            prop_assert_eq!(back, reply);
        }
    }

    #[test]
    fn quoted_numbers_and_padded_keys_decode_like_clean_ones(
        enrollid in any::<u64>(), mode in 0i64..30, inout in 0i64..2, pad in " {0,2}",
    ) {
        let time = "2026-03-04 08:00:00";
        let clean = json!({"cmd": "sendlog", "sn": "S", "count": 1, "logindex": 4,
            "record": [{"enrollid": enrollid, "time": time, "mode": mode, "inout": inout}]});
        let loose = format!(
            r#"{{"{pad}cmd{pad}":"{pad}sendlog{pad}","sn":"S","count":"1","logindex":"4","record":[{{"{pad}enrollid":"{pad}{enrollid}{pad}","time":"{time}","mode":"{mode}","inout":"{pad}{inout}"}}]}}"#
        );
        let decode = |text: &str| match parse_device_message(text).unwrap() {
            DeviceMessage::Report(DeviceReport::SendLog(upload)) => upload,
            other => panic!("{other:?}"),
        };
        let (clean, loose) = (decode(&clean.to_string()), decode(&loose));
        prop_assert_eq!(clean.records[0].key("S"), loose.records[0].key("S"));
        prop_assert_eq!(loose.records[0].enrollid, enrollid);
    }

    #[test]
    fn the_decoder_never_panics_on_wild_frames(
        tag in prop_oneof![Just("cmd"), Just("ret")],
        name in frame_name(),
        fields in proptest::collection::btree_map(field_name(), json_value(), 0..8),
    ) {
        let mut frame: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        frame.insert(tag.to_owned(), json!(name));
        let text = serde_json::Value::Object(frame).to_string();
        let _ = parse_device_message(&text);
        let _ = parse_server_message(&text);
    }

    #[test]
    fn the_decoder_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = parse_device_message(&text);
        let _ = parse_server_message(&text);
    }
}
