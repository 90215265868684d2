//! A support operator's look and lift (reset the window, verify) in the local table.

use super::*;

#[test]
fn support_looks_up_resets_and_verifies_one_webhook() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    limiter.acquire(&store, &clock, &HOOK).unwrap();
    clock.set(T + 600);
    over(limiter.acquire(&store, &clock, &HOOK));
    let looked = limiter.support(&store, &clock, &HOOK, None).unwrap();
    let limited = LimitState {
        verified: false,
        sends_in_window: 1,
        allowed_per_hour: Some(1),
        retry_after: Some(3000),
    };
    assert_eq!(
        (&looked.before, &looked.after, looked.changed),
        (&limited, &limited, false)
    );

    let reset = limiter
        .support(&store, &clock, &HOOK, Some(Lift::ResetWindow))
        .unwrap();
    let free = LimitState {
        sends_in_window: 0,
        retry_after: None,
        ..limited.clone()
    };
    assert_eq!(
        (&reset.before, &reset.after, reset.changed),
        (&limited, &free, true)
    );
    limiter.acquire(&store, &clock, &HOOK).unwrap();
    // A reset of a window with nothing in it, or of a webhook never seen, changes nothing.
    let other = id("other", "https://example.com/hook");
    let untouched = limiter
        .support(&store, &clock, &other, Some(Lift::ResetWindow))
        .unwrap();
    assert!(!untouched.changed);

    let verified = limiter
        .support(&store, &clock, &HOOK, Some(Lift::Verify))
        .unwrap();
    let unlimited = LimitState {
        verified: true,
        sends_in_window: 0,
        allowed_per_hour: None,
        retry_after: None,
    };
    assert!(verified.changed);
    assert_eq!(verified.after, unlimited);
    assert!(limiter.acquire(&store, &clock, &HOOK).unwrap().verified());
    let again = limiter
        .support(&store, &clock, &HOOK, Some(Lift::Verify))
        .unwrap();
    assert!(!again.changed);
    // Verifying a webhook never seen records it, as a right key would.
    let fresh = limiter
        .support(&store, &clock, &other, Some(Lift::Verify))
        .unwrap();
    assert_eq!((fresh.changed, &fresh.after), (true, &unlimited));
}
