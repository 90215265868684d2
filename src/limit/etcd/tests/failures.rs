//! etcd failing: calls retried then `LimitUnavailable`, values never overwritten when they do
//! not decode, endless contention bounded.

use super::*;

#[test]
fn failed_calls_are_retried_then_limit_unavailable() {
    let limiter = limiter(|_| {});
    // One timeout and one 503 from Envoy, then etcd answers: admitted.
    let mut fake = Fake::new();
    fake.forced = vec![
        (None, String::new()),
        (Some(503), "no healthy upstream".into()),
    ];
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    assert_eq!(fake.calls.len(), 5);
    // Nothing but failures: LimitUnavailable after 1 + MAX_RETRIES calls, nothing written.
    let mut fake = Fake::new();
    fake.forced = vec![(None, String::new()); 10];
    match refused(acquire(&mut fake, &limiter, &HOOK, T)) {
        Failure::LimitUnavailable(why) => assert!(why.contains("etcd: no answer"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.calls.len(), 1 + MAX_RETRIES as usize);
    assert!(fake.keys.is_empty());
    // An answer that is not etcd's: LimitUnavailable at once.
    let mut fake = Fake::new();
    fake.forced = vec![(Some(200), "<html>".into())];
    assert!(matches!(
        refused(acquire(&mut fake, &limiter, &HOOK, T)),
        Failure::LimitUnavailable(_)
    ));
    // A lease grant refused: never a write without its lease.
    let mut fake = Fake::new();
    fake.forced = vec![
        (Some(200), RANGE_EMPTY.into()),
        (
            Some(200),
            r#"{"header":{},"ID":"0","error":"etcdserver: too many requests"}"#.into(),
        ),
    ];
    assert!(matches!(
        refused(acquire(&mut fake, &limiter, &HOOK, T)),
        Failure::LimitUnavailable(_)
    ));
    assert!(fake.keys.is_empty());
}

#[test]
fn undecodable_values_are_never_overwritten() {
    let limiter = limiter(|_| {});
    for garbage in [
        &b"not json"[..],
        br#"{"v":2,"name":"orders","url":"https://example.com/hook","verified":true,"sends":[]}"#,
        br#"{"v":1,"name":"other","url":"https://example.com/hook","verified":true,"sends":[]}"#,
    ] {
        let mut fake = Fake::new();
        let key = etcd().key(&limiter, "orders", "https://example.com/hook");
        fake.keys.insert(
            key.clone().into_bytes(),
            Stored {
                value: garbage.to_vec(),
                create: 1,
                modified: 1,
                lease: 0,
            },
        );
        assert!(matches!(
            refused(acquire(&mut fake, &limiter, &HOOK, T)),
            Failure::LimitUnavailable(_)
        ));
        assert_eq!(fake.keys[key.as_bytes()].value, garbage);
        assert_eq!(fake.calls.len(), 1);
    }
}

#[test]
fn endless_contention_gives_up_with_limit_unavailable() {
    let limiter = limiter(|c| c.unverified_per_hour = 1000);
    let mut fake = Fake::new();
    let (mut op, mut call) = Acquire::start(&etcd(), &limiter, &HOOK, &T);
    let mut rounds = 0;
    let result = loop {
        rounds += 1;
        assert!(rounds < 100);
        if call.path == "/v3/kv/txn" {
            // Another Envoy writes in between every time.
            let other = admitted(acquire(&mut fake, &limiter, &HOOK, T));
            drop(other);
        }
        let answered = fake.answer(&call);
        match op.on_reply(&limiter, answered.reply(), &T) {
            Next::Call(next) => call = next,
            Next::Done(decided) => break decided,
        }
    };
    match refused(result) {
        Failure::LimitUnavailable(why) => assert!(why.contains("contended"), "{why}"),
        other => panic!("{other:?}"),
    }
}
