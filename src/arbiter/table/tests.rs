use super::*;
use crate::arbiter::wire::LeaseTerms;

fn request(op: Op, holder: &str, token: Option<u64>) -> LockRequest {
    LockRequest {
        op,
        holder: holder.into(),
        terms: LeaseTerms {
            device: Some("door".into()),
            token,
            lease_ms: Some(10_000),
        },
    }
}

#[test]
fn a_held_lock_is_busy_and_after_expiry_waits_the_lock_delay() {
    let mut table = Table::new(5_000);
    let granted = table.decide(&request(Op::Acquire, "a", None), 0);
    assert_eq!(granted.reply.outcome, Outcome::Granted);
    assert_eq!(granted.reply.terms.token, Some(1));
    assert!(
        granted.persist.is_some(),
        "a grant is persisted before it is sent"
    );
    let busy = table.decide(&request(Op::Acquire, "b", None), 9_999);
    assert_eq!(busy.reply.outcome, Outcome::Busy);
    assert_eq!(busy.reply.holder.as_deref(), Some("a"));
    let delayed = table.decide(&request(Op::Acquire, "b", None), 12_000);
    assert_eq!(delayed.reply.outcome, Outcome::Busy, "lock-delay");
    assert!(matches!(
        delayed.happened[0],
        Happened::Lost { token: 1, .. }
    ));
    let late = table.decide(&request(Op::Renew, "a", Some(1)), 13_000);
    assert_eq!(
        late.reply.outcome,
        Outcome::Stale,
        "an expired lease is not renewed"
    );
    let next = table.decide(&request(Op::Acquire, "b", None), 15_000);
    assert_eq!(next.reply.outcome, Outcome::Granted);
    assert_eq!(next.reply.terms.token, Some(2));
}

#[test]
fn renew_and_release_must_name_holder_and_token() {
    let mut table = Table::new(5_000);
    table.decide(&request(Op::Acquire, "a", None), 0);
    for (holder, token) in [("b", Some(1)), ("a", Some(2)), ("a", None)] {
        let outcome = table
            .decide(&request(Op::Release, holder, token), 1)
            .reply
            .outcome;
        assert_eq!(outcome, Outcome::Stale, "{holder} {token:?}");
        let outcome = table
            .decide(&request(Op::Renew, holder, token), 1)
            .reply
            .outcome;
        assert_eq!(outcome, Outcome::Stale, "{holder} {token:?}");
    }
    let renewed = table.decide(&request(Op::Renew, "a", Some(1)), 8_000);
    assert_eq!(renewed.reply.outcome, Outcome::Renewed);
    let released = table.decide(&request(Op::Release, "a", Some(1)), 9_000);
    assert_eq!(released.reply.outcome, Outcome::Released);
    let again = table.decide(&request(Op::Release, "a", Some(1)), 9_001);
    assert_eq!(
        again.reply.outcome,
        Outcome::Stale,
        "a duplicated release frees nothing"
    );
    let next = table.decide(&request(Op::Acquire, "b", None), 9_002);
    assert_eq!(
        next.reply.terms.token,
        Some(2),
        "a clean release needs no lock-delay"
    );
}

#[test]
fn a_freed_lock_is_kept_briefly_for_the_contender_that_waited() {
    let mut table = Table::new(5_000);
    table.decide(&request(Op::Acquire, "a", None), 0);
    let busy = table.decide(&request(Op::Acquire, "b", None), 100);
    assert_eq!(busy.reply.outcome, Outcome::Busy);
    table.decide(&request(Op::Release, "a", Some(1)), 200);
    let again = table.decide(&request(Op::Acquire, "a", None), 300);
    assert_eq!(again.reply.outcome, Outcome::Busy, "b waited first");
    let waiter = table.decide(&request(Op::Acquire, "b", None), 400);
    assert_eq!(waiter.reply.outcome, Outcome::Granted);
    table.decide(&request(Op::Release, "b", Some(2)), 500);
    let later = table.decide(&request(Op::Acquire, "a", None), 600);
    assert_eq!(later.reply.outcome, Outcome::Granted, "nobody waits now");
}

#[test]
fn after_a_restart_persisted_leases_are_honoured_and_tokens_continue() {
    let persisted = Persisted {
        token: 41,
        holder: Some("a".into()),
        lease_ms: 10_000,
    };
    let mut table = Table::restore(5_000, 40, [("door".to_string(), persisted)], 100);
    let busy = table.decide(&request(Op::Acquire, "b", None), 5_000);
    assert_eq!(
        busy.reply.outcome,
        Outcome::Busy,
        "a full lease from the restart"
    );
    let renewed = table.decide(&request(Op::Renew, "a", Some(41)), 6_000);
    assert_eq!(
        renewed.reply.outcome,
        Outcome::Renewed,
        "the holder keeps it"
    );
    let delayed = table.decide(&request(Op::Acquire, "b", None), 6_000 + 10_000 + 4_999);
    assert_eq!(delayed.reply.outcome, Outcome::Busy, "then the lock-delay");
    let free = table.decide(&request(Op::Acquire, "b", None), 6_000 + 10_000 + 5_000);
    assert_eq!(free.reply.outcome, Outcome::Granted);
    assert_eq!(free.reply.terms.token, Some(42));
}

/// An exhaustive exploration of every history of two holders and one device up to a bounded
/// depth: acquire, renew and release (each answer delivered or lost), time passing, and arbiter
/// restarts, and a release that stays in flight (reordered or duplicated by the network) and
/// reaches the arbiter later, after its sender has asked again. Holders follow the client's
/// rule (deadline = send + lease − margin). Checked in
/// every state: at most one holder believes it holds the lock, and grants take strictly
/// increasing tokens, across restarts.
mod explore {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    const LEASE: u64 = 10;
    const MARGIN: u64 = 2;
    const DELAY: u64 = 5;

