//! The bytes of a WebSocket connection after the handshake, decoded exactly as the agent's AI06
//! listener does (`edge_agent::device::aiface::websocket_config`: message and frame size
//! bounds), with every text message through the device-message decoder. Frames, fragments,
//! control frames, masks and lengths are all the fuzzer's: nothing may panic or allocate past
//! the configured bound.
#![no_main]

use std::io::Cursor;

use device_protocols::aiface::parse_device_message;
use edge_agent::device::aiface::websocket_config;
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
use tokio_tungstenite::tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    let mut socket = WebSocket::from_raw_socket(
        Cursor::new(data.to_vec()),
        Role::Server,
        Some(websocket_config()),
    );
    // Each read consumes bytes or fails, so this ends; the bound keeps a pathological input
    // (thousands of empty frames) from dominating the run.
    for _ in 0..256 {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let _ = parse_device_message(text.as_str());
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
});
