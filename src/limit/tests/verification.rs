//! Verification by key: where the key is found in an answer, what matches, and what a verified
//! or pre-verified webhook costs.

use super::*;
use crate::limit::key::{judge_answer, Answer};

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
