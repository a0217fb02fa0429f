//! The paged reads: `getuserlist`, `getnewlog`, `getalllog`.
//!
//! The vendor never states when a paged read ends, and its examples use `count` both for
//! "records in this page" and for "total". Reading a list short and calling it complete is the
//! failure that loses users, so this machine only completes on evidence that holds under both
//! readings, and fails with a reason on anything odd:
//!
//! * `result:false` is a failure, never "no data";
//! * an empty `record[]` ends the read (`count:0` with records in the page is malformed, not
//!   an end: ending there would drop the records);
//! * `count` larger than the page proves `count` is a total, and the read ends once `to + 1`
//!   reaches it (with exactly `count` records collected);
//! * otherwise the next page is requested (`stn:false`);
//! * guards: the first page must start at 0 and each next one at the previous `to + 1`; a
//!   repeated page, a restart at 0 (device rebooted mid-read) or a gap fails the read, as do a
//!   page whose `from..=to` or `count` does not fit its records, a total that changes between
//!   pages, and more pages than the cap.
//!
//! Guards on the pages cannot see every change made while a read runs (with per-page counts a
//! deletion just shifts the boundaries), so a caller also brackets the read with `getdevcap`
//! and calls [`super::check_complete`].
//!
//! No other command may be interleaved while a read runs: replies carry no request ID.

use serde_json::Value;

use super::command::Command;
use super::command_name::CommandName;
use super::records::{LogRecord, Page, UserListEntry};
use super::reply::{DeviceReply, ReplyBody, ReplyOutcome};

/// What a paged or per-credential read wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T> {
    /// Send this command and feed its reply back.
    Request(Command),
    /// The read is complete; these are all the records, in device order.
    Complete(Vec<T>),
}

/// Why a paged read failed. Every variant means "incomplete": the caller must not conclude
/// anything about records missing from the result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PagingError {
    /// The device answered `result:false`.
    #[error("device refused {command} page {page} (reason {reason:?}); retry the read later")]
    Refused {
        /// The paged command.
        command: CommandName,
        /// 1-based page number.
        page: u32,
        /// The device's reason, raw.
        reason: Option<Value>,
    },
    /// A reply to some other command arrived while this read was in flight.
    #[error("expected a {expected} reply but got {got}; another command was interleaved or the reply is stale")]
    UnexpectedReply {
        /// The paged command.
        expected: CommandName,
        /// What arrived.
        got: CommandName,
    },
    /// A reply with the right `ret` whose body is not a page of this read's records (only
    /// possible for a reply built by hand rather than decoded).
    #[error("a {command} reply does not carry a page of the expected records")]
    MalformedReply {
        /// The paged command.
        command: CommandName,
    },
    /// The same page (same `from`/`to`) came twice.
    #[error("{command} page {page} repeats records {from}..={to}; the device did not advance")]
    Repeated {
        /// The paged command.
        command: CommandName,
        /// 1-based page number.
        page: u32,
        /// The repeated `from`.
        from: u64,
        /// The repeated `to`.
        to: u64,
    },
    /// A later page started again at 0: the device restarted the listing (e.g. it rebooted).
    #[error("{command} page {page} restarted at 0 instead of {expected}; the device restarted the listing")]
    Restarted {
        /// The paged command.
        command: CommandName,
        /// 1-based page number.
        page: u32,
        /// The `from` that was expected.
        expected: u64,
    },
    /// A page did not continue where the previous one ended.
    #[error("{command} page {page} starts at {from}, expected {expected}; records would be skipped or duplicated")]
    Discontinuous {
        /// The paged command.
        command: CommandName,
        /// 1-based page number.
        page: u32,
        /// The `from` received.
        from: u64,
        /// The `from` that was expected.
        expected: u64,
    },
    /// A page's `from..=to` does not match the number of records it holds, or its `count` is
    /// smaller than the records it holds.
    #[error(
        "{command} page {page} claims records {from}..={to} (count {count}) but holds {records}"
    )]
    InconsistentPage {
        /// The paged command.
        command: CommandName,
        /// 1-based page number.
        page: u32,
        /// The page's `from`.
        from: u64,
        /// The page's `to`.
        to: u64,
        /// The page's `count`.
        count: u64,
        /// How many records it held.
        records: usize,
    },
    /// The device announced a total but the read ended with a different number of records.
    #[error("{command} announced {announced} records in total but {received} arrived")]
    CountMismatch {
        /// The paged command.
        command: CommandName,
        /// The total from `count`.
        announced: u64,
        /// Records collected.
        received: usize,
    },
    /// `count` proved to be a total, then a later page announced a different total: users
    /// were added or deleted during the read, so page boundaries shifted under it.
    #[error("{command} total changed from {before} to {after} during the read (page {page}); data changed mid-read, read again")]
    TotalChanged {
        /// The paged command.
        command: CommandName,
        /// 1-based page number.
        page: u32,
        /// The earlier total.
        before: u64,
        /// The new total.
        after: u64,
    },
    /// More pages than the cap: the device keeps paging (a loop) or the cap is too low.
    #[error("{command} exceeded the cap of {cap} pages; the device may be looping (raise the cap if it really holds that much)")]
    TooManyPages {
        /// The paged command.
        command: CommandName,
        /// The cap.
        cap: u32,
    },
    /// A reply was fed after the read had completed or failed.
    #[error("{command} read is already finished; the reply is stale")]
    Finished {
        /// The paged command.
        command: CommandName,
    },
}

