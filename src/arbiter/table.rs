//! The arbiter's lock table: the pure decisions, on a monotonic clock given as milliseconds, with
//! no I/O so they can be explored exhaustively in tests.
//!
//! Rules (see `docs/locks.md`):
//! - a grant takes a fresh token, strictly greater than every token before it; the caller makes
//!   it durable before it answers ([`Decision::persist`]);
//! - a lease runs from the arbiter's reception of the request; the holder counts it from its
//!   send, so the holder's deadline always comes first;
//! - after a lease expires the lock is not granted again for `lock_delay`;
//! - renew and release must name holder and token; anything else is stale and changes nothing;
//! - after a restart every persisted holding counts as held for its full lease, then the
//!   lock-delay ([`Table::restore`]).

use super::wire::{LockReply, LockRequest, LockView, Op, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Shortest and longest lease granted, whatever a client asks.
pub const LEASE_BOUNDS_MS: (u64, u64) = (1_000, 600_000);

/// What is persisted per device: enough to keep tokens increasing and honour leases after a
/// restart.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Persisted {
    /// The last token granted for the device.
    pub token: u64,
    /// Who held it at the last grant, with the lease; `None` after a release.
    pub holder: Option<String>,
    /// The lease of that grant.
    pub lease_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Holding {
    holder: String,
    token: u64,
    lease_ms: u64,
    expires_at: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Record {
    /// The last token granted.
    token: u64,
    holding: Option<Holding>,
    /// Not granted again before this (the lock-delay after an expiry).
    free_at: u64,
    /// The first contender refused while it was held, and when it last asked: when the lock
    /// comes free it is kept for that one for [`WAITER_HOLD_MS`], so a holder that polls
    /// back to back cannot starve the others.
    waiter: Option<(String, u64)>,
}

/// How long a freed lock is kept for the contender that was refused while it was held.
pub const WAITER_HOLD_MS: u64 = 2_000;

/// Something that happened to a lock, for the arbiter's audit lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happened {
    /// Granted to `holder` with `token`.
    Acquired {
        /// The device.
        device: String,
        /// The new holder.
        holder: String,
        /// The token.
        token: u64,
    },
    /// Renewed.
    Renewed {
        /// The device.
        device: String,
        /// The holder.
        holder: String,
        /// The token.
        token: u64,
    },
    /// Released by its holder.
    Released {
        /// The device.
        device: String,
        /// The holder.
        holder: String,
        /// The token.
        token: u64,
    },
    /// The lease ran out without renewal: the holder lost it.
    Lost {
        /// The device.
        device: String,
        /// The holder.
        holder: String,
        /// The token.
        token: u64,
    },
}

/// The result of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The reply to send, after `persist` is durable.
    pub reply: LockReply,
    /// What to write (and flush) before replying.
    pub persist: Option<(String, Persisted)>,
    /// What happened (expiries found on the way, then the request's own effect).
    pub happened: Vec<Happened>,
}

/// Every lock of the site.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Table {
    records: BTreeMap<String, Record>,
    /// The last token granted for any device (tokens are site-wide, so each device's strictly
    /// increase too).
    last_token: u64,
    lock_delay_ms: u64,
}

impl Table {
    /// An empty table with `lock_delay_ms` after every expiry.
    pub fn new(lock_delay_ms: u64) -> Table {
        Table {
            lock_delay_ms,
            ..Table::default()
        }
    }

    /// The table after a restart at `now`: tokens continue after `last_token` (and after every
    /// persisted token), and every persisted holding is honoured for its full lease from now,
    /// then the lock-delay: a restart never shortens anyone's lease.
    pub fn restore(
        lock_delay_ms: u64,
        last_token: u64,
        persisted: impl IntoIterator<Item = (String, Persisted)>,
        now: u64,
    ) -> Table {
        let mut table = Table::new(lock_delay_ms);
        table.last_token = last_token;
        for (device, record) in persisted {
            table.last_token = table.last_token.max(record.token);
            let holding = record.holder.map(|holder| Holding {
                holder,
                token: record.token,
                lease_ms: record.lease_ms,
                expires_at: now + record.lease_ms,
            });
            // A released lock is free; a held one waits its lease and the lock-delay.
            let free_at = match &holding {
                Some(held) => held.expires_at + lock_delay_ms,
                None => now,
            };
            table.records.insert(
                device,
                Record {
                    token: record.token,
                    holding,
                    free_at,
                    waiter: None,
                },
            );
        }
        table
    }

