//! The rolling hour: its edges, Retry-After, give-back, the clock, URL normalisation, the
//! configuration, and the counts for the gauge.

use super::*;

#[test]
fn config_defaults_and_validation_name_the_key() {
    let config: LimitConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, LimitConfig::default());
    assert_eq!(config.unverified_per_hour, 1);
    assert_eq!(config.key_field, "key");
    assert_eq!(config.max_tracked, 10_000);
    assert_eq!(config.namespace, "default");
    assert!(serde_json::from_str::<LimitConfig>(r#"{"per_hour": 1}"#).is_err());
    let full: LimitConfig = serde_json::from_str(
        r#"{"unverified_per_hour": 2, "verified_per_hour": 100, "keys": {"a": "k"},
            "default_key": "d", "key_field": "token",
            "verified": [{"name": "a", "url": "https://x.example/"}],
            "max_tracked": 16, "namespace": "team-a"}"#,
    )
    .unwrap();
    assert!(Limiter::new(&full).is_ok());

    type Change = Box<dyn Fn(&mut LimitConfig)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|c| c.unverified_per_hour = 0),
            "limit.unverified_per_hour:",
        ),
        (
            Box::new(|c| c.unverified_per_hour = 1001),
            "limit.unverified_per_hour:",
        ),
        (
            Box::new(|c| c.verified_per_hour = Some(0)),
            "limit.verified_per_hour:",
        ),
        (
            Box::new(|c| c.max_tracked = 0),
            "limit.max_tracked: must be 1..=1000000",
        ),
        (
            Box::new(|c| c.max_tracked = 1_000_001),
            "limit.max_tracked: must be 1..=1000000",
        ),
        (Box::new(|c| c.key_field.clear()), "limit.key_field:"),
        (
            Box::new(|c| {
                c.keys.insert("a".into(), String::new());
            }),
            "limit.keys.a:",
        ),
        (
            Box::new(|c| {
                c.keys.insert(String::new(), "k".into());
            }),
            "limit.keys:",
        ),
        (
            Box::new(|c| c.default_key = Some(String::new())),
            "limit.default_key:",
        ),
        (Box::new(|c| c.namespace = "a/b".into()), "limit.namespace:"),
        (Box::new(|c| c.namespace.clear()), "limit.namespace:"),
        (
            Box::new(|c| {
                c.verified.push(VerifiedWebhook {
                    name: "a".into(),
                    url: "nope".into(),
                })
            }),
            "limit.verified[0].url:",
        ),
        (
            Box::new(|c| {
                c.verified.push(VerifiedWebhook {
                    name: String::new(),
                    url: "https://a.example/".into(),
                })
            }),
            "limit.verified[0].name:",
        ),
    ];
    for (change, prefix) in cases {
        let mut config = LimitConfig::default();
        change(&mut config);
        let err = Limiter::new(&config).err().unwrap_or_default();
        assert!(
            err.starts_with(prefix),
            "{err:?} should start with {prefix:?}"
        );
    }
}

#[test]
fn rolling_window_edges() {
    let limiter = limiter(LimitConfig::default());
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    assert_eq!(
        limiter.acquire(&store, &clock, &HOOK).unwrap().taken(),
        Some(T)
    );
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3600);
    clock.set(T + 1);
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3599);
    clock.set(T + 3599);
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 1);
    let state = limiter.state(&store, &clock, &HOOK).unwrap();
    assert_eq!(
        state,
        LimitState {
            verified: false,
            sends_in_window: 1,
            allowed_per_hour: Some(1),
            retry_after: Some(1)
        }
    );
    clock.set(T + 3600);
    assert_eq!(
        limiter
            .state(&store, &clock, &HOOK)
            .unwrap()
            .sends_in_window,
        0
    );
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3600);
}

#[test]
fn retry_after_with_three_per_hour() {
    let limiter = limiter(LimitConfig {
        unverified_per_hour: 3,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    for offset in [0, 10, 20] {
        clock.set(T + offset);
        assert!(
            limiter.acquire(&store, &clock, &HOOK).is_ok(),
            "send at +{offset}"
        );
    }
    clock.set(T + 30);
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3570);
    let state = limiter.state(&store, &clock, &HOOK).unwrap();
    assert_eq!((state.sends_in_window, state.retry_after), (3, Some(3570)));
    clock.set(T + 3600);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    // Now +10, +20 and +3600 are in the window: the next place frees at +3610.
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 10);
    clock.set(T + 3610);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 10);
}

