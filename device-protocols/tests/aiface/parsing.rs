//! Every message shape in the AiFace research notes, decoded from fixtures written from the
//! documented examples, including the places where the sources contradict each other.

use device_protocols::aiface::{
    parse_device_message, parse_server_message, BackupNum, Command, CommandName, CredentialValue,
    DeviceMessage, DeviceReply, DeviceReport, ParseError, ReplyBody, ReplyOutcome, ServerMessage,
};
use serde_json::json;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/aiface/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn report(name: &str) -> DeviceReport {
    match parse_device_message(&fixture(name)) {
        Ok(DeviceMessage::Report(report)) => report,
        other => panic!("{name}: expected a report, got {other:?}"),
    }
}

fn reply(name: &str) -> DeviceReply {
    match parse_device_message(&fixture(name)) {
        Ok(DeviceMessage::Reply(reply)) => reply,
        other => panic!("{name}: expected a reply, got {other:?}"),
    }
}

fn success(name: &str) -> ReplyBody {
    match reply(name).outcome {
        ReplyOutcome::Success(body) => body,
        other => panic!("{name}: expected success, got {other:?}"),
    }
}

#[test]
fn reg_carries_identity_firmware_clock_and_counters() {
    let DeviceReport::Reg(reg) = report("reg.json") else {
        panic!("not reg")
    };
    assert_eq!(reg.sn, "AYTE00000001");
    assert_eq!(reg.cpusn.as_deref(), Some("C0FFEE01"));
    let info = &reg.devinfo;
    assert_eq!(info.modelname.as_deref(), Some("AiFace"));
    assert_eq!(info.firmware.as_deref(), Some("ai806_f06v_v5.17"));
    assert_eq!(info.time.as_deref(), Some("2026-03-04 07:58:12"));
    assert_eq!(info.capacity.useduser, Some(5));
    assert_eq!(info.capacity.usedface, Some(5));
    assert_eq!(info.capacity.usednewlog, Some(3));
    assert_eq!(info.capacity.logsize, Some(500_000));
    assert_eq!(
        info.extras.get("timezone"),
        Some(&json!("+03:00")),
        "unknown devinfo field kept"
    );
    assert_eq!(
        reg.extras.get("lang"),
        Some(&json!("en")),
        "unknown top-level field kept"
    );
}

#[test]
fn reg_with_padded_keys_and_quoted_numbers_is_accepted() {
    let DeviceReport::Reg(reg) = report("reg_loose.json") else {
        panic!("not reg")
    };
    assert_eq!(reg.devinfo.capacity.useduser, Some(17));
    assert_eq!(reg.devinfo.capacity.usedface, Some(16));
    assert_eq!(reg.devinfo.capacity.usersize, Some(5000));
    let DeviceReport::Reg(bare) = report("reg_without_devinfo.json") else {
        panic!("not reg")
    };
    assert_eq!(bare.devinfo.capacity.useduser, None);
}

#[test]
fn sendlog_keeps_raw_codes_names_and_batch_index() {
    let DeviceReport::SendLog(upload) = report("sendlog.json") else {
        panic!("not sendlog")
    };
    assert_eq!(upload.count, Some(json!(2)));
    assert_eq!(upload.logindex, Some(json!(17)));
    let [first, second] = &upload.records[..] else {
        panic!("two records")
    };
    assert_eq!(
        first.name.as_deref(),
        Some("amina"),
        "name is not in the spec but real firmware sends it"
    );
    // `mode` means face (8) on this firmware and card or password (3) depending on which
    // vendor table one trusts: kept raw, never mapped.
    assert_eq!(first.mode, Some(json!(8)));
    assert_eq!(second.mode, Some(json!(3)));
    assert_eq!(second.verifymode, Some(json!(13)));
    assert_eq!(second.inout, Some(json!(1)));
    assert_eq!(
        first.key("AYTE00000001").to_string(),
        "AYTE00000001/5/2026-03-04 08:01:09/8/0"
    );
}

#[test]
fn sendlog_with_quoted_numbers_keys_like_the_numeric_form() {
    let DeviceReport::SendLog(upload) = report("sendlog_loose.json") else {
        panic!("not sendlog")
    };
    assert_eq!(upload.count, Some(json!("1")), "echoed as it came");
    let record = &upload.records[0];
    assert_eq!(record.enrollid, 12);
    assert_eq!(
        record.key(&upload.sn).to_string(),
        "AYTE00000001/12/2026-03-04 09:15:00/8/0"
    );
}

