//! A 2xx body as the upstream may send it, through the client's reply parser for both replies
//! the agent reads (a batch result and a mapping page): each must parse or be a retryable
//! error with an excerpt of the body, never panic.
#![no_main]

use edge_agent::upstream::client::parse_reply;
use edge_agent::upstream::wire::{BatchReply, MappingPage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_reply::<BatchReply>(data).map_err(|e| e.to_string());
    let _ = parse_reply::<MappingPage>(data).map_err(|e| e.to_string());
});
