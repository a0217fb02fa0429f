use super::*;

fn request(op: Op, holder: &str, token: Option<u64>) -> LockRequest {
    LockRequest {
        op,
        holder: holder.into(),
        device: Some("door".into()),
        token,
        lease_ms: Some(10_000),
    }
}

#[test]
fn a_held_lock_is_busy_and_after_expiry_waits_the_lock_delay() {
    let mut table = Table::new(5_000);
    let granted = table.decide(&request(Op::Acquire, "a", None), 0);
    assert_eq!(granted.reply.outcome, Outcome::Granted);
    assert_eq!(granted.reply.token, Some(1));
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
    assert_eq!(next.reply.token, Some(2));
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
        next.reply.token,
        Some(2),
        "a clean release needs no lock-delay"
    );
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
    assert_eq!(free.reply.token, Some(42));
}
