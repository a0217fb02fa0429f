//! The AiFace (AI06) WebSocket+JSON protocol: message types and the read state machines.
//!
//! The terminal is the WebSocket client; it sends `cmd` frames of its own (`reg`, `sendlog`,
//! `senduser`, …) and answers the server's `cmd` frames with `ret` frames. Nothing here does
//! I/O: a driver feeds text frames in and sends the text frames it gets out.
//!
//! For an agent-side driver:
//! * decode every incoming frame with [`parse_device_message`];
//! * answer reports with [`ServerReply`] ([`RegReply::accepted`], [`SendLogReply::ack`] only
//!   after the punches are durable — key them with [`LogRecord::key`]);
//! * send [`Command`]s (which cannot express a destructive command), one in flight at a time;
//! * run [`PagedRead`] for user/log lists, [`CredentialFetch`] for values, and
//!   [`check_complete`] against `getdevcap` taken before and after the list, before calling a
//!   user read complete.
//!
//! A paged read, with `exchange` standing for the driver's "send this command, wait for its
//! reply" (one command in flight, timeouts and retries are the driver's job):
//!
//! ```
//! use device_protocols::aiface::{
//!     page_cap, Command, DeviceReply, PagedRead, PagingError, Step, UserListEntry,
//! };
//!
//! fn read_users(
//!     mut exchange: impl FnMut(&Command) -> DeviceReply,
//! ) -> Result<Vec<UserListEntry>, PagingError> {
//!     let mut read = PagedRead::users(page_cap(5000, 3, 40));
//!     let mut command = read.first_request();
//!     loop {
//!         match read.on_reply(exchange(&command))? {
//!             Step::Request(next) => command = next,
//!             Step::Complete(entries) => return Ok(entries),
//!         }
//!     }
//! }
//! ```
//!
//! How the contradictions in the vendor material are settled here:
//! * `count` per page or total: [`PagedRead`] completes only on evidence valid under both.
//!   One deliberate deviation from the research notes: `count:0` on a page that *holds*
//!   records is malformed, not an end (ending there would drop those records).
//! * `mode`/`inout`/`event`/`verifymode` tables disagree: kept as raw JSON, never mapped.
//! * `backupnum` 10/11 labels swapped, palm at 30–37 or 40–41: the raw [`BackupNum`] is kept;
//!   [`BackupNum::kind`] follows the main table and is only for display and tallies.
//! * `gettime`'s reply has no `result`: a missing `result` reads as success.
//! * `reason` is a number in replies but text in a refused `reg`: kept as raw JSON.
//! * the vendor's `enableuser` example misspells `enrollid`: we send `enrollid`.
//! * the `getdevlock` failure example is labelled `setdevlock`: decoded as what it says, so a
//!   driver sees an unmatched reply rather than a wrong success.
//! * `getalllog` date format is unverified: [`PagedRead::all_logs`] sends no window.
//! * commands are sent without `sn`, like the vendor's examples.
//!
//! For a device emulator: [`parse_server_message`] classifies what arrives (with
//! [`CommandName::is_destructive`]), and [`DeviceMessage::to_json`] writes the answers.

mod command;
mod command_name;
mod completeness;
mod credential;
mod device_message;
mod devinfo;
mod error;
mod fetch;
pub mod lenient;
mod outgoing;
mod paging;
mod records;
mod reply;
mod report;
mod server_message;
mod server_reply;

pub use command::{Command, SetUserInfo, UserName};
pub use command_name::{is_destructive, CommandName};
pub use completeness::{check_complete, check_user_count, CompletenessError, ListSummary};
pub use credential::{BackupNum, CredentialKind, CredentialRef, CredentialValue, UserCredential};
pub use device_message::{parse_device_message, DeviceMessage};
pub use devinfo::{Capacity, DevCap, DevInfo};
pub use error::ParseError;
pub use fetch::{CredentialFetch, FetchError};
pub use outgoing::OutgoingFrame;
pub use paging::{page_cap, PagedRead, PagedRecord, PagingError, Step};
pub use records::{LogRecord, Page, PunchKey, UserListEntry};
pub use reply::{DeviceReply, ReplyBody, ReplyOutcome};
pub use report::{
    DeviceReport, LogUpload, MalformedRecord, PinEntry, QrScan, Registration, UserPush,
};
pub use server_message::{parse_server_message, ReceivedCommand, ServerMessage};
pub use server_reply::{RegReply, SendLogReply, SendUserReply, ServerReply};
