//! The TCP reassembler and packet decoder on arbitrary bytes, cut at data-chosen boundaries:
//! they may reject the stream but must never panic, loop or return a packet that did not come
//! from the bytes.
#![no_main]

use device_protocols::zk::{Packet, TcpReassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut reassembler = TcpReassembler::new();
    let mut yielded = 0;
    for piece in stream.chunks(step) {
        reassembler.push(piece);
        loop {
            match reassembler.next_packet() {
                Ok(Some(packet)) => {
                    yielded += packet.len() + 8;
                    if let Ok(incoming) = Packet::decode(&packet) {
                        // Re-encoding a decoded packet must reproduce it (checksum aside).
                        let again = incoming.packet.encode();
                        assert_eq!(again[4..], packet[4..]);
                        assert_eq!(again[..2], packet[..2]);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(yielded + reassembler.pending(), stream.len());
});
