//! A whole AI06 user read fed arbitrary frames, one per line: the paged `getuserlist` machine,
//! then the completeness check against a `getdevcap` body, then the per-credential fetch of
//! everything listed. Each step must answer with a request, a result or an error; never panic,
//! and a completed list never holds more records than the frames delivered.
#![no_main]

use device_protocols::aiface::{
    check_user_count, parse_device_message, CredentialFetch, CredentialRef, DeviceMessage,
    PagedRead, ReplyBody, ReplyOutcome, Step,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut replies = text.lines().filter_map(|line| match parse_device_message(line) {
        Ok(DeviceMessage::Reply(reply)) => Some(reply),
        _ => None,
    });
    let mut read = PagedRead::users(16);
    let mut listed = None;
    for reply in replies.by_ref() {
        match read.on_reply(reply) {
            Ok(Step::Request(_)) => {}
            Ok(Step::Complete(entries)) => {
                listed = Some(entries);
                break;
            }
            Err(_) => return,
        }
    }
    let Some(entries) = listed else { return };
    // The next reply, if it is a devcap, is the count the list is checked against.
    if let Some(reply) = replies.next() {
        if let ReplyOutcome::Success(ReplyBody::DevCap(cap)) = reply.outcome {
            let _ = check_user_count(&entries, &cap.capacity);
        }
    }
    let refs: Vec<CredentialRef> = entries
        .iter()
        .map(|entry| CredentialRef {
            enrollid: entry.enrollid,
            backupnum: entry.backupnum,
        })
        .collect();
    let mut fetch = CredentialFetch::new(refs);
    if let Step::Complete(_) = fetch.start() {
        return;
    }
    for reply in replies {
        match fetch.on_reply(reply) {
            Ok(Step::Request(_)) => {}
            Ok(Step::Complete(_)) | Err(_) => return,
        }
    }
});
