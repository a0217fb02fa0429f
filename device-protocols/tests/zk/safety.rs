//! Invariant 1 for ZK: the agent's request type cannot express a destructive command.

use device_protocols::zk::{
    BulkDataset, Code, CommKey, DestructiveCommand, DeviceText, FingerTemplate, Request,
    TemplateUpload, TimeZones, UserId, UserLayout, UserRecord, UserWrite,
};

/// One value of every variant. The match below stops compiling when a variant is added, so the
/// list cannot silently fall behind the enum.
fn every_request() -> Vec<Request> {
    let user = UserRecord {
        uid: 1,
        privilege: 0,
        password: DeviceText::utf8(""),
        name: DeviceText::utf8("A"),
        card: 0,
        group: 1,
        user_id: UserId::Text(DeviceText::utf8("1")),
        time_zones: TimeZones::Extended {
            own: 0,
            zones: [0; 3],
        },
    };
    let upload = TemplateUpload::new(&FingerTemplate {
        uid: 1,
        finger: 0,
        valid: 1,
        template: vec![1; 10],
    })
    .unwrap();
    let all = vec![
        Request::PrepareUpload { len: upload.len() },
        Request::UploadChunk(upload.chunks().next().unwrap()),
        Request::WriteTemplate(upload.head()),
        Request::Connect,
        Request::Auth(CommKey(1)),
        Request::Exit,
        Request::EnableDevice,
        Request::DisableDevice {
            auto_enable_after_secs: 60,
        },
        Request::GetFreeSizes,
        Request::GetTime,
        Request::GetVersion,
        Request::ReadOption("~SerialNumber".into()),
        Request::PrepareBuffer(BulkDataset::Users),
        Request::PrepareBuffer(BulkDataset::Attendance),
        Request::ReadBuffer { offset: 0, len: 1 },
        Request::FreeData,
        Request::SetUser(UserWrite::new(&user, UserLayout::Extended72).unwrap()),
        Request::RefreshData,
        Request::RegisterEvents { mask: 1 },
        Request::RegisterEvents { mask: 0 },
    ];
    for request in &all {
        match request {
            Request::Connect
            | Request::Auth(_)
            | Request::Exit
            | Request::EnableDevice
            | Request::DisableDevice { .. }
            | Request::GetFreeSizes
            | Request::GetTime
            | Request::GetVersion
            | Request::ReadOption(_)
            | Request::PrepareBuffer(_)
            | Request::ReadBuffer { .. }
            | Request::FreeData
            | Request::SetUser(_)
            | Request::RefreshData
            | Request::PrepareUpload { .. }
            | Request::UploadChunk(_)
            | Request::WriteTemplate(_)
            | Request::RegisterEvents { .. } => {}
        }
    }
    all
}

#[test]
fn no_request_is_destructive() {
    for request in every_request() {
        assert_eq!(
            DestructiveCommand::recognise(request.code()),
            None,
            "{request:?} encodes a destructive command"
        );
    }
}

#[test]
fn the_recogniser_knows_the_destructive_codes() {
    for code in [
        Code::DELETE_USER,
        Code::CLEAR_DATA,
        Code::CLEAR_ATTLOG,
        Code::DELETE_USERTEMP,
        Code::CLEAR_OPLOG,
    ] {
        assert!(DestructiveCommand::recognise(code).is_some(), "{code}");
    }
}

/// The ZK codec must stay sans-IO (no sockets, files, clocks or runtime) so it can be fuzzed,
/// replayed and shared with the emulator. A grep is crude, but it fails loudly on the usual slip.
#[test]
fn the_codec_does_no_io_and_reads_no_clock() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/zk");
    let forbidden = [
        "tokio",
        "std::net",
        "std::fs",
        "std::io::Read",
        "std::io::Write",
        "SystemTime",
        "Instant",
        "thread::sleep",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(
                !source.contains(word),
                "{} mentions {word}: protocol code must stay sans-IO",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "expected the zk modules under {}",
        dir.display()
    );
}