/// A record type that arrives in pages; ties each to the reply body that carries it.
pub trait PagedRecord: Sized {
    /// Takes the page out of a successful reply body, if the body is of this kind.
    fn take_page(body: ReplyBody) -> Option<Page<Self>>;
}

impl PagedRecord for UserListEntry {
    fn take_page(body: ReplyBody) -> Option<Page<Self>> {
        match body {
            ReplyBody::UserList(page) => Some(page),
            _ => None,
        }
    }
}

impl PagedRecord for LogRecord {
    fn take_page(body: ReplyBody) -> Option<Page<Self>> {
        match body {
            ReplyBody::Logs(page) => Some(page),
            _ => None,
        }
    }
}

/// The page cap the research suggests: `ceil(usersize × credentials_per_user / page_size) + 5`.
pub fn page_cap(capacity: u64, records_per_item: u64, page_size: u64) -> u32 {
    let pages = (capacity.saturating_mul(records_per_item)).div_ceil(page_size.max(1));
    u32::try_from(pages.saturating_add(5)).unwrap_or(u32::MAX)
}

/// The most records [`PagedRead`] reserves room for on a device's announcement alone (about
/// 3.7 MB of 56-byte user-list entries); a longer list still arrives whole, growing as it comes.
const MAX_RESERVED_RECORDS: u64 = 65_536;

/// One paged read in progress. Create it, send [`PagedRead::first_request`], then feed every
/// reply to [`PagedRead::on_reply`] until it completes or fails.
///
/// Timeouts are the driver's: the machine only judges replies, so after a timeout the driver
/// may resend the same request. If the device had served the lost page already, the next
/// reply will not continue at `to + 1` and the read fails safely rather than skip records.
#[derive(Debug, Clone)]
pub struct PagedRead<T> {
    request: fn(bool) -> Command,
    name: CommandName,
    max_pages: u32,
    pages: u32,
    previous: Option<(u64, u64)>,
    announced_total: Option<u64>,
    records: Vec<T>,
    finished: bool,
}

impl PagedRead<UserListEntry> {
    /// A full `getuserlist` read, failing after `max_pages` pages (see [`page_cap`]).
    pub fn users(max_pages: u32) -> Self {
        Self::new(|stn| Command::GetUserList { stn }, max_pages)
    }
}

impl PagedRead<LogRecord> {
    /// A `getnewlog` read: the punches the device has not delivered yet.
    pub fn new_logs(max_pages: u32) -> Self {
        Self::new(|stn| Command::GetNewLog { stn }, max_pages)
    }

    /// A `getalllog` read over the device's whole log store. A date window is not offered here
    /// because the accepted date format is unverified; use [`Command::GetAllLog`] directly when
    /// it has been confirmed on hardware.
    pub fn all_logs(max_pages: u32) -> Self {
        Self::new(
            |stn| Command::GetAllLog {
                stn,
                from: None,
                to: None,
            },
            max_pages,
        )
    }
}

impl<T: PagedRecord> PagedRead<T> {
    fn new(request: fn(bool) -> Command, max_pages: u32) -> Self {
        PagedRead {
            name: request(true).name(),
            request,
            max_pages,
            pages: 0,
            previous: None,
            announced_total: None,
            records: Vec::new(),
            finished: false,
        }
    }

    /// The first request (`stn:true`).
    pub fn first_request(&self) -> Command {
        (self.request)(true)
    }

    /// Pages accepted so far (for progress display).
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Records collected so far (for progress display).
    pub fn records_so_far(&self) -> usize {
        self.records.len()
    }

    /// The total announced by the device, once a page has proved `count` is a total.
    pub fn announced_total(&self) -> Option<u64> {
        self.announced_total
    }