    #[derive(Clone, PartialEq, Eq, Hash)]
    struct World {
        table: Table,
        persisted: Option<Persisted>,
        now: u64,
        /// Per holder: (token, deadline) while it believes it holds the lock.
        believes: [Option<(u64, u64)>; 2],
        last_granted: u64,
        /// A release sent and not yet received: (holder, token). At most one, to bound the
        /// exploration.
        in_flight: Option<(usize, u64)>,
    }

    const HOLDERS: [&str; 2] = ["a", "b"];

    fn ask(world: &mut World, op: Op, who: usize) -> Option<LockReply> {
        let token = world.believes[who].map(|(token, _)| token);
        send(world, op, who, token)
    }

    fn send(world: &mut World, op: Op, who: usize, token: Option<u64>) -> Option<LockReply> {
        if op != Op::Acquire && token.is_none() {
            return None;
        }
        let request = LockRequest {
            op,
            holder: HOLDERS[who].into(),
            terms: LeaseTerms {
                device: Some("door".into()),
                token,
                lease_ms: Some(LEASE * 1000),
            },
        };
        // The model's time unit is a second; the table counts milliseconds.
        let decision = world.table.decide(&request, world.now * 1000);
        if let Some((_, record)) = decision.persist {
            world.persisted = Some(record);
        }
        if decision.reply.outcome == Outcome::Granted {
            let token = decision.reply.terms.token.unwrap();
            if token != world.last_granted {
                assert!(
                    token > world.last_granted,
                    "token {token} after {}",
                    world.last_granted
                );
                world.last_granted = token;
            }
        }
        Some(decision.reply)
    }

    fn successors(world: &World) -> Vec<World> {
        let mut next = Vec::new();
        for who in 0..2 {
            // The holder releases, and the network holds the release back.
            if let (Some((token, _)), None) = (world.believes[who], world.in_flight) {
                let mut w = world.clone();
                w.believes[who] = None;
                w.in_flight = Some((who, token));
                next.push(w);
            }
        }
        if let Some((who, token)) = world.in_flight {
            // The late release arrives; its sender stopped waiting for the answer long ago.
            let mut w = world.clone();
            w.in_flight = None;
            send(&mut w, Op::Release, who, Some(token));
            next.push(w);
        }
        for who in 0..2 {
            for op in [Op::Acquire, Op::Renew, Op::Release] {
                for delivered in [true, false] {
                    let mut w = world.clone();
                    let Some(reply) = ask(&mut w, op, who) else {
                        continue;
                    };
                    if delivered {
                        let deadline = w.now + LEASE - MARGIN;
                        match reply.outcome {
                            Outcome::Granted => {
                                w.believes[who] = Some((reply.terms.token.unwrap(), deadline));
                            }
                            Outcome::Renewed => {
                                if let Some(held) = &mut w.believes[who] {
                                    held.1 = deadline;
                                }
                            }
                            Outcome::Released | Outcome::Stale => w.believes[who] = None,
                            _ => {}
                        }
                    } else if op == Op::Release {
                        // The holder stops before it asks, answer or not.
                        w.believes[who] = None;
                    }
                    next.push(w);
                }
            }
        }
        for step in [1, 3, 8] {
            let mut w = world.clone();
            w.now += step;
            for held in &mut w.believes {
                if held.is_some_and(|(_, deadline)| deadline <= w.now) {
                    *held = None;
                }
            }
            next.push(w);
        }
        let mut restarted = world.clone();
        restarted.table = Table::restore(
            DELAY * 1000,
            world.table.last_token(),
            world.persisted.clone().map(|p| ("door".to_string(), p)),
            world.now * 1000,
        );
        next.push(restarted);
        next
    }

    #[test]
    fn no_two_holders_ever_believe_they_hold_the_lock() {
        let start = World {
            table: Table::new(DELAY * 1000),
            persisted: None,
            now: 0,
            believes: [None, None],
            last_granted: 0,
            in_flight: None,
        };
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([(start, 0)]);
        let mut explored = 0u64;
        while let Some((world, depth)) = queue.pop_front() {
            explored += 1;
            let believers = world
                .believes
                .iter()
                .filter(|held| held.is_some_and(|(_, deadline)| deadline > world.now))
                .count();
            assert!(believers <= 1, "two holders at t={}", world.now);
            if depth == 8 {
                continue;
            }
            for next in successors(&world) {
                if seen.insert(next.clone()) {
                    queue.push_back((next, depth + 1));
                }
            }
        }
        assert!(explored > 10_000, "explored {explored} states");
    }
}

#[test]
fn a_release_that_arrives_after_its_sender_asked_again_frees_nothing() {
    let mut table = Table::new(5_000);
    let first = table.decide(&request(Op::Acquire, "a", None), 0);
    assert_eq!(first.reply.terms.token, Some(1));
    // `a` released token 1, but the network delivers its next acquire first.
    let again = table.decide(&request(Op::Acquire, "a", None), 100);
    assert_eq!(again.reply.outcome, Outcome::Granted);
    assert_eq!(
        again.reply.terms.token,
        Some(2),
        "a fresh token, never the old one"
    );
    assert!(again.persist.is_some(), "the new token is made durable");
    let late = table.decide(&request(Op::Release, "a", Some(1)), 120);
    assert_eq!(late.reply.outcome, Outcome::Stale);
    let other = table.decide(&request(Op::Acquire, "b", None), 130);
    assert_eq!(
        other.reply.outcome,
        Outcome::Busy,
        "the lock is still a's, under token 2"
    );
}
