//! Fetching credential values one `getuserinfo` at a time.
//!
//! `getuserlist` only says which `(enrollid, backupnum)` pairs exist; each value (name,
//! template, photo, PIN, card) needs its own round trip. This machine walks a list of pairs,
//! checks every reply is for the pair it asked about (replies carry no request ID, so a stale
//! reply for an earlier pair must not be stored under the wrong key), and fails the whole fetch
//! with the pair named when the device refuses one.

use std::collections::{BTreeSet, VecDeque};

use serde_json::Value;

use super::command::Command;
use super::command_name::CommandName;
use super::credential::{CredentialRef, UserCredential};
use super::paging::Step;
use super::reply::{DeviceReply, ReplyBody, ReplyOutcome};

/// Why a credential fetch failed; the fetch is then incomplete and nothing may be inferred
/// about credentials it did not return.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// The device answered `result:false` for a pair (it may have been deleted meanwhile).
    #[error(
        "device refused getuserinfo for {credential} (reason {reason:?}); re-read the user list"
    )]
    Refused {
        /// The pair asked for.
        credential: CredentialRef,
        /// The device's reason, raw.
        reason: Option<Value>,
    },
    /// A reply to another command arrived.
    #[error("expected a getuserinfo reply for {credential} but got {got}")]
    UnexpectedReply {
        /// The pair asked for.
        credential: CredentialRef,
        /// What arrived.
        got: CommandName,
    },
    /// The reply is for a different pair than the one asked for (a stale reply).
    #[error("asked for {asked} but the reply is for {got}; the reply is stale or misrouted")]
    WrongCredential {
        /// The pair asked for.
        asked: CredentialRef,
        /// The pair in the reply.
        got: CredentialRef,
    },
    /// A `getuserinfo` success whose body is not a credential (only possible for a reply built
    /// by hand rather than decoded).
    #[error("the getuserinfo reply for {credential} carries no credential")]
    MalformedReply {
        /// The pair asked for.
        credential: CredentialRef,
    },
    /// A reply arrived when nothing was asked.
    #[error("a getuserinfo reply arrived but no credential was requested")]
    NothingInFlight,
}

/// A run of `getuserinfo` requests over a set of credential pairs.
#[derive(Debug, Clone)]
pub struct CredentialFetch {
    pending: VecDeque<CredentialRef>,
    in_flight: Option<CredentialRef>,
    fetched: Vec<UserCredential>,
}

impl CredentialFetch {
    /// Fetches each distinct pair once, in the order given. Pass only the pairs the agent does
    /// not already hold, so a steady-state poll fetches nothing it has.
    pub fn new(credentials: impl IntoIterator<Item = CredentialRef>) -> Self {
        let mut seen = BTreeSet::new();
        let pending = credentials
            .into_iter()
            .filter(|c| seen.insert(*c))
            .collect();
        CredentialFetch {
            pending,
            in_flight: None,
            fetched: Vec::new(),
        }
    }

    /// Number of credentials still to fetch, including the one in flight (for progress).
    pub fn remaining(&self) -> usize {
        self.pending.len() + usize::from(self.in_flight.is_some())
    }

    /// The first request, or completion at once when there is nothing to fetch.
    pub fn start(&mut self) -> Step<UserCredential> {
        self.advance()
    }

    /// Feeds the reply to the last request.
    pub fn on_reply(&mut self, reply: DeviceReply) -> Result<Step<UserCredential>, FetchError> {
        let asked = self.in_flight.take().ok_or(FetchError::NothingInFlight)?;
        if reply.ret != CommandName::GetUserInfo {
            return Err(FetchError::UnexpectedReply {
                credential: asked,
                got: reply.ret,
            });
        }
        let credential = match reply.outcome {
            ReplyOutcome::Success(ReplyBody::UserInfo(credential)) => credential,
            ReplyOutcome::Success(_) => {
                return Err(FetchError::MalformedReply { credential: asked })
            }
            ReplyOutcome::Failure { reason, .. } => {
                return Err(FetchError::Refused {
                    credential: asked,
                    reason,
                })
            }
        };
        let got = CredentialRef {
            enrollid: credential.enrollid,
            backupnum: credential.backupnum,
        };
        if got != asked {
            return Err(FetchError::WrongCredential { asked, got });
        }
        self.fetched.push(credential);
        Ok(self.advance())
    }

    fn advance(&mut self) -> Step<UserCredential> {
        match self.pending.pop_front() {
            Some(next) => {
                self.in_flight = Some(next);
                Step::Request(Command::GetUserInfo {
                    enrollid: next.enrollid,
                    backupnum: next.backupnum,
                })
            }
            None => Step::Complete(std::mem::take(&mut self.fetched)),
        }
    }
}
