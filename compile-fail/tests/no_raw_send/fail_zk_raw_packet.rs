// A packet from raw fields: `Packet::new` is private to the protocol crate.
use device_protocols::zk::{Code, Packet};

fn main() {
    let _ = Packet::new(Code::DELETE_USER, 1, 1, 2u16.to_le_bytes().to_vec());
}
