//! User, attendance and fingerprint-template dataset decoding (envelope, layout detection,
//! every record layout, every code page) on arbitrary datasets and device counts.
#![no_main]

use device_protocols::zk::{
    decode_attendance, decode_templates, decode_users, DeviceSizes, TextCodec,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let count = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % 100_000;
    let codec = match data[4] % 3 {
        0 => TextCodec::default(),
        1 => TextCodec::for_label("gbk").unwrap(),
        _ => TextCodec::for_label("windows-1251").unwrap(),
    };
    let dataset = &data[5..];
    if let Ok(users) = decode_users(dataset, count, None, &codec) {
        assert!(!users.count_consistent || users.users.len() as u32 == count);
    }
    if let Ok(logs) = decode_attendance(dataset, count, None, &codec) {
        assert!(!logs.count_consistent || logs.records.len() as u32 == count);
    }
    if let Ok(templates) = decode_templates(dataset) {
        for template in &templates {
            let entry = template.encode().expect("a decoded template encodes again");
            assert_eq!(entry.len(), 6 + template.template.len());
        }
    }
    let _ = DeviceSizes::decode(dataset);
});
