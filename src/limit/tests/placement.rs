//! Placement in the fixed table: buckets, redirects, the ceiling, the layout, the hash, and
//! what the store refuses.

use super::*;

#[test]
fn expired_unverified_places_are_reused() {
    let limiter = limiter(LimitConfig {
        max_tracked: 1,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let a = id("a", "https://a.example/");
    let b = id("b", "https://b.example/");
    assert!(limiter.acquire(&store, &clock, &a).is_ok());
    clock.set(T + 10);
    let detail = unavailable_detail(limiter.acquire(&store, &clock, &b));
    assert!(detail.starts_with("webhook table full"), "{detail}");
    clock.set(T + 3600);
    assert!(limiter.acquire(&store, &clock, &b).is_ok());
    // a's place went to b: a is full out until b's send expires.
    assert!(
        unavailable_detail(limiter.acquire(&store, &clock, &a)).starts_with("webhook table full")
    );
    assert_eq!(
        limiter.state(&store, &clock, &a).unwrap().sends_in_window,
        0
    );
    // A given-back send frees the place too.
    clock.set(T + 7200);
    let ticket = limiter.acquire(&store, &clock, &a).unwrap();
    limiter.give_back(&store, &ticket).unwrap();
    assert!(limiter.acquire(&store, &clock, &b).is_ok());
}

#[test]
fn ceiling_refuses_new_webhooks_never_lets_them_through() {
    let limiter = limiter(LimitConfig {
        max_tracked: 3,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    for name in ["a", "b", "c"] {
        assert!(limiter
            .acquire(&store, &clock, &id(name, "https://x.example/"))
            .is_ok());
    }
    for round in 0..20 {
        let name = format!("new-{round}");
        let result = limiter.acquire(&store, &clock, &id(&name, "https://x.example/"));
        let detail = unavailable_detail(result);
        assert!(detail.contains("limit.max_tracked = 3"), "{detail}");
        assert_eq!(Failure::LimitUnavailable(detail).http_status(), 503);
    }
    // Tracked webhooks keep their limit at the ceiling.
    assert!(over(limiter.acquire(&store, &clock, &id("a", "https://x.example/"))) > 0);
    // The key count never grows with new webhooks: meta, probe and the buckets.
    assert_eq!(store.keys(), 2 + 1);
}

#[test]
fn verified_webhooks_fill_a_bucket_for_ever_and_overflow_to_the_next() {
    let limiter = keyed(|c| {
        c.max_tracked = 16;
        c.default_key = Some("k".into());
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let url = "https://x.example/";
    let names = names_in_bucket(&limiter, url, 0, 10);
    assert_eq!(names.len(), 10);
    for name in names.iter().take(8) {
        let ticket = limiter.acquire(&store, &clock, &id(name, url)).unwrap();
        assert_eq!(
            limiter
                .observe_answer(&store, &ticket, br#"{"key":"k"}"#)
                .unwrap(),
            KeyVerdict::Verified
        );
    }
    // Bucket 0 is full of verified webhooks for ever: the ninth goes to bucket 1.
    let ninth = id(&names[8], url);
    let ticket = limiter.acquire(&store, &clock, &ninth).unwrap();
    assert!(over(limiter.acquire(&store, &clock, &ninth)) > 0);
    assert_eq!(
        limiter
            .state(&store, &clock, &ninth)
            .unwrap()
            .sends_in_window,
        1
    );
    let bucket1 = codec::decode(&store.raw("hookgate/default/bucket/1").unwrap()).unwrap();
    assert!(bucket1.entries.iter().any(|e| e.name == names[8]));
    limiter.give_back(&store, &ticket).unwrap();
    assert_eq!(
        limiter
            .state(&store, &clock, &ninth)
            .unwrap()
            .sends_in_window,
        0
    );
    let ticket = limiter.acquire(&store, &clock, &ninth).unwrap();
    assert_eq!(
        limiter
            .observe_answer(&store, &ticket, br#"{"key":"k"}"#)
            .unwrap(),
        KeyVerdict::Verified
    );
    assert!(limiter.state(&store, &clock, &ninth).unwrap().verified);
    // Verified webhooks stay verified however much time passes; none was duplicated.
    clock.set(T + 100 * 86_400);
    for name in names.iter().take(9) {
        assert!(limiter
            .acquire(&store, &clock, &id(name, url))
            .unwrap()
            .verified());
    }
    let bucket0 = codec::decode(&store.raw("hookgate/default/bucket/0").unwrap()).unwrap();
    assert_eq!(bucket0.entries.len(), 8);
    assert!(bucket0.entries.iter().all(|e| e.verified));
}

#[test]
fn webhooks_sharing_a_bucket_keep_separate_state() {
    let limiter = keyed(|c| {
        c.max_tracked = 8;
        c.keys.insert("invoices".into(), "s3cret".into());
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let same_url_other_name = id("invoices", HOOK.url);
    let same_name_other_url = id("orders", "https://example.com/hook2");
    assert_eq!(limiter.home_bucket(&Ident::new(&HOOK)), 0);
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    assert!(limiter
        .acquire(&store, &clock, &same_url_other_name)
        .is_ok());
    assert!(limiter
        .acquire(&store, &clock, &same_name_other_url)
        .is_ok());
    limiter
        .observe_answer(&store, &ticket, br#"{"key": "s3cret"}"#)
        .unwrap();
    assert!(limiter.state(&store, &clock, &HOOK).unwrap().verified);
    for other in [&same_url_other_name, &same_name_other_url] {
        assert!(!limiter.state(&store, &clock, other).unwrap().verified);
        assert!(over(limiter.acquire(&store, &clock, other)) > 0);
    }
    // A name that looks like name+url split differently is another webhook (length-prefixed hash,
    // full identity compared).
    let bucket = codec::decode(&store.raw("hookgate/default/bucket/0").unwrap()).unwrap();
    assert_eq!(bucket.entries.len(), 3);
}

#[test]
fn undecodable_bucket_is_never_overwritten_and_refuses_its_webhooks() {
    let limiter = limiter(LimitConfig {
        max_tracked: 16,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let url = "https://x.example/";
    let in0 = names_in_bucket(&limiter, url, 0, 1).pop().unwrap();
    let in1 = names_in_bucket(&limiter, url, 1, 1).pop().unwrap();
    for garbage in [
        &b"\x02future format"[..],
        b"\x01\x05\x00",
        b"\xff\xff\xff",
        b"{}",
    ] {
        store.put_raw("hookgate/default/bucket/0", garbage);
        let detail = unavailable_detail(limiter.acquire(&store, &clock, &id(&in0, url)));
        assert!(detail.contains("cannot read"), "{detail}");
        assert!(matches!(
            limiter.state(&store, &clock, &id(&in0, url)),
            Err(Failure::LimitUnavailable(_))
        ));
        limiter.prepare(&store).unwrap();
        assert_eq!(store.raw("hookgate/default/bucket/0").unwrap(), garbage);
    }
    // Other buckets work.
    assert!(limiter.acquire(&store, &clock, &id(&in1, url)).is_ok());
    // An empty value (what remove_shared_data leaves) is an empty bucket.
    store.put_raw("hookgate/default/bucket/0", b"");
    assert!(limiter.acquire(&store, &clock, &id(&in0, url)).is_ok());
    assert!(over(limiter.acquire(&store, &clock, &id(&in0, url))) > 0);
}

#[test]
fn prepare_creates_the_table_once_and_checks_its_layout() {
    let limiter = limiter(LimitConfig {
        max_tracked: 20,
        ..LimitConfig::default()
    });
    let store = MemStore::default();
    limiter.prepare(&store).unwrap();
    assert_eq!(store.keys(), 2 + 3);
    assert_eq!(
        store.raw("hookgate/default/bucket/2").unwrap(),
        codec::empty_bucket()
    );
    let clock = FakeClock::at(T);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    // A reload with the same layout keeps the state.
    let reloaded = self::limiter(LimitConfig {
        max_tracked: 20,
        ..LimitConfig::default()
    });
    reloaded.prepare(&store).unwrap();
    assert!(over(reloaded.acquire(&store, &clock, &HOOK)) > 0);
    // Another size in the same namespace is refused; another namespace is separate.
    let resized = self::limiter(LimitConfig {
        max_tracked: 40,
        ..LimitConfig::default()
    });
    let err = resized.prepare(&store).unwrap_err();
    assert!(err.starts_with("limit.max_tracked:"), "{err}");
    let other = self::limiter(LimitConfig {
        max_tracked: 40,
        namespace: "b".into(),
        ..LimitConfig::default()
    });
    other.prepare(&store).unwrap();
    assert!(other.acquire(&store, &clock, &HOOK).is_ok());
    // The capacities add up to max_tracked exactly: 8 + 8 + 4.
    assert_eq!((0..3).map(|b| limiter.capacity(b)).sum::<u32>(), 20);
}

#[test]
fn acquire_without_prepare_creates_missing_buckets() {
    let limiter = limiter(LimitConfig::default());
    let store = MemStore::default();
    let clock = FakeClock::at(T);
    assert!(limiter.state(&store, &clock, &HOOK).is_ok());
    assert_eq!(store.keys(), 0, "state reads only");
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    assert!(over(limiter.acquire(&store, &clock, &HOOK)) > 0);
}

#[test]
fn store_failures_are_limit_unavailable() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert!(unavailable_detail(limiter.acquire(&store, &clock, &HOOK)).contains("host says no"));
    assert!(matches!(
        limiter.give_back(&store, &ticket),
        Err(Failure::LimitUnavailable(_))
    ));
    assert!(matches!(
        limiter.observe_answer(&store, &ticket, br#"{"key":"s3cret"}"#),
        Err(Failure::LimitUnavailable(_))
    ));
    assert!(limiter
        .prepare(&store)
        .unwrap_err()
        .starts_with("limit: shared data unavailable"));
    store.down.store(false, Ordering::SeqCst);
    // The failed give-back can be retried.
    limiter.give_back(&store, &ticket).unwrap();
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
}

#[test]
fn hash_is_fnv1a_64_and_stable() {
    // Pinned: a change here moves every webhook to another bucket after an upgrade. FNV-1a 64
    // of (6 as u64 little-endian, "orders", "https://example.com/hook").
    let ident = Ident::new(&HOOK);
    assert_eq!(ident.hash(), 0x8b2b_c4e4_f0dd_20d0);
    let limiter = limiter(LimitConfig::default());
    assert_eq!(limiter.home_bucket(&ident), PINNED_HOME);
}

/// HOOK's home bucket among the default 1250.
const PINNED_HOME: u32 = 92;

/// Webhooks placed before the first refusal, and refusals, when `attempts` distinct unverified
/// webhooks arrive at one instant in a fresh table; plus the longest redirect, the most
/// redirects in one bucket and the largest bucket value.
pub(super) fn fill(max_tracked: u32, attempts: u32, salt: &str) -> (u32, u32, u32, usize, usize) {
    let limiter = limiter(LimitConfig {
        max_tracked,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let mut first_refusal = None;
    let mut refused = 0;
    for i in 0..attempts {
        let name = format!("{salt}hook-{i}");
        match limiter.acquire(&store, &clock, &id(&name, "https://receiver.example/hooks")) {
            Ok(_) => {}
            Err(Failure::LimitUnavailable(detail)) if detail.starts_with("webhook table full") => {
                first_refusal.get_or_insert(i);
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    let (mut longest, mut most, mut largest) = (0, 0, 0);
    for b in 0..limiter.buckets {
        let raw = store.raw(&limiter.bucket_key(b)).unwrap();
        largest = largest.max(raw.len());
        let bucket = codec::decode(&raw).unwrap();
        most = most.max(bucket.redirects.len());
        longest = longest.max(bucket.redirects.iter().map(|r| r.offset).max().unwrap_or(0));
    }
    (
        first_refusal.unwrap_or(attempts),
        refused,
        longest,
        most,
        largest,
    )
}

#[test]
fn nine_thousand_new_webhooks_fit_in_ten_thousand_places() {
    // Measured (fill_measurement): the first refusal comes at 94.9-96.9% of max_tracked for
    // 1000, 10000 and 100000 places; none at 90%.
    let (first_refusal, refused, _, most_redirects, largest) = fill(10_000, 9_000, "");
    assert_eq!((first_refusal, refused), (9_000, 0));
    assert!(most_redirects <= MAX_REDIRECTS as usize);
    assert!(largest < 1_000, "{largest} bytes");
}

#[test]
fn a_webhook_whose_home_is_full_lives_behind_a_redirect_until_it_lapses() {
    let limiter = keyed(|c| {
        c.max_tracked = 80;
        c.default_key = Some("k".into());
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let url = "https://x.example/";
    let names = homed(&limiter, "h", url, 3, 10);
    for name in names.iter().take(8) {
        limiter.acquire(&store, &clock, &id(name, url)).unwrap();
    }
    let ninth = id(&names[8], url);
    let ticket = limiter.acquire(&store, &clock, &ninth).unwrap();
    assert!(over(limiter.acquire(&store, &clock, &ninth)) > 0);
    let home = codec::decode(&store.raw("hookgate/default/bucket/3").unwrap()).unwrap();
    assert_eq!(home.entries.len(), 8);
    assert_eq!(home.redirects.len(), 1);
    let redirect = home.redirects[0];
    assert_eq!(redirect.fingerprint, Ident::new(&ninth).fingerprint());
    assert_eq!(redirect.until, T + 7200);
    assert!(!redirect.permanent);
    let target = (3 + redirect.offset) % limiter.buckets;
    let there = codec::decode(&store.raw(&limiter.bucket_key(target)).unwrap()).unwrap();
    assert!(there.entries.iter().any(|e| e.name == names[8]));
    // Give-back and state find it there.
    assert_eq!(
        limiter
            .state(&store, &clock, &ninth)
            .unwrap()
            .sends_in_window,
        1
    );
    limiter.give_back(&store, &ticket).unwrap();
    assert_eq!(
        limiter
            .state(&store, &clock, &ninth)
            .unwrap()
            .sends_in_window,
        0
    );
    // A send through the redirect with less than an hour left moves `until`.
    clock.set(T + 3601);
    limiter.acquire(&store, &clock, &ninth).unwrap();
    let home = codec::decode(&store.raw("hookgate/default/bucket/3").unwrap()).unwrap();
    assert_eq!(home.redirects[0].until, T + 3601 + 7200);
    // Even once the home has room (its entries expired), the webhook stays behind its redirect
    // while it holds ...
    clock.set(T + 3601 + 3599);
    assert!(over(limiter.acquire(&store, &clock, &ninth)) == 1);
    // ... and after it lapsed, with nothing counted any more, it is placed at home.
    clock.set(T + 3601 + 7200);
    limiter.acquire(&store, &clock, &ninth).unwrap();
    let home = codec::decode(&store.raw("hookgate/default/bucket/3").unwrap()).unwrap();
    assert!(home.redirects.is_empty());
    assert!(home.entries.iter().any(|e| e.name == names[8]));
    assert_eq!(sends_anywhere(&limiter, &store, &ninth, T + 3601 + 7200), 1);
}

#[test]
fn a_verified_webhook_behind_a_redirect_keeps_it_for_ever() {
    let limiter = keyed(|c| {
        c.max_tracked = 80;
        c.default_key = Some("k".into());
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let url = "https://x.example/";
    let names = homed(&limiter, "v", url, 5, 10);
    for name in names.iter().take(8) {
        limiter.acquire(&store, &clock, &id(name, url)).unwrap();
    }
    let ninth = id(&names[8], url);
    let ticket = limiter.acquire(&store, &clock, &ninth).unwrap();
    assert_eq!(
        limiter
            .observe_answer(&store, &ticket, br#"{"key":"k"}"#)
            .unwrap(),
        KeyVerdict::Verified
    );
    let home = codec::decode(&store.raw("hookgate/default/bucket/5").unwrap()).unwrap();
    assert!(home.redirects[0].permanent);
    clock.set(T + 100 * 86_400);
    for _ in 0..3 {
        assert!(limiter.acquire(&store, &clock, &ninth).unwrap().verified());
    }
    assert!(limiter.state(&store, &clock, &ninth).unwrap().verified);
    // A webhook verified with no entry anywhere whose home is full is placed behind a
    // permanent redirect too.
    for name in names.iter().take(8) {
        limiter.acquire(&store, &clock, &id(name, url)).unwrap();
    }
    let tenth = id(&names[9], url);
    let ticket = Ticket {
        name: tenth.name.into(),
        url: normalise_url(tenth.url),
        at: clock.now(),
        taken: None,
        verified: false,
        given_back: Cell::new(false),
    };
    limiter.record_verified(&store, &ticket).unwrap();
    assert!(limiter.state(&store, &clock, &tenth).unwrap().verified);
    let home = codec::decode(&store.raw("hookgate/default/bucket/5").unwrap()).unwrap();
    assert!(home.redirects.iter().all(|r| r.permanent));
    assert_eq!(home.redirects.len(), 2);
}
