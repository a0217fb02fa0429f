//! The lock client's bookkeeping of its requests, apart from MQTT so its one subtle rule is
//! tested on its own: a reply wakes the request waiting for it; a grant for a request given up
//! on (no answer in time) is handed back at once, since nobody uses that lock; and any other
//! unawaited grant is ignored, because it is a second copy of a grant already answered (the
//! network may duplicate a reply) whose lock may be in use right now: releasing it would let
//! another agent in while this one still works on the device.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::wire::{LockReply, Outcome};

/// What the client must do with a reply.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    /// It answered a waiting request (handed over), or needs nothing.
    Done,
    /// A late grant for a request given up on: release `device` held with `token` now.
    Release {
        /// The device granted.
        device: String,
        /// The token granted.
        token: u64,
    },
}

/// Requests in flight and requests given up on, by correlation data.
#[derive(Debug, Default)]
pub(super) struct Requests {
    pending: HashMap<Bytes, oneshot::Sender<LockReply>>,
    /// Given up on, with when; forgotten after `forget_after` (past the request's message
    /// expiry in the broker no answer can come).
    given_up: HashMap<Bytes, Instant>,
}

impl Requests {
    /// Registers a request about to be sent; its reply arrives on the receiver.
    pub(super) fn wait(&mut self, correlation: Bytes) -> oneshot::Receiver<LockReply> {
        let (tx, rx) = oneshot::channel();
        self.pending.insert(correlation, tx);
        rx
    }

    /// The request ended: answered, or (`answered` false) given up on at `now`; those older
    /// than `forget_after` are forgotten.
    pub(super) fn finished(
        &mut self,
        correlation: Bytes,
        answered: bool,
        now: Instant,
        forget_after: Duration,
    ) {
        self.pending.remove(&correlation);
        if !answered {
            self.given_up
                .retain(|_, at| now.saturating_duration_since(*at) < forget_after);
            self.given_up.insert(correlation, now);
        }
    }

    /// A reply came for `correlation`: hands it to its waiting request, or says what to do
    /// with an unawaited one (see the module docs).
    pub(super) fn deliver(&mut self, correlation: &Bytes, reply: LockReply) -> Delivery {
        if let Some(waiting) = self.pending.remove(correlation) {
            let _ = waiting.send(reply);
            return Delivery::Done;
        }
        if reply.outcome != Outcome::Granted || self.given_up.remove(correlation).is_none() {
            return Delivery::Done;
        }
        match (reply.terms.device, reply.terms.token) {
            (Some(device), Some(token)) => Delivery::Release { device, token },
            _ => Delivery::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORGET: Duration = Duration::from_secs(30);

    fn grant(token: u64) -> LockReply {
        let mut reply = LockReply::new(Outcome::Granted, Some("door"));
        reply.terms.token = Some(token);
        reply
    }

    fn id(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn a_duplicate_of_an_answered_grant_is_ignored() {
        let mut requests = Requests::default();
        let mut answer = requests.wait(id(1));
        assert_eq!(requests.deliver(&id(1), grant(7)), Delivery::Done);
        assert_eq!(
            answer.try_recv().unwrap(),
            grant(7),
            "the waiting request gets it"
        );
        requests.finished(id(1), true, Instant::now(), FORGET);
        // The network delivers the same grant again: the lock is in use, keep it.
        assert_eq!(requests.deliver(&id(1), grant(7)), Delivery::Done);
    }

    #[test]
    fn a_late_grant_for_a_request_given_up_on_is_released_once() {
        let mut requests = Requests::default();
        let _answer = requests.wait(id(2));
        requests.finished(id(2), false, Instant::now(), FORGET);
        assert_eq!(
            requests.deliver(&id(2), grant(8)),
            Delivery::Release {
                device: "door".into(),
                token: 8
            }
        );
        // A second copy of that late grant: already released, nothing more to do.
        assert_eq!(requests.deliver(&id(2), grant(8)), Delivery::Done);
    }

    #[test]
    fn only_grants_are_released_and_old_give_ups_are_forgotten() {
        let mut requests = Requests::default();
        let start = Instant::now();
        let _a = requests.wait(id(3));
        requests.finished(id(3), false, start, FORGET);
        let busy = LockReply::new(Outcome::Busy, Some("door"));
        assert_eq!(requests.deliver(&id(3), busy), Delivery::Done);
        let _b = requests.wait(id(4));
        requests.finished(id(4), false, start, FORGET);
        let _c = requests.wait(id(5));
        requests.finished(id(5), false, start + FORGET * 2, FORGET);
        assert_eq!(
            requests.deliver(&id(4), grant(9)),
            Delivery::Done,
            "forgotten: past the request's expiry no answer can come"
        );
    }
}