#[test]
fn give_back_restores_exactly_this_deliverys_send() {
    let limiter = limiter(LimitConfig {
        unverified_per_hour: 2,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let other = id("orders", "https://example.com/other");
    let first = limiter.acquire(&store, &clock, &HOOK).unwrap();
    let other_ticket = limiter.acquire(&store, &clock, &other).unwrap();
    clock.set(T + 100);
    let second = limiter.acquire(&store, &clock, &HOOK).unwrap();
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3500);

    limiter.give_back(&store, &second).unwrap();
    // Only the send at T+100 went: the one at T still counts, the other webhook is untouched.
    let state = limiter.state(&store, &clock, &HOOK).unwrap();
    assert_eq!(state.sends_in_window, 1);
    assert_eq!(
        limiter
            .state(&store, &clock, &other)
            .unwrap()
            .sends_in_window,
        1
    );
    // Giving the same ticket back twice gives back nothing more.
    let third = limiter.acquire(&store, &clock, &HOOK).unwrap();
    limiter.give_back(&store, &second).unwrap();
    assert_eq!(
        limiter
            .state(&store, &clock, &HOOK)
            .unwrap()
            .sends_in_window,
        2
    );
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3500);
    assert_eq!(third.taken(), Some(T + 100));

    limiter.give_back(&store, &first).unwrap();
    let state = limiter.state(&store, &clock, &HOOK).unwrap();
    assert_eq!((state.sends_in_window, state.retry_after), (1, None));
    limiter.give_back(&store, &other_ticket).unwrap();
    assert_eq!(
        limiter
            .state(&store, &clock, &other)
            .unwrap()
            .sends_in_window,
        0
    );
    // A ticket whose entry has since gone (expired and reused) gives back nothing and fails not.
    clock.set(T + 10_000);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    limiter.give_back(&store, &third).unwrap();
    assert_eq!(
        limiter
            .state(&store, &clock, &HOOK)
            .unwrap()
            .sends_in_window,
        1
    );
}

#[test]
fn verified_per_hour_limits_verified_webhooks() {
    let limiter = keyed(|c| c.verified_per_hour = Some(3));
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    limiter
        .observe_answer(&store, &ticket, br#"{"key": "s3cret"}"#)
        .unwrap();
    // The first send counts towards the verified allowance too.
    clock.set(T + 60);
    assert!(limiter.acquire(&store, &clock, &HOOK).unwrap().verified());
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3540);
    let state = limiter.state(&store, &clock, &HOOK).unwrap();
    assert_eq!(
        state,
        LimitState {
            verified: true,
            sends_in_window: 3,
            allowed_per_hour: Some(3),
            retry_after: Some(3540)
        }
    );
    clock.set(T + 3600);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
}

#[test]
fn url_normalisation_identifies_the_same_webhook() {
    let limiter = limiter(LimitConfig::default());
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    assert!(limiter
        .acquire(
            &store,
            &clock,
            &id("orders", "https://example.com/a/../hook#x")
        )
        .is_ok());
    for same in [
        "HTTPS://EXAMPLE.COM:443/hook",
        "https://example.com/hook#y",
        "https://example.com/./hook",
    ] {
        assert!(
            over(limiter.acquire(&store, &clock, &id("orders", same))) > 0,
            "{same}"
        );
    }
    for different in [
        "https://example.com/hook/",
        "https://example.com/hook?a=1",
        "http://example.com/hook",
    ] {
        assert!(
            limiter
                .acquire(&store, &clock, &id("orders", different))
                .is_ok(),
            "{different}"
        );
    }
    assert_eq!(normalise_url("not a url"), "not a url");
}

#[test]
fn clock_going_back_counts_recent_sends_and_drops_absurd_ones() {
    let limiter = limiter(LimitConfig::default());
    let store = prepared(&limiter);
    let clock = FakeClock::at(T + 100);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    clock.set(T);
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3700);
    clock.set(T + 3699);
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 1);
    clock.set(T + 3700);
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    // A send a day "in the future" is a clock error: it does not block.
    let other = id("other", HOOK.url);
    clock.set(T + 86_400);
    assert!(limiter.acquire(&store, &clock, &other).is_ok());
    clock.set(T);
    assert!(limiter.acquire(&store, &clock, &other).is_ok());
}

#[test]
fn tracked_counts_verified_and_unverified_with_a_send_in_the_window() {
    let limiter = keyed(|c| {
        c.max_tracked = 40;
        c.default_key = Some("k".into());
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    assert_eq!(limiter.tracked(&store, &clock).unwrap(), 0);
    let url = "https://x.example/";
    for i in 0..30 {
        let name = format!("n{i}");
        let ticket = limiter.acquire(&store, &clock, &id(&name, url)).unwrap();
        if i < 5 {
            limiter
                .observe_answer(&store, &ticket, br#"{"key":"k"}"#)
                .unwrap();
        }
        if (5..8).contains(&i) {
            // Given back: nothing counted, not tracked.
            limiter.give_back(&store, &ticket).unwrap();
        }
    }
    assert_eq!(limiter.tracked(&store, &clock).unwrap(), 27);
    clock.set(T + 3599);
    assert_eq!(limiter.tracked(&store, &clock).unwrap(), 27);
    clock.set(T + 3600);
    assert_eq!(limiter.tracked(&store, &clock).unwrap(), 5);
    store.down.store(true, Ordering::SeqCst);
    assert!(limiter.tracked(&store, &clock).is_err());
}

/// A URL given as already normalised (`Destination::url`) is tracked as it is; the same webhook
/// written otherwise, and normalised here, is the same entry.
#[test]
fn normalised_and_written_urls_are_one_webhook() {
    let limiter = limiter(LimitConfig::default());
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let written = id("orders", "HTTPS://Example.COM:443/a/../hook#frag");
    let tracked = normalise_url(written.url);
    assert_eq!(tracked, "https://example.com/hook");
    let normalised = WebhookId {
        name: "orders",
        url: &tracked,
        normalised: true,
    };
    let ticket = limiter.acquire(&store, &clock, &normalised).unwrap();
    assert_eq!(ticket.tracked_url(), tracked);
    over(limiter.acquire(&store, &clock, &written));
}