    /// The last token granted.
    pub fn last_token(&self) -> u64 {
        self.last_token
    }

    /// Ends the leases that ran out by `now`, starting their lock-delay.
    pub fn expire(&mut self, now: u64) -> Vec<Happened> {
        let delay = self.lock_delay_ms;
        let mut lost = Vec::new();
        for (device, record) in &mut self.records {
            if let Some(holding) = record.holding.take_if(|h| h.expires_at <= now) {
                record.free_at = record.free_at.max(holding.expires_at + delay);
                lost.push(Happened::Lost {
                    device: device.clone(),
                    holder: holding.holder,
                    token: holding.token,
                });
            }
        }
        lost
    }

    /// Answers `request` received at `now`.
    pub fn decide(&mut self, request: &LockRequest, now: u64) -> Decision {
        let expired = self.expire(now);
        let mut decision = match (request.op, request.terms.device.as_deref()) {
            (Op::List, _) => self.list(now),
            (_, None) => refused(None, "a device is required"),
            (_, Some("")) => refused(None, "a device is required"),
            (Op::Acquire, Some(device)) => self.acquire(device, request, now),
            (Op::Renew, Some(device)) => self.renew(device, request, now),
            (Op::Release, Some(device)) => self.release(device, request, now),
        };
        decision.happened.splice(0..0, expired);
        decision
    }

    fn acquire(&mut self, device: &str, request: &LockRequest, now: u64) -> Decision {
        let lease_ms = lease(request);
        let record = self.records.entry(device.to_string()).or_default();
        // The holder asking again while the table still counts it as holding: its release is
        // late or lost, or the reply to its last acquire was. It gets a fresh token at once
        // (no other contender can be waiting for a lock it holds), so a late release or
        // renewal naming the old token is stale and cannot free or extend the new grant.
        // Answering with the old token would let exactly that late release free a lock its
        // sender holds again.
        let held_by_asker = record
            .holding
            .as_ref()
            .is_some_and(|holding| holding.holder == request.holder);
        if !held_by_asker {
            if let Some(holding) = &mut record.holding {
                let mut reply = LockReply::new(Outcome::Busy, Some(device));
                reply.holder = Some(holding.holder.clone());
                reply.terms.token = Some(holding.token);
                reply.retry_after_ms = Some(holding.expires_at - now + self.lock_delay_ms);
                match &mut record.waiter {
                    Some((waiter, at)) if *waiter == request.holder => *at = now,
                    Some((_, at)) if now - *at < WAITER_HOLD_MS => {}
                    _ => record.waiter = Some((request.holder.clone(), now)),
                }
                return decided(reply, None, None);
            }
            if let Some((waiter, _)) = record
                .waiter
                .as_ref()
                .filter(|(waiter, at)| *waiter != request.holder && now - *at < WAITER_HOLD_MS)
            {
                let mut reply = LockReply::new(Outcome::Busy, Some(device));
                reply.holder = Some(waiter.clone());
                reply.terms.token = Some(record.token);
                reply.retry_after_ms = Some(WAITER_HOLD_MS / 4);
                reply.detail = Some(format!("kept briefly for {waiter}, which was waiting"));
                return decided(reply, None, None);
            }
            if now < record.free_at {
                let mut reply = LockReply::new(Outcome::Busy, Some(device));
                reply.terms.token = Some(record.token);
                reply.retry_after_ms = Some(record.free_at - now);
                reply.detail =
                    Some("in its lock-delay after the last holder's lease ran out".into());
                return decided(reply, None, None);
            }
        }
        self.last_token += 1;
        let token = self.last_token;
        record.token = token;
        record.waiter = None;
        record.holding = Some(Holding {
            holder: request.holder.clone(),
            token,
            lease_ms,
            expires_at: now + lease_ms,
        });
        let mut reply = LockReply::new(Outcome::Granted, Some(device));
        reply.terms.token = Some(token);
        reply.terms.lease_ms = Some(lease_ms);
        let persisted = Persisted {
            token,
            holder: Some(request.holder.clone()),
            lease_ms,
        };
        decided(
            reply,
            Some((device.to_string(), persisted)),
            Some(Happened::Acquired {
                device: device.to_string(),
                holder: request.holder.clone(),
                token,
            }),
        )
    }

