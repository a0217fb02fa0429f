// A packet literal with a named destructive code: it cannot be encoded.
use device_protocols::zk::{Code, Packet};

fn main() {
    let packet = Packet {
        code: Code::CLEAR_DATA,
        session_id: 1,
        reply_id: 1,
        data: Vec::new(),
    };
    let _bytes: Vec<u8> = packet.encode();
}
