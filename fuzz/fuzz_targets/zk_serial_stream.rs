//! The experimental serial reassembler on arbitrary line noise: it must resynchronise without
//! panicking and account for every byte it consumed.
#![no_main]

use device_protocols::zk::{Packet, SerialReassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reassembler = SerialReassembler::new();
    for piece in data.chunks(7) {
        reassembler.push(piece);
        while let Some(frame) = reassembler.next_frame() {
            let _ = Packet::decode(&frame.packet);
        }
    }
    reassembler.reset();
    assert!(reassembler.discarded() <= data.len());
});