    fn renew(&mut self, device: &str, request: &LockRequest, now: u64) -> Decision {
        let lease_ms = lease(request);
        let Some(holding) = self.held_by(device, request) else {
            return stale(
                device,
                "not held by you with that token (expired or released)",
            );
        };
        holding.expires_at = now + lease_ms;
        holding.lease_ms = lease_ms;
        let token = holding.token;
        let mut reply = LockReply::new(Outcome::Renewed, Some(device));
        reply.terms.token = Some(token);
        reply.terms.lease_ms = Some(lease_ms);
        decided(
            reply,
            None,
            Some(Happened::Renewed {
                device: device.to_string(),
                holder: request.holder.clone(),
                token,
            }),
        )
    }

    fn release(&mut self, device: &str, request: &LockRequest, now: u64) -> Decision {
        if self.held_by(device, request).is_none() {
            return stale(device, "not held by you with that token; nothing released");
        }
        let record = self.records.get_mut(device).expect("held_by found it");
        let holding = record.holding.take().expect("held_by found it");
        // The holder stopped before it asked: free at once, no lock-delay needed.
        record.free_at = now;
        let persisted = Persisted {
            token: holding.token,
            holder: None,
            lease_ms: holding.lease_ms,
        };
        let mut reply = LockReply::new(Outcome::Released, Some(device));
        reply.terms.token = Some(holding.token);
        decided(
            reply,
            Some((device.to_string(), persisted)),
            Some(Happened::Released {
                device: device.to_string(),
                holder: holding.holder,
                token: holding.token,
            }),
        )
    }

    fn held_by(&mut self, device: &str, request: &LockRequest) -> Option<&mut Holding> {
        self.records
            .get_mut(device)?
            .holding
            .as_mut()
            .filter(|h| h.holder == request.holder && Some(h.token) == request.terms.token)
    }

    /// Every lock as it stands at `now`.
    pub fn views(&self, now: u64) -> Vec<LockView> {
        self.records
            .iter()
            .map(|(device, record)| LockView {
                device: device.clone(),
                holder: record.holding.as_ref().map(|h| h.holder.clone()),
                token: record.token,
                remaining_ms: record
                    .holding
                    .as_ref()
                    .map(|h| h.expires_at.saturating_sub(now)),
                free_in_ms: (record.free_at > now).then(|| record.free_at - now),
            })
            .collect()
    }

    fn list(&self, now: u64) -> Decision {
        let mut reply = LockReply::new(Outcome::Listed, None);
        reply.locks = self.views(now);
        decided(reply, None, None)
    }
}

fn lease(request: &LockRequest) -> u64 {
    let (low, high) = LEASE_BOUNDS_MS;
    request.terms.lease_ms.unwrap_or(low).clamp(low, high)
}

fn decided(
    reply: LockReply,
    persist: Option<(String, Persisted)>,
    happened: Option<Happened>,
) -> Decision {
    Decision {
        reply,
        persist,
        happened: happened.into_iter().collect(),
    }
}

fn refused(device: Option<&str>, why: &str) -> Decision {
    let mut reply = LockReply::new(Outcome::Refused, device);
    reply.detail = Some(why.to_string());
    decided(reply, None, None)
}

fn stale(device: &str, why: &str) -> Decision {
    let mut reply = LockReply::new(Outcome::Stale, Some(device));
    reply.detail = Some(why.to_string());
    decided(reply, None, None)
}

#[cfg(test)]
mod tests;
