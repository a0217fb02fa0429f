//! Client-side reply decoding (connect, auth, time, options, strings) on arbitrary packets.
#![no_main]

use device_protocols::zk::{ClientSession, CommKey, Packet, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(incoming) = Packet::decode(data) else {
        return;
    };
    let reply = incoming.packet;
    let mut session = ClientSession::new();
    session.packet(&Request::Connect);
    let _ = session.on_connect_reply(&reply);
    let _ = session.time_reply(&reply);
    let _ = session.option_reply(&reply);
    let _ = session.string_reply(&reply);
    let _ = session.on_auth_reply(&reply);
    let _ = CommKey(u32::from(reply.reply_id)).accepts(reply.session_id, &reply.data);
});
