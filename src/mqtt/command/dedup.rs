//! The reply cache that makes a redelivered request harmless.
//!
//! QoS 1 is at-least-once: the broker redelivers a request whose PUBACK it did not see, and a
//! requester that timed out sends the same request again. Following the Azure IoT Operations
//! RPC rules, replies are cached by (response topic, correlation data) — the response topic
//! names the requester, the correlation data the request — and a duplicate is answered from
//! the cache, never executed again. A cache hit with a different payload is refused: the
//! requester reused correlation data for a new request.
//!
//! The cache is in memory and bounded in size and age. After a restart, a redelivered signed
//! command is still not executed twice: its nonce is in the store, so it is refused as
//! replayed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Identifies one request of one requester.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The requester's response topic.
    pub response_topic: String,
    /// The requester's correlation data.
    pub correlation: Bytes,
}

/// What the cache knows about a request id.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or forgotten).
    New,
    /// Seen with the same payload: send this reply again.
    Answered(Bytes),
    /// Seen with a different payload.
    DifferentRequest,
}

struct Entry {
    fingerprint: u64,
    reply: Bytes,
    at: Instant,
}

/// Bounded, time-limited reply cache.
pub struct DedupCache {
    entries: HashMap<RequestId, Entry>,
    order: VecDeque<RequestId>,
    capacity: usize,
    ttl: Duration,
}

fn fingerprint(topic: &str, payload: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    topic.hash(&mut hasher);
    payload.hash(&mut hasher);
    hasher.finish()
}

impl DedupCache {
    /// A cache of at most `capacity` replies, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> DedupCache {
        DedupCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
        }
    }

    fn expire(&mut self) {
        while let Some(oldest) = self.order.front() {
            let stale = self
                .entries
                .get(oldest)
                .is_none_or(|entry| entry.at.elapsed() >= self.ttl);
            if !stale && self.order.len() <= self.capacity {
                break;
            }
            if let Some(id) = self.order.pop_front() {
                self.entries.remove(&id);
            }
        }
    }

    /// Looks up a request (`topic` + `payload`) under `id`.
    pub fn check(&mut self, id: &RequestId, topic: &str, payload: &[u8]) -> Seen {
        self.expire();
        match self.entries.get(id) {
            None => Seen::New,
            Some(entry) if entry.fingerprint == fingerprint(topic, payload) => {
                Seen::Answered(entry.reply.clone())
            }
            Some(_) => Seen::DifferentRequest,
        }
    }

    /// Remembers the reply sent for a request.
    pub fn remember(&mut self, id: RequestId, topic: &str, payload: &[u8], reply: Bytes) {
        let entry = Entry {
            fingerprint: fingerprint(topic, payload),
            reply,
            at: Instant::now(),
        };
        if self.entries.insert(id.clone(), entry).is_none() {
            self.order.push_back(id);
        }
        self.expire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(correlation: &'static [u8]) -> RequestId {
        RequestId {
            response_topic: "r/1".into(),
            correlation: Bytes::from_static(correlation),
        }
    }

    #[test]
    fn a_duplicate_gets_the_cached_reply_and_a_reuse_is_refused() {
        let mut cache = DedupCache::new(10, Duration::from_secs(60));
        assert_eq!(cache.check(&id(b"a"), "t", b"p"), Seen::New);
        cache.remember(id(b"a"), "t", b"p", Bytes::from_static(b"reply"));
        assert_eq!(
            cache.check(&id(b"a"), "t", b"p"),
            Seen::Answered(Bytes::from_static(b"reply"))
        );
        assert_eq!(
            cache.check(&id(b"a"), "t", b"other"),
            Seen::DifferentRequest
        );
        assert_eq!(cache.check(&id(b"b"), "t", b"p"), Seen::New);
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest() {
        let mut cache = DedupCache::new(2, Duration::from_secs(60));
        for correlation in [&b"1"[..], b"2", b"3"] {
            let id = RequestId {
                response_topic: "r".into(),
                correlation: Bytes::copy_from_slice(correlation),
            };
            cache.remember(id, "t", b"p", Bytes::new());
        }
        let first = RequestId {
            response_topic: "r".into(),
            correlation: Bytes::from_static(b"1"),
        };
        assert_eq!(cache.check(&first, "t", b"p"), Seen::New);
        assert_eq!(cache.entries.len(), 2);
    }

    #[test]
    fn entries_expire() {
        let mut cache = DedupCache::new(10, Duration::ZERO);
        cache.remember(id(b"a"), "t", b"p", Bytes::new());
        assert_eq!(cache.check(&id(b"a"), "t", b"p"), Seen::New);
    }
}
