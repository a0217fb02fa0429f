//! An MQTT command payload as a broker may deliver it: the request body split into `args` and
//! `auth`, then every accessor the handlers and the signature check use, each with the error
//! text an operator would see. Nothing may panic, whatever the JSON holds.
#![no_main]

use edge_agent::mqtt::command::args::Args;
use edge_agent::mqtt::command::router::parse_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((args, auth)) = parse_body(data) else {
        return;
    };
    if let Ok(mut args) = Args::new(args, "args", "") {
        let _ = args.to_value();
        for name in ["device", "user", "id", "lines", "limit", "level", "dry_run"] {
            let _ = args.has(name);
            let _ = args.opt_str(name).map_err(|e| e.to_string());
            let _ = args.opt_id(name).map_err(|e| e.to_string());
            let _ = args.opt_int(name, 0, 10_000).map_err(|e| e.to_string());
        }
        let _ = args.finish().map_err(|e| e.to_string());
    }
    if let Ok(mut auth) = Args::new(auth, "auth", "auth.") {
        let _ = auth.req_str("key").map_err(|e| e.to_string());
        let _ = auth.req_int("issued_at", 0, i64::MAX).map_err(|e| e.to_string());
        let _ = auth.req_int("expires_at", 0, i64::MAX).map_err(|e| e.to_string());
        let _ = auth.req_str("nonce").map_err(|e| e.to_string());
        let _ = auth.req_str("signature").map_err(|e| e.to_string());
        let _ = auth.finish().map_err(|e| e.to_string());
    }
});
