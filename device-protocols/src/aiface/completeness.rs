//! Checking a user list against the device's own counters (`getdevcap` / `reg.devinfo`).
//!
//! A paged read can end "cleanly" and still be short (a firmware quirk, a page lost in a way the
//! guards cannot see). The device's `useduser` is an independent count, so a read is only
//! complete when the distinct users listed match it.

use std::collections::BTreeSet;

use super::credential::CredentialKind;
use super::devinfo::Capacity;
use super::records::UserListEntry;

/// Per-type tallies of a user list, for the completeness check and for `probe` summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSummary {
    /// Distinct `enrollid`s.
    pub users: u64,
    /// Fingerprint entries (slots 0–9).
    pub fingerprints: u64,
    /// Password entries (slot 10).
    pub passwords: u64,
    /// Card entries (slot 11).
    pub cards: u64,
    /// Face photos (slot 50).
    pub photos: u64,
    /// Static-face templates (slots 20–27).
    pub face_templates: u64,
    /// Palm templates.
    pub palms: u64,
    /// Entries in undocumented slots.
    pub other: u64,
}

impl ListSummary {
    /// Tallies a user list.
    pub fn of(entries: &[UserListEntry]) -> Self {
        let mut summary = ListSummary::default();
        let mut users = BTreeSet::new();
        for entry in entries {
            users.insert(entry.enrollid);
            let tally = match entry.backupnum.kind() {
                CredentialKind::Fingerprint(_) => &mut summary.fingerprints,
                CredentialKind::Password => &mut summary.passwords,
                CredentialKind::Card => &mut summary.cards,
                CredentialKind::Photo => &mut summary.photos,
                CredentialKind::StaticFace(_) => &mut summary.face_templates,
                CredentialKind::PalmVein(_) => &mut summary.palms,
                CredentialKind::Other(_) => &mut summary.other,
            };
            *tally += 1;
        }
        summary.users = users.len() as u64;
        summary
    }
}

/// Why a user list does not match the device's counters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompletenessError {
    /// The device did not report `useduser`, so completeness cannot be shown.
    #[error("the device did not report \"useduser\"; cannot confirm the user list is complete")]
    NoUserCount,
    /// A credential counter changed between the `getdevcap` before and after the read: users
    /// were enrolled or deleted while it ran, so the list may mix old and new pages.
    #[error("device counter {counter} changed from {before:?} to {after:?} during the read; users changed mid-read, read again")]
    CountersChanged {
        /// Which counter.
        counter: &'static str,
        /// Value before the read.
        before: Option<u64>,
        /// Value after the read.
        after: Option<u64>,
    },
    /// The list has a different number of users than the device reports.
    #[error("the user list has {listed} users but the device reports useduser={reported}; the read is incomplete (or users changed during it), read again")]
    UserCountMismatch {
        /// Distinct users in the list.
        listed: u64,
        /// `useduser` from the device.
        reported: u64,
    },
}

/// Reads one credential counter out of a [`Capacity`].
type CounterOf = fn(&Capacity) -> Option<u64>;

/// Checks a finished `getuserlist` result against `getdevcap` taken just before and just after
/// it: the credential counters must not have moved during the read, and the distinct users
/// listed must equal `useduser`. Returns the tallies when all holds; only then is the read
/// complete.
pub fn check_complete(
    entries: &[UserListEntry],
    before: &Capacity,
    after: &Capacity,
) -> Result<ListSummary, CompletenessError> {
    let counters: [(&'static str, CounterOf); 6] = [
        ("useduser", |c| c.useduser),
        ("usedface", |c| c.usedface),
        ("usedfp", |c| c.usedfp),
        ("usedcard", |c| c.usedcard),
        ("usedpwd", |c| c.usedpwd),
        ("usedpalm", |c| c.usedpalm),
    ];
    for (counter, read) in counters {
        let (before, after) = (read(before), read(after));
        if before != after {
            return Err(CompletenessError::CountersChanged {
                counter,
                before,
                after,
            });
        }
    }
    check_user_count(entries, after)
}

/// Checks a finished `getuserlist` result against `useduser`; returns the tallies when they
/// agree. Other counters (`usedface`, `usedfp`, …) are not compared with the list because
/// which slots the firmware counts in them is unverified; they are in the summary for display.
pub fn check_user_count(
    entries: &[UserListEntry],
    capacity: &Capacity,
) -> Result<ListSummary, CompletenessError> {
    let summary = ListSummary::of(entries);
    let reported = capacity.useduser.ok_or(CompletenessError::NoUserCount)?;
    if summary.users != reported {
        return Err(CompletenessError::UserCountMismatch {
            listed: summary.users,
            reported,
        });
    }
    Ok(summary)
}
