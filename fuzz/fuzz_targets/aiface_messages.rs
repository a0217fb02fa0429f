//! Every text frame an AI06 (or a peer posing as one) can send, through the agent's decoder
//! (`parse_device_message`) and the emulator's (`parse_server_message`): each must return a
//! message or an error, never panic; a decoded message must serialise back.
#![no_main]

use device_protocols::aiface::{parse_device_message, parse_server_message, DeviceMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(message) = parse_device_message(&text) {
        if let DeviceMessage::Reply(reply) = &message {
            let _ = reply.ret.to_string();
        }
        let _ = format!("{message:?}");
    }
    let _ = parse_server_message(&text);
});
