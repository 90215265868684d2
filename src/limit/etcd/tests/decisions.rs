//! The decisions through etcd: the rolling hour across Envoys, racing first sends,
//! give-back, verification, pre-verified webhooks.

use super::*;

#[test]
fn rolling_window_edges_and_retry_after_across_envoys() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    // Another Envoy (same store) one second and 3599 seconds later: refused by one read.
    for (later, retry) in [(1, 3599), (1800, 1800), (3599, 1)] {
        let calls = fake.calls.len();
        let decided = acquire(&mut fake, &limiter, &HOOK, T + later);
        assert_eq!(decided.state.as_ref().unwrap().retry_after, Some(retry));
        assert!(matches!(refused(decided), Failure::OverLimit(r) if r == retry));
        assert_eq!(fake.calls.len() - calls, 1, "a refusal is one read");
    }
    let again = admitted(acquire(&mut fake, &limiter, &HOOK, T + WINDOW_SECS));
    assert_eq!(again.ticket.taken(), Some(T + WINDOW_SECS));
    let txn: Json = serde_json::from_str(&fake.calls.last().unwrap().body).unwrap();
    assert_eq!(txn["compare"][0]["target"], "MOD");
    let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        value["sends"],
        json!([T + WINDOW_SECS]),
        "the old send was pruned"
    );
}

#[test]
fn interleaved_first_sends_admit_exactly_the_limit() {
    for per_hour in [1u32, 3] {
        let limiter = limiter(|c| c.unverified_per_hour = per_hour);
        let mut fake = Fake::new();
        // 8 Envoys read "absent" together, then each moves one step at a time, round robin.
        let mut ops: Vec<(Acquire, Option<Call>, u64)> = (0..8)
            .map(|i| {
                let (op, call) = Acquire::start(&etcd(), &limiter, &HOOK, &(T + i / 4));
                (op, Some(call), T + i / 4)
            })
            .collect();
        let mut outcomes = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            for (op, call, now) in ops.iter_mut() {
                if let Some(c) = call.take() {
                    moved = true;
                    let answered = fake.answer(&c);
                    match op.on_reply(&limiter, answered.reply(), now) {
                        Next::Call(next) => *call = Some(next),
                        Next::Done(decided) => outcomes.push(decided.result.is_ok()),
                    }
                }
            }
            if !moved {
                break;
            }
        }
        assert_eq!(outcomes.len(), 8);
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), per_hour as usize);
        let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
        assert_eq!(value["sends"].as_array().unwrap().len(), per_hour as usize);
    }
}

#[test]
fn a_refusal_that_lost_a_race_to_a_later_second_says_at_most_an_hour() {
    let limiter = limiter(|c| c.unverified_per_hour = 1);
    let mut fake = Fake::new();
    // X's request arrives at T and its read goes out; before etcd answers it, Y sends at T + 1.
    let (mut x, call) = Acquire::start(&etcd(), &limiter, &HOOK, &T);
    drop(admitted(acquire(&mut fake, &limiter, &HOOK, T + 1)));
    let answered = fake.answer(&call);
    let reply = answered.reply();
    // X's clock is read once Y's send is in hand: T + 1 too, so the hour is counted from there.
    match x.on_reply(&limiter, reply, &(T + 1)) {
        Next::Done(decided) => match refused(decided) {
            Failure::OverLimit(retry) => assert_eq!(retry, WINDOW_SECS),
            other => panic!("{other:?}"),
        },
        Next::Call(call) => panic!("decided without a call, got {call:?}"),
    }
}

#[test]
fn give_back_removes_only_this_deliverys_send() {
    let limiter = limiter(|c| c.unverified_per_hour = 2);
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let second = admitted(acquire(&mut fake, &limiter, &HOOK, T + 10));
    // The first delivery's write is no longer the current one: it rereads, removes its own send.
    let calls = fake.calls.len();
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &first),
    )
    .unwrap();
    assert_eq!(
        fake.calls.len() - calls,
        2,
        "compare failed once, then the removal"
    );
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(value["sends"], json!([T + 10]));
    assert_ne!(lease, 0, "the key keeps its lease");
    // A second give-back with the same delivery does nothing.
    assert!(Update::give_back(&etcd(), &limiter, &first).is_none());
    // The last send given back on its own revision: one call, and the key is deleted.
    let calls = fake.calls.len();
    let third = admitted(acquire(&mut fake, &limiter, &HOOK, T + 20));
    assert_eq!(
        fake.calls.len() - calls,
        3,
        "read, a lease for this send, write"
    );
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &third),
    )
    .unwrap();
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &second),
    )
    .unwrap();
    assert!(
        fake.value(&etcd(), &limiter, &HOOK).is_none(),
        "nothing left: deleted"
    );
    let delete: Json = serde_json::from_str(&fake.calls.last().unwrap().body).unwrap();
    assert!(delete["success"][0].get("request_delete_range").is_some());
    // Given back: the hour is free again.
    admitted(acquire(&mut fake, &limiter, &HOOK, T + 30));
}

