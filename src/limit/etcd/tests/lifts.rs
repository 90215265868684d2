//! A support operator's look and lift (reset the window, verify) through etcd.

use super::*;

fn support(
    fake: &mut Fake,
    limiter: &Limiter,
    lift: Option<crate::limit::Lift>,
    now: u64,
) -> crate::limit::Lifted {
    let (mut op, mut call) = Support::start(&etcd(), limiter, &HOOK, lift);
    for _ in 0..50 {
        let answered = fake.answer(&call);
        let reply = answered.reply();
        match op.on_reply(limiter, reply, &now) {
            Next::Call(next) => call = next,
            Next::Done(result) => return result.unwrap(),
        }
    }
    panic!("support operation did not finish");
}

#[test]
fn support_looks_up_resets_and_verifies_in_etcd() {
    use crate::limit::Lift;
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let looked = support(&mut fake, &limiter, None, T + 600);
    let limited = LimitState {
        verified: false,
        sends_in_window: 1,
        allowed_per_hour: Some(1),
        retry_after: Some(3000),
    };
    assert_eq!((looked.before, looked.changed), (limited.clone(), false));
    assert_eq!(looked.after, limited);

    let reset = support(&mut fake, &limiter, Some(Lift::ResetWindow), T + 600);
    assert!(reset.changed);
    assert_eq!(reset.after.sends_in_window, 0);
    assert_eq!(
        fake.value(&etcd(), &limiter, &HOOK),
        None,
        "nothing left: deleted"
    );
    admitted(acquire(&mut fake, &limiter, &HOOK, T + 601));

    let verified = support(&mut fake, &limiter, Some(Lift::Verify), T + 602);
    assert!(verified.changed);
    assert_eq!(
        verified.after,
        LimitState {
            verified: true,
            sends_in_window: 0,
            allowed_per_hour: None,
            retry_after: None,
        }
    );
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!((value["verified"].clone(), lease), (json!(true), 0));
    assert!(!support(&mut fake, &limiter, Some(Lift::Verify), T + 603).changed);
    assert!(!support(&mut fake, &limiter, Some(Lift::ResetWindow), T + 603).changed);
}

/// A send stored between the support operation's read and its write: the compare fails, and the
/// reset is decided again on what is there (the new send is reset too: the operator asked for an
/// empty window).
#[test]
fn a_support_write_that_lost_a_race_decides_again() {
    use crate::limit::Lift;
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let (mut op, call) = Support::start(&etcd(), &limiter, &HOOK, Some(Lift::ResetWindow));
    let answered = fake.answer(&call);
    let write = match op.on_reply(&limiter, answered.reply(), &T) {
        Next::Call(write) => write,
        Next::Done(_) => panic!("a reset of a send must write"),
    };
    // Meanwhile another write moves the key on.
    let mut moved = fake.keys.values().next().unwrap().clone();
    fake.revision += 1;
    moved.modified = fake.revision;
    let key = fake.keys.keys().next().unwrap().clone();
    fake.keys.insert(key, moved);
    let answered = fake.answer(&write);
    match op.on_reply(&limiter, answered.reply(), &T) {
        Next::Call(again) => {
            let answered = fake.answer(&again);
            match op.on_reply(&limiter, answered.reply(), &T) {
                Next::Done(result) => assert!(result.unwrap().changed),
                Next::Call(_) => panic!("one more round"),
            }
        }
        Next::Done(_) => panic!("a failed compare must be decided again"),
    }
    assert!(fake.keys.is_empty());
}
