//! The bucket codec (src/limit/codec.rs), through the public API: arbitrary bytes stored as a
//! bucket value in shared data, then every limiter operation on it.
//!
//! Input: byte 0 picks the configuration (bit 0 verified limit, bit 1 two buckets, bits 2-7 move
//! the clock by up to 63 minutes); the rest is the value of bucket 0 (with two buckets, bucket 1
//! gets the same bytes). Values hold entries and, since format version 2, redirects: a redirect
//! for the webhook's fingerprint sends every operation to the other bucket, and a redirect
//! beyond the table makes the value unreadable.
#![no_main]

use hookgate::error::Failure;
use hookgate::limit::{LimitConfig, Limiter, WebhookId};
use hookgate_fuzz::{FixedClock, MemStore, T};
use libfuzzer_sys::fuzz_target;

const HOOK: WebhookId<'static> = WebhookId {
    name: "orders",
    url: "https://example.com/hook",
    normalised: false,
};

fuzz_target!(|data: &[u8]| {
    let Some((&options, value)) = data.split_first() else {
        return;
    };
    let mut config = LimitConfig {
        max_tracked: if options & 2 == 0 { 8 } else { 16 },
        ..LimitConfig::default()
    };
    config.keys.insert("orders".into(), "s3cret".into());
    if options & 1 != 0 {
        config.verified_per_hour = Some(3);
    }
    let limiter = Limiter::new(&config).expect("limit config");
    let store = MemStore::default();
    limiter.prepare(&store).expect("prepare");
    let buckets: &[&str] = if options & 2 == 0 {
        &["hookgate/default/bucket/0"]
    } else {
        &["hookgate/default/bucket/0", "hookgate/default/bucket/1"]
    };
    for key in buckets {
        store.put_raw(key, value);
    }
    let clock = FixedClock(T + u64::from(options >> 2) * 60);

    let before = limiter.state(&store, &clock, &HOOK);
    let acquired = limiter.acquire(&store, &clock, &HOOK);
    let during = limiter.state(&store, &clock, &HOOK);
    // However the value looked, the count of tracked webhooks never fails on it.
    assert!(limiter.tracked(&store, &clock).is_ok());
    if let Ok(ticket) = &acquired {
        // What acquire wrote decodes, and counts the send it took.
        let during = during
            .as_ref()
            .expect("acquire wrote a bucket that does not decode");
        if ticket.taken().is_some() {
            assert!(during.sends_in_window >= 1, "{during:?}");
        }
        limiter.give_back(&store, ticket).expect("give_back");
        let verdict = limiter.observe_answer(&store, ticket, br#"{"key":"s3cret"}"#);
        let after = limiter.state(&store, &clock, &HOOK).expect("state after");
        if verdict.is_ok() {
            assert!(after.verified, "{after:?}");
        }
    }
    match &before {
        Ok(_) => {}
        Err(Failure::LimitUnavailable(_)) => {
            // A value this version cannot read is occupied by something unknown: every
            // operation refuses and nothing overwrites it.
            assert!(
                matches!(acquired, Err(Failure::LimitUnavailable(_))),
                "{acquired:?}"
            );
            let home = buckets
                .iter()
                .filter(|key| store.raw(key).as_deref() == Some(value))
                .count();
            assert_eq!(home, buckets.len(), "an unreadable bucket was overwritten");
        }
        Err(other) => panic!("state failed with {other:?}"),
    }
});
