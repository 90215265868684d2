#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

/// Shared data with the host's semantics: one CAS counter for all keys (starting at 1, never
/// 0); a CAS that differs from an existing key's fails; on a missing key any CAS succeeds; CAS
/// 0 means "no CAS"; no delete, no TTL; an empty value reads as (None, Some(cas)) like the SDK.
#[derive(Default)]
struct MemStore {
    inner: Mutex<MemInner>,
    down: AtomicBool,
    writes: AtomicUsize,
}

#[derive(Default)]
struct MemInner {
    map: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("host says no".into());
        }
        let inner = self.inner.lock().unwrap();
        Ok(match inner.map.get(key) {
            None => (None, None),
            Some((value, cas)) if value.is_empty() => (None, Some(*cas)),
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("host says no".into());
        }
        let mut inner = self.inner.lock().unwrap();
        if let (Some(wanted), Some((_, current))) = (cas, inner.map.get(key)) {
            if wanted != 0 && wanted != *current {
                return Ok(false);
            }
        }
        inner.last_cas = inner.last_cas.wrapping_add(1);
        if inner.last_cas == 0 {
            inner.last_cas = 1;
        }
        let next = inner.last_cas;
        inner.map.insert(key.to_string(), (value.to_vec(), next));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

impl MemStore {
    fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.inner
            .lock()
            .unwrap()
            .map
            .get(key)
            .map(|(v, _)| v.clone())
    }
    fn put_raw(&self, key: &str, value: &[u8]) {
        assert!(self.set(key, value, None).unwrap());
    }
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    fn keys(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

struct FakeClock(AtomicU64);

impl FakeClock {
    fn at(t: u64) -> Self {
        FakeClock(AtomicU64::new(t))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const T: u64 = 1_700_000_000;

fn id<'a>(name: &'a str, url: &'a str) -> WebhookId<'a> {
    WebhookId { name, url }
}

const HOOK: WebhookId<'static> = WebhookId {
    name: "orders",
    url: "https://example.com/hook",
};

fn limiter(config: LimitConfig) -> Limiter {
    Limiter::new(&config).unwrap()
}

fn keyed(extra: impl FnOnce(&mut LimitConfig)) -> Limiter {
    let mut config = LimitConfig::default();
    config.keys.insert("orders".into(), "s3cret".into());
    extra(&mut config);
    limiter(config)
}

fn prepared(limiter: &Limiter) -> MemStore {
    let store = MemStore::default();
    limiter.prepare(&store).unwrap();
    store
}

fn over(result: Result<Ticket, Failure>) -> u64 {
    match result {
        Err(Failure::OverLimit(retry)) => retry,
        other => panic!("expected OverLimit, got {other:?}"),
    }
}

fn unavailable_detail(result: Result<Ticket, Failure>) -> String {
    match result {
        Err(Failure::LimitUnavailable(detail)) => detail,
        other => panic!("expected LimitUnavailable, got {other:?}"),
    }
}

/// Webhook names whose (name, url) has the given home bucket.
fn names_in_bucket(limiter: &Limiter, url: &str, bucket: u32, count: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("hook-{i}"))
        .filter(|name| limiter.home_bucket(&Ident::new(&id(name, url))) == bucket)
        .take(count)
        .collect()
}

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
fn right_key_in_an_object_verifies_for_ever() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    assert!(!ticket.verified());
    let verdict = limiter
        .observe_answer(&store, &ticket, br#"{"status": "ok", "key": "s3cret"}"#)
        .unwrap();
    assert_eq!(verdict, KeyVerdict::Verified);
    for _ in 0..50 {
        let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
        assert!(ticket.verified());
        assert_eq!(ticket.taken(), None);
        // Answers of a verified webhook are not checked any more.
        let verdict = limiter
            .observe_answer(&store, &ticket, br#"{"key": "wrong"}"#)
            .unwrap();
        assert_eq!(verdict, KeyVerdict::NoKey);
    }
    clock.set(T + 1_000_000);
    let state = limiter.state(&store, &clock, &HOOK).unwrap();
    assert_eq!(
        state,
        LimitState {
            verified: true,
            sends_in_window: 0,
            allowed_per_hour: None,
            retry_after: None
        }
    );
    // The same name at another URL is another webhook, still limited.
    let elsewhere = id("orders", "https://example.com/elsewhere");
    assert!(limiter.acquire(&store, &clock, &elsewhere).is_ok());
    assert!(over(limiter.acquire(&store, &clock, &elsewhere)) > 0);
}

#[test]
fn verified_unlimited_sends_cost_no_write() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    limiter
        .observe_answer(&store, &ticket, br#"{"key":"s3cret"}"#)
        .unwrap();
    let writes = store.writes();
    for _ in 0..20 {
        let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
        limiter.give_back(&store, &ticket).unwrap();
    }
    assert_eq!(store.writes(), writes);
}

#[test]
fn key_in_the_first_element_of_an_array_answer() {
    let limiter = keyed(|_| {});
    let clock = FakeClock::at(T);
    let cases: [(&[u8], KeyVerdict); 5] = [
        (
            br#"[{"key": "s3cret"}, {"key": "other"}]"#,
            KeyVerdict::Verified,
        ),
        (br#"  [ {"key": "nope"} ]"#, KeyVerdict::WrongKey),
        (br#"[{"other": 1}, {"key": "s3cret"}]"#, KeyVerdict::NoKey),
        (br#"[]"#, KeyVerdict::NoKey),
        (br#"["s3cret"]"#, KeyVerdict::NoKey),
    ];
    for (body, expected) in cases {
        let store = prepared(&limiter);
        let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
        let verdict = limiter.observe_answer(&store, &ticket, body).unwrap();
        assert_eq!(verdict, expected, "{}", String::from_utf8_lossy(body));
        let verified = limiter.state(&store, &clock, &HOOK).unwrap().verified;
        assert_eq!(verified, expected == KeyVerdict::Verified);
    }
}

#[test]
fn key_values_strings_exact_numbers_by_literal_text() {
    let clock = FakeClock::at(T);
    let cases: [(&str, &[u8], KeyVerdict); 13] = [
        ("12345", br#"{"key": 12345}"#, KeyVerdict::Verified),
        ("12345", br#"{"key": "12345"}"#, KeyVerdict::Verified),
        ("1.50", br#"{"key": 1.50}"#, KeyVerdict::Verified),
        ("1.5", br#"{"key": 1.50}"#, KeyVerdict::WrongKey),
        ("-7", br#"{"key": -7}"#, KeyVerdict::Verified),
        ("12345", br#"{"key": 12346}"#, KeyVerdict::WrongKey),
        ("s3cret", br#"{"key": "S3CRET"}"#, KeyVerdict::WrongKey),
        ("s3cret", br#"{"key": "s3cret "}"#, KeyVerdict::WrongKey),
        ("s3cret", br#"{"key": "s3\u0063ret"}"#, KeyVerdict::Verified),
        ("true", br#"{"key": true}"#, KeyVerdict::WrongKey),
        (
            "s3cret",
            br#"{"key": {"key": "s3cret"}}"#,
            KeyVerdict::WrongKey,
        ),
        ("s3cret", br#"{"key": null}"#, KeyVerdict::NoKey),
        (
            "s3cret",
            br#"{"data": {"key": "s3cret"}}"#,
            KeyVerdict::NoKey,
        ),
    ];
    for (key, body, expected) in cases {
        let limiter = keyed(|c| {
            c.keys.insert("orders".into(), key.into());
        });
        let store = prepared(&limiter);
        let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
        let verdict = limiter.observe_answer(&store, &ticket, body).unwrap();
        assert_eq!(
            verdict,
            expected,
            "{key} / {}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn wrong_key_no_key_and_non_json_change_nothing() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    let bodies: [(&[u8], KeyVerdict); 6] = [
        (br#"{"key": "wrong"}"#, KeyVerdict::WrongKey),
        (br#"{"status": "ok"}"#, KeyVerdict::NoKey),
        (b"OK", KeyVerdict::NoKey),
        (b"", KeyVerdict::NoKey),
        (br#"{"key": "s3cret""#, KeyVerdict::NoKey),
        (b"\"s3cret\"", KeyVerdict::NoKey),
    ];
    let writes = store.writes();
    for (body, expected) in bodies {
        assert_eq!(
            limiter.observe_answer(&store, &ticket, body).unwrap(),
            expected
        );
    }
    assert_eq!(store.writes(), writes);
    assert!(!limiter.state(&store, &clock, &HOOK).unwrap().verified);
    assert!(over(limiter.acquire(&store, &clock, &HOOK)) > 0);
}

#[test]
fn no_configured_key_means_no_verification_and_default_key_applies() {
    let limiter = keyed(|_| {});
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let unknown = id("invoices", "https://example.com/hook");
    let ticket = limiter.acquire(&store, &clock, &unknown).unwrap();
    let verdict = limiter
        .observe_answer(&store, &ticket, br#"{"key": "s3cret"}"#)
        .unwrap();
    assert_eq!(verdict, KeyVerdict::NoKey);
    assert!(!limiter.state(&store, &clock, &unknown).unwrap().verified);

    let limiter = keyed(|c| {
        c.default_key = Some("fallback".into());
        c.key_field = "token".into();
    });
    let store = prepared(&limiter);
    let ticket = limiter.acquire(&store, &clock, &unknown).unwrap();
    assert_eq!(
        limiter
            .observe_answer(&store, &ticket, br#"{"key": "fallback"}"#)
            .unwrap(),
        KeyVerdict::NoKey
    );
    assert_eq!(
        limiter
            .observe_answer(&store, &ticket, br#"{"token": "s3cret"}"#)
            .unwrap(),
        KeyVerdict::WrongKey,
        "a name in keys uses its own key, not the default"
    );
    assert_eq!(
        limiter
            .observe_answer(&store, &ticket, br#"{"token": "fallback"}"#)
            .unwrap(),
        KeyVerdict::Verified
    );
    // "orders" has its own key: the default does not verify it.
    let ticket = limiter.acquire(&store, &clock, &HOOK).unwrap();
    assert_eq!(
        limiter
            .observe_answer(&store, &ticket, br#"{"token": "fallback"}"#)
            .unwrap(),
        KeyVerdict::WrongKey
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
fn pre_verified_from_config_needs_no_place() {
    let limiter = limiter(LimitConfig {
        max_tracked: 1,
        verified: vec![VerifiedWebhook {
            name: "orders".into(),
            url: "HTTPS://Example.COM:443/hook#section".into(),
        }],
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    // The only place is taken by another webhook ...
    assert!(limiter
        .acquire(&store, &clock, &id("x", "https://x.example/"))
        .is_ok());
    // ... yet the pre-verified one (its URL written differently) sends without limit.
    for url in ["https://example.com/hook", "https://EXAMPLE.com/hook#other"] {
        for _ in 0..5 {
            let ticket = limiter.acquire(&store, &clock, &id("orders", url)).unwrap();
            assert!(ticket.verified());
            assert_eq!(ticket.tracked_url(), "https://example.com/hook");
        }
    }
    assert!(limiter.state(&store, &clock, &HOOK).unwrap().verified);
    // The same URL under another name is not pre-verified.
    let renamed = id("refunds", "https://example.com/hook");
    assert!(matches!(
        limiter.acquire(&store, &clock, &renamed),
        Err(Failure::LimitUnavailable(_))
    ));

    // With verified_per_hour it is tracked (as verified) to count its sends.
    let limiter = limiter_with_pre_verified_limit();
    let store = prepared(&limiter);
    assert!(limiter.acquire(&store, &clock, &HOOK).unwrap().verified());
    assert!(limiter.acquire(&store, &clock, &HOOK).is_ok());
    assert_eq!(over(limiter.acquire(&store, &clock, &HOOK)), 3600);
}

fn limiter_with_pre_verified_limit() -> Limiter {
    limiter(LimitConfig {
        verified_per_hour: Some(2),
        verified: vec![VerifiedWebhook {
            name: HOOK.name.into(),
            url: HOOK.url.into(),
        }],
        ..LimitConfig::default()
    })
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
    assert!(bucket1.iter().any(|e| e.name == names[8]));
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
    assert_eq!(bucket0.len(), 8);
    assert!(bucket0.iter().all(|e| e.verified));
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
    let entries = codec::decode(&store.raw("hookgate/default/bucket/0").unwrap()).unwrap();
    assert_eq!(entries.len(), 3);
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
fn hash_is_fnv1a_64_and_stable() {
    assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
    // Pinned: a change here moves every webhook to another bucket after an upgrade.
    let limiter = limiter(LimitConfig::default());
    assert_eq!(limiter.home_bucket(&Ident::new(&HOOK)), pinned_home());
}

fn pinned_home() -> u32 {
    let hash = fnv1a64(&[&6u64.to_le_bytes(), b"orders", b"https://example.com/hook"]);
    (hash % 1250) as u32
}

#[test]
fn concurrent_acquires_of_a_fresh_webhook_allow_exactly_the_limit() {
    for per_hour in [1u32, 3] {
        for prepare_first in [true, false] {
            let limiter = limiter(LimitConfig {
                unverified_per_hour: per_hour,
                ..LimitConfig::default()
            });
            let store = MemStore::default();
            if prepare_first {
                limiter.prepare(&store).unwrap();
            }
            let clock = FakeClock::at(T);
            let allowed = AtomicUsize::new(0);
            let refused = AtomicUsize::new(0);
            let barrier = Barrier::new(8);
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        barrier.wait();
                        for _ in 0..200 {
                            match limiter.acquire(&store, &clock, &HOOK) {
                                Ok(_) => allowed.fetch_add(1, Ordering::SeqCst),
                                Err(Failure::OverLimit(3600)) => {
                                    refused.fetch_add(1, Ordering::SeqCst)
                                }
                                Err(other) => panic!("unexpected {other:?}"),
                            };
                        }
                    });
                }
            });
            assert_eq!(allowed.load(Ordering::SeqCst), per_hour as usize);
            assert_eq!(refused.load(Ordering::SeqCst), 1600 - per_hour as usize);
        }
    }
}

#[test]
fn concurrent_acquires_and_give_backs_in_one_bucket_lose_nothing() {
    let limiter = limiter(LimitConfig {
        unverified_per_hour: 2,
        max_tracked: 8,
        ..LimitConfig::default()
    });
    let store = prepared(&limiter);
    let clock = FakeClock::at(T);
    let names: Vec<String> = (0..8).map(|i| format!("hook-{i}")).collect();
    std::thread::scope(|scope| {
        for name in &names {
            let (limiter, store, clock) = (&limiter, &store, &clock);
            scope.spawn(move || {
                let hook = id(name, "https://x.example/");
                for _ in 0..100 {
                    let a = limiter.acquire(store, clock, &hook).unwrap();
                    let b = limiter.acquire(store, clock, &hook).unwrap();
                    assert!(over(limiter.acquire(store, clock, &hook)) > 0);
                    limiter.give_back(store, &a).unwrap();
                    limiter.give_back(store, &b).unwrap();
                }
                limiter.acquire(store, clock, &hook).unwrap();
            });
        }
    });
    for name in &names {
        let state = limiter
            .state(&store, &clock, &id(name, "https://x.example/"))
            .unwrap();
        assert_eq!(state.sends_in_window, 1, "{name}");
    }
}

#[test]
fn prepare_running_with_acquires_never_loses_a_send() {
    for _ in 0..20 {
        let limiter = limiter(LimitConfig {
            max_tracked: 400,
            ..LimitConfig::default()
        });
        let store = MemStore::default();
        let clock = FakeClock::at(T);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    limiter.prepare(&store).unwrap();
                }
            });
            let workers: Vec<_> = (0..4)
                .map(|worker| {
                    let (limiter, store, clock) = (&limiter, &store, &clock);
                    scope.spawn(move || {
                        for i in 0..12 {
                            let name = format!("w{worker}-{i}");
                            let hook = id(&name, "https://x.example/");
                            limiter.acquire(store, clock, &hook).unwrap();
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        });
        for worker in 0..4 {
            for i in 0..12 {
                let name = format!("w{worker}-{i}");
                let hook = id(&name, "https://x.example/");
                let state = limiter.state(&store, &clock, &hook).unwrap();
                assert_eq!(state.sends_in_window, 1, "{name}");
                assert!(over(limiter.acquire(&store, &clock, &hook)) > 0, "{name}");
            }
        }
    }
}

/// Runs `during` once, right after prepare has obtained its CAS value and before it creates the
/// buckets: the worst interleaving for create-if-absent.
type During<'a> = Box<dyn FnOnce(&MemStore) + 'a>;

struct Interleave<'a> {
    inner: &'a MemStore,
    during: Mutex<Option<During<'a>>>,
}

impl SharedStore for Interleave<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        let result = self.inner.get(key);
        if key.ends_with("/cas-probe") {
            if let Some(during) = self.during.lock().unwrap().take() {
                during(self.inner);
            }
        }
        result
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        self.inner.set(key, value, cas)
    }
}

#[test]
fn prepare_never_overwrites_a_bucket_created_after_it_took_its_cas() {
    let limiter = limiter(LimitConfig::default());
    let store = MemStore::default();
    let clock = FakeClock::at(T);
    let interleave = Interleave {
        inner: &store,
        during: Mutex::new(Some(Box::new(|inner: &MemStore| {
            assert!(limiter.acquire(inner, &clock, &HOOK).is_ok());
        }))),
    };
    limiter.prepare(&interleave).unwrap();
    assert!(
        interleave.during.lock().unwrap().is_none(),
        "the acquire ran"
    );
    assert_eq!(
        limiter
            .state(&store, &clock, &HOOK)
            .unwrap()
            .sends_in_window,
        1
    );
    assert!(over(limiter.acquire(&store, &clock, &HOOK)) > 0);
}

#[test]
fn hostile_answers_are_no_key_without_panicking() {
    let deep_array = "[".repeat(100_000);
    let deep_object = r#"{"a":"#.repeat(50_000);
    let deep_first = format!(
        r#"[{{"key": {}1{}}}]"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let bodies: [&[u8]; 6] = [
        deep_array.as_bytes(),
        deep_object.as_bytes(),
        deep_first.as_bytes(),
        b"{\"key\": \"s3cret\xff\"}",
        b"\xef\xbb\xbf{\"key\": \"s3cret\"}",
        b"{\"key\": \"s3cret\"} trailing",
    ];
    for body in bodies {
        let verdict = judge_answer(body, "key", "s3cret");
        assert!(matches!(verdict, Answer::Absent | Answer::Mismatch));
    }
    assert!(matches!(
        judge_answer(br#"{"key": "s3cret", "key": "other"}"#, "key", "s3cret"),
        Answer::Mismatch
    ));
}