#[test]
fn give_back_after_the_key_expired_does_nothing() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    fake.keys.clear(); // the lease ran out
    fake.revision += 1;
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &first),
    )
    .unwrap();
    assert!(fake.keys.is_empty());
}

#[test]
fn verification_is_stored_without_lease_and_frees_every_envoy() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    assert!(
        !first.free_by_verification(),
        "an unverified send is not cached"
    );
    assert_eq!(
        limiter.judge_key(&first.ticket, br#"{"key":"s3cret"}"#),
        KeyVerdict::Verified
    );
    let calls = fake.calls.len();
    update(
        &mut fake,
        &limiter,
        Update::verify(&etcd(), &limiter, &first),
    )
    .unwrap();
    assert_eq!(
        fake.calls.len() - calls,
        1,
        "one compare-and-swap on its own revision"
    );
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        (value["verified"].clone(), value["sends"].clone(), lease),
        (json!(true), json!([]), 0)
    );
    for later in [1, 2, 3600 * 24] {
        let calls = fake.calls.len();
        let free = admitted(acquire(&mut fake, &limiter, &HOOK, T + later));
        assert_eq!((free.ticket.taken(), free.ticket.verified()), (None, true));
        // Read verified by any Envoy: it caches the webhook and asks etcd no more.
        assert!(free.free_by_verification());
        assert_eq!(fake.calls.len() - calls, 1, "a verified send is one read");
    }
    // A wrong key changes nothing; its answer is judged by the core.
    let other = WebhookId {
        name: "orders",
        url: "https://example.com/other",
        normalised: false,
    };
    let sent = admitted(acquire(&mut fake, &limiter, &other, T));
    assert_eq!(
        limiter.judge_key(&sent.ticket, br#"{"key":"nope"}"#),
        KeyVerdict::WrongKey
    );
    refused(acquire(&mut fake, &limiter, &other, T + 5));
}

#[test]
fn verification_after_another_write_rereads_and_keeps_counting_when_limited() {
    let limiter = limiter(|c| {
        c.unverified_per_hour = 2;
        c.verified_per_hour = Some(3);
    });
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    admitted(acquire(&mut fake, &limiter, &HOOK, T + 1));
    update(
        &mut fake,
        &limiter,
        Update::verify(&etcd(), &limiter, &first),
    )
    .unwrap();
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        (value["verified"].clone(), value["sends"].clone(), lease),
        (json!(true), json!([T, T + 1]), 0)
    );
    let counted = admitted(acquire(&mut fake, &limiter, &HOOK, T + 2));
    assert!(
        !counted.free_by_verification(),
        "still limited: every send asks etcd"
    );
    let decided = acquire(&mut fake, &limiter, &HOOK, T + 3);
    assert!(matches!(refused(decided), Failure::OverLimit(3597)));
    // Verifying when the key has gone re-creates it, verified, with this delivery's send.
    fake.keys.clear();
    update(
        &mut fake,
        &limiter,
        Update::verify(&etcd(), &limiter, &first),
    )
    .unwrap();
    let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        (value["verified"].clone(), value["sends"].clone()),
        (json!(true), json!([T]))
    );
}

#[test]
fn pre_verified_webhooks_are_free_and_write_nothing() {
    let limiter = limiter(|c| {
        c.verified.push(crate::limit::VerifiedWebhook {
            name: "orders".into(),
            url: "https://EXAMPLE.com/hook".into(),
        })
    });
    let mut fake = Fake::new();
    for later in 0..3 {
        let free = admitted(acquire(&mut fake, &limiter, &HOOK, T + later));
        assert_eq!(free.ticket.taken(), None);
    }
    assert!(fake.keys.is_empty());
}