#[test]
fn sendlog_door_events_temperature_image_and_unknown_fields() {
    let DeviceReport::SendLog(upload) = report("sendlog_door_and_extras.json") else {
        panic!()
    };
    let door = &upload.records[0];
    assert_eq!(
        (door.enrollid, door.event.clone()),
        (0, Some(json!(6))),
        "tamper event"
    );
    let punch = &upload.records[1];
    assert_eq!(punch.temp, Some(json!(36.6)));
    assert_eq!(punch.image.as_deref(), Some("aGVsbG8="));
    assert_eq!(
        punch.extras.get("note"),
        Some(&json!({"location": "9.03,38.74"}))
    );
}

#[test]
fn sendlog_from_old_firmware_has_no_logindex() {
    let DeviceReport::SendLog(upload) = report("sendlog_without_logindex.json") else {
        panic!()
    };
    assert_eq!(upload.logindex, None);
}

#[test]
fn senduser_keeps_the_record_type_per_slot() {
    let DeviceReport::SendUser(card) = report("senduser_card.json") else {
        panic!()
    };
    assert_eq!(card.credential.backupnum, BackupNum::CARD);
    assert!(matches!(card.credential.record, CredentialValue::Number(_)));
    assert_eq!(card.credential.record.as_text(), "3052871234");
    let DeviceReport::SendUser(pwd) = report("senduser_password.json") else {
        panic!()
    };
    assert_eq!(
        (pwd.credential.backupnum, pwd.credential.admin),
        (BackupNum::PASSWORD, Some(1))
    );
    let DeviceReport::SendUser(photo) = report("senduser_photo.json") else {
        panic!()
    };
    assert_eq!(photo.credential.backupnum, BackupNum::PHOTO);
    assert!(photo.credential.record.as_text().starts_with("/9j/"));
    let DeviceReport::SendUser(fp) = report("senduser_fingerprint.json") else {
        panic!()
    };
    assert_eq!(fp.credential.backupnum, BackupNum(0));
    assert!(
        fp.credential.record.as_text().contains("(128)"),
        "zero-run notation kept verbatim"
    );
}

#[test]
fn qr_pin_and_unknown_reports() {
    let DeviceReport::SendQrCode(qr) = report("sendqrcode.json") else {
        panic!()
    };
    assert_eq!(qr.record, "visitor-4411");
    let DeviceReport::SendPin(pin) = report("sendpin.json") else {
        panic!()
    };
    assert_eq!((pin.pin.as_str(), pin.sn.as_deref()), ("2468", None));
    let DeviceReport::Other { cmd, fields } = report("unknown_report.json") else {
        panic!()
    };
    assert_eq!(cmd, "sendgps");
    assert_eq!(fields.get("lat"), Some(&json!(9.03)));
}

#[test]
fn user_list_pages_in_both_count_readings() {
    let ReplyBody::UserList(page) = success("reply_getuserlist_page.json") else {
        panic!()
    };
    assert_eq!(
        (page.count, page.from, page.to, page.records.len()),
        (3, 0, 2, 3)
    );
    assert_eq!(
        page.records[1].backupnum,
        BackupNum::CARD,
        "one line per credential"
    );
    let ReplyBody::UserList(total) = success("reply_getuserlist_total_count.json") else {
        panic!()
    };
    assert_eq!(
        (total.count, total.from, total.to, total.records.len()),
        (42, 40, 41, 2)
    );
    assert_eq!(
        total.records[1].backupnum,
        BackupNum::PHOTO,
        "quoted backupnum accepted"
    );
    let ReplyBody::UserList(empty) = success("reply_getuserlist_empty.json") else {
        panic!()
    };
    assert!(empty.records.is_empty() && empty.count == 0);
}

#[test]
fn user_info_replies_keep_the_value_type_as_sent() {
    let ReplyBody::UserInfo(photo) = success("reply_getuserinfo_photo.json") else {
        panic!()
    };
    assert_eq!((photo.enrollid, photo.name.as_deref()), (5, Some("amina")));
    let ReplyBody::UserInfo(card) = success("reply_getuserinfo_card_quoted.json") else {
        panic!()
    };
    assert_eq!(card.backupnum, BackupNum::CARD);
    assert_eq!(
        card.record,
        CredentialValue::Text("3052871234".into()),
        "quoted card stays text"
    );
    // The vendor's getuserlist example labels 10 as "Rfid card"; the main table says password.
    // The raw slot is what is kept.
    let ReplyBody::UserInfo(pwd) = success("reply_getuserinfo_password_labelled_card.json") else {
        panic!()
    };
    assert_eq!(pwd.backupnum, BackupNum(10));
}

