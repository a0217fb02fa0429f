//! The bulk-read state machine fed arbitrary reply packets: it must either ask for the next
//! slice, wait, complete with exactly the announced size, or fail; never panic or over-collect.
#![no_main]

use device_protocols::zk::{BulkDataset, BulkRead, BulkStep, Code, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut read, _) = BulkRead::start(BulkDataset::Users, 4096);
    // Each packet: code selector, length byte, then that many data bytes.
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let code = match selector % 5 {
            0 => Code::ACK_OK,
            1 => Code::DATA,
            2 => Code::PREPARE_DATA,
            3 => Code::ACK_ERROR,
            _ => Code(u16::from(*selector)),
        };
        let packet = Packet::new(code, 0, 1, tail[..len].to_vec());
        rest = &tail[len..];
        match read.on_packet(&packet) {
            Ok(BulkStep::Complete(dataset)) => {
                let (_, total) = read.progress();
                assert!(total == 0 || dataset.len() == total as usize);
                return;
            }
            Ok(BulkStep::Send(_) | BulkStep::AwaitMore) => {}
            Err(_) => return,
        }
    }
});
