//! One delivery's slot: the same steps for both backends; the local table finishes each at once,
//! etcd asks for a call first.

use super::*;
use crate::limit::etcd::{Etcd, Reply};
use crate::limit::slot::{Finished, Slot, Step};
use crate::limit::state::StateConfig;

#[test]
fn the_local_table_finishes_every_step_at_once() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let mut slot = Slot::default();
    assert!(matches!(
        slot.take(&limiter, None, &store, &clock, &HOOK),
        Ok(Step::Done(()))
    ));
    assert!(!slot.in_flight());
    assert!(matches!(
        slot.judge_answer(&limiter, None, &store, br#"{"key":"wrong"}"#),
        Err(Failure::WrongKey)
    ));
    assert!(matches!(
        slot.give_back(&limiter, None, &store),
        Step::Done(())
    ));
    // Given back: the next send is allowed.
    let mut next = Slot::default();
    assert!(next.take(&limiter, None, &store, &clock, &HOOK).is_ok());
    assert!(matches!(
        next.take(&limiter, None, &store, &clock, &HOOK),
        Err(Failure::OverLimit(3600))
    ));
}

#[test]
fn with_etcd_a_step_asks_for_calls_until_it_is_done() {
    let limiter = keyed(|_| {});
    let etcd = Etcd::new(&StateConfig::default());
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let mut fake = crate::limit::etcd::fake::Fake::new();
    let mut slot = Slot::default();
    let mut step = slot
        .take(&limiter, Some(&etcd), &store, &clock, &HOOK)
        .unwrap();
    let mut paths = Vec::new();
    let finished = loop {
        let call = match step {
            Step::Call(call) => call,
            Step::Done(()) => panic!("etcd decided without a call"),
        };
        assert!(slot.in_flight());
        paths.push(call.path);
        let answered = fake.answer(&call);
        let reply = answered.reply();
        match slot.on_reply(&limiter, Some(&etcd), &store, reply, &clock) {
            Some(Step::Call(next)) => step = Step::Call(next),
            Some(Step::Done(finished)) => break finished,
            None => panic!("no call in flight"),
        }
    };
    assert!(matches!(finished, Finished::Taken(Ok(()))));
    assert_eq!(paths, ["/v3/kv/range", "/v3/lease/grant", "/v3/kv/txn"]);
    assert!(!slot.in_flight());
    assert_eq!(slot.etcd_state().map(|s| s.sends_in_window), Some(1));
    // Nothing in flight: a stray reply changes nothing.
    let stray = Reply {
        status: Some(200),
        body: b"{}",
    };
    assert!(slot
        .on_reply(&limiter, Some(&etcd), &store, stray, &clock)
        .is_none());
}