#[test]
fn log_pages_where_count_reads_as_a_total() {
    let ReplyBody::Logs(new) = success("reply_getnewlog_total.json") else {
        panic!()
    };
    assert_eq!(new.records.len(), 3);
    let ReplyBody::Logs(all) = success("reply_getalllog_page.json") else {
        panic!()
    };
    assert_eq!((all.count, all.records.len()), (1000, 2));
    assert_eq!(
        reply("reply_getalllog_page.json").ret,
        CommandName::GetAllLog
    );
}

#[test]
fn devcap_devinfo_time_and_acks() {
    let ReplyBody::DevCap(cap) = success("reply_getdevcap.json") else {
        panic!()
    };
    assert_eq!(
        (cap.capacity.useduser, cap.capacity.usedrtlog),
        (Some(5), Some(0))
    );
    assert_eq!(cap.extras.get("usedqr"), Some(&json!(0)));
    let ReplyBody::Fields(settings) = success("reply_getdevinfo.json") else {
        panic!()
    };
    assert_eq!(settings.get("volume"), Some(&json!(6)));
    // The vendor's gettime example has no `result`: read as success.
    assert_eq!(
        success("reply_gettime_without_result.json"),
        ReplyBody::Time("2026-03-04 11:12:13".into())
    );
    let ReplyBody::Fields(ack) = success("reply_setuserinfo.json") else {
        panic!()
    };
    assert_eq!(ack.get("enrollid"), Some(&json!(5)));
}

#[test]
fn failures_keep_their_reason_and_never_read_as_empty() {
    let failed = reply("reply_failure.json");
    assert_eq!(failed.ret, CommandName::GetUserList);
    assert!(
        matches!(failed.outcome, ReplyOutcome::Failure { reason: Some(ref r), .. } if *r == json!(1))
    );
    let numeric_flag = reply("reply_failure_flag_as_number.json");
    assert!(
        matches!(numeric_flag.outcome, ReplyOutcome::Failure { .. }),
        "result:0 is a failure"
    );
    // The vendor's getdevlock failure example is labelled `setdevlock`; decode it as what it
    // says so a driver sees an unmatched reply rather than a wrong success.
    assert_eq!(
        reply("reply_getdevlock_failure_misnamed.json").ret,
        CommandName::SetDevLock
    );
}

#[test]
fn server_frames_are_classified_even_when_not_expressible_by_the_agent() {
    let parse = |name: &str| match parse_server_message(&fixture(name)) {
        Ok(ServerMessage::Command(received)) => received,
        other => panic!("{name}: {other:?}"),
    };
    let delete = parse("server_deleteuser.json");
    assert!(delete.is_destructive());
    assert!(
        delete.command.is_err(),
        "the agent's Command type has no deleteuser"
    );
    // The vendor's disable example misspells `enrollid` as `enrolled`: recognised by name,
    // rejected as a typed command, never guessed at.
    let enable = parse("server_enableuser_misspelt.json");
    assert_eq!(enable.name, CommandName::EnableUser);
    assert!(enable.command.unwrap_err().contains("enrollid"));
    let all = parse("server_getalllog_dates.json");
    assert_eq!(
        all.command,
        Ok(Command::GetAllLog {
            stn: true,
            from: Some("2018-11-1".into()),
            to: Some("2018-11-30".into())
        })
    );
}

#[test]
fn garbage_is_rejected_with_a_reason() {
    assert!(matches!(
        parse_device_message("{\"cmd\":"),
        Err(ParseError::NotJson(_))
    ));
    assert!(matches!(
        parse_device_message("[1,2]"),
        Err(ParseError::NotAnObject(_))
    ));
    let untagged = parse_device_message(r#"{"sn":"X","result":true}"#).unwrap_err();
    assert!(untagged.to_string().contains("result, sn"), "{untagged}");
    let bad =
        parse_device_message(r#"{"cmd":"sendlog","sn":"X","record":"nonsense"}"#).unwrap_err();
    assert!(bad.to_string().contains("sendlog"), "{bad}");
}

#[test]
fn an_unreadable_punch_record_is_set_aside_and_the_rest_of_the_frame_read() {
    let frame = r#"{"cmd":"sendlog","sn":"X","count":2,"record":[
        {"enrollid":"abc","time":"t"},
        {"enrollid":7,"time":"2026-11-30 08:00:00","mode":1,"inout":0}]}"#;
    let Ok(DeviceMessage::Report(DeviceReport::SendLog(upload))) = parse_device_message(frame)
    else {
        panic!("a frame with one bad record is still a sendlog");
    };
    assert_eq!(upload.records.len(), 1);
    assert_eq!(upload.records[0].enrollid, 7);
    assert_eq!(upload.malformed.len(), 1);
    assert_eq!(upload.malformed[0].raw["enrollid"], "abc");
    assert!(
        upload.malformed[0].reason.contains("abc"),
        "{:?}",
        upload.malformed
    );
}