    /// Feeds the reply to the last request. After an error or completion the read is over and
    /// any further reply is reported as [`PagingError::Finished`].
    pub fn on_reply(&mut self, reply: DeviceReply) -> Result<Step<T>, PagingError> {
        if self.finished {
            return Err(PagingError::Finished {
                command: self.name.clone(),
            });
        }
        let step = self.accept(reply);
        if !matches!(step, Ok(Step::Request(_))) {
            self.finished = true;
        }
        step
    }

    fn accept(&mut self, reply: DeviceReply) -> Result<Step<T>, PagingError> {
        let command = self.name.clone();
        if reply.ret != command {
            return Err(PagingError::UnexpectedReply {
                expected: command,
                got: reply.ret,
            });
        }
        self.pages += 1;
        let page_no = self.pages;
        if page_no > self.max_pages {
            return Err(PagingError::TooManyPages {
                command,
                cap: self.max_pages,
            });
        }
        let body = match reply.outcome {
            ReplyOutcome::Success(body) => body,
            ReplyOutcome::Failure { reason, .. } => {
                return Err(PagingError::Refused {
                    command,
                    page: page_no,
                    reason,
                })
            }
        };
        let page = T::take_page(body).ok_or(PagingError::MalformedReply {
            command: command.clone(),
        })?;
        let held = page.records.len();
        if held == 0 {
            return self.complete();
        }
        // Records with `count:0`, or fewer counted than held, fit neither reading of `count`.
        // Checked: `from`, `to` and `count` are whatever the device sent (`to = u64::MAX` with
        // `from = 0` must fail the page, not wrap or panic).
        let range_fits = page
            .to
            .checked_sub(page.from)
            .and_then(|span| span.checked_add(1))
            == Some(held as u64);
        if !range_fits || page.count < held as u64 {
            let (from, to, count) = (page.from, page.to, page.count);
            return Err(PagingError::InconsistentPage {
                command,
                page: page_no,
                from,
                to,
                count,
                records: held,
            });
        }
        if self.previous.is_none() && page.from != 0 {
            return Err(PagingError::Discontinuous {
                command,
                page: page_no,
                from: page.from,
                expected: 0,
            });
        }
        if let Some((previous_from, previous_to)) = self.previous {
            // A previous page ending at `u64::MAX` leaves no next record to continue at.
            let expected = previous_to.saturating_add(1);
            if (page.from, page.to) == (previous_from, previous_to) {
                return Err(PagingError::Repeated {
                    command,
                    page: page_no,
                    from: page.from,
                    to: page.to,
                });
            }
            if page.from == 0 {
                return Err(PagingError::Restarted {
                    command,
                    page: page_no,
                    expected,
                });
            }
            if page.from != expected || previous_to == u64::MAX {
                return Err(PagingError::Discontinuous {
                    command,
                    page: page_no,
                    from: page.from,
                    expected,
                });
            }
        }
        self.previous = Some((page.from, page.to));
        self.records.extend(page.records);
        if page.count > held as u64 {
            if let Some(before) = self.announced_total.filter(|&total| total != page.count) {
                let after = page.count;
                return Err(PagingError::TotalChanged {
                    command,
                    page: page_no,
                    before,
                    after,
                });
            }
            if self.announced_total.is_none() {
                self.reserve_for(page.count);
            }
            self.announced_total = Some(page.count);
            if page.to.saturating_add(1) >= page.count {
                return self.complete();
            }
        }
        Ok(Step::Request((self.request)(false)))
    }

    /// Makes room for the whole list once the device has announced its total, so the records
    /// are not copied from buffer to buffer as the list doubles (the saving is those copies,
    /// not the list: 20,000 entries take 1.12 MB either way). The announcement is the device's
    /// word: beyond [`MAX_RESERVED_RECORDS`] the list grows as it arrives, so a device
    /// announcing an absurd total cannot make the agent allocate for it.
    fn reserve_for(&mut self, announced: u64) {
        let wanted = announced.min(MAX_RESERVED_RECORDS) as usize;
        self.records
            .reserve_exact(wanted.saturating_sub(self.records.len()));
    }

    fn complete(&mut self) -> Result<Step<T>, PagingError> {
        if let Some(announced) = self.announced_total {
            if announced != self.records.len() as u64 {
                return Err(PagingError::CountMismatch {
                    command: self.name.clone(),
                    announced,
                    received: self.records.len(),
                });
            }
        }
        Ok(Step::Complete(std::mem::take(&mut self.records)))
    }
}
