//! The receiver's answer: `judge_receiver` (status, body, truncation), `judge_envoy_reply`, and
//! the verification key in the body (`Limiter::observe_answer`, on an in-memory store).
//!
//! Input: byte 0 picks the status (even: 200 + byte 1 % 100; odd: bytes 1..3 as a u16), byte 3
//! the options (bit 0 truncated, bits 1-2 the webhook, bit 3 a verified limit); the rest is the
//! answer body.
#![no_main]

use hookgate::answer::{judge_envoy_reply, judge_receiver};
use hookgate::error::{Delivered, Failure};
use hookgate::limit::{KeyVerdict, LimitConfig, Limiter, WebhookId};
use hookgate_fuzz::{json, FixedClock, MemStore, T};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// (webhook name, expected key): a string key, a numeric key, and a name with no key.
const HOOKS: [(&str, Option<&str>); 3] = [
    ("orders", Some("s3cret")),
    ("num", Some("12345")),
    ("other", None),
];
const URL: &str = "https://example.com/hook";

/// What the key in the answer should mean, judged with serde_json's Value (None: the oracle
/// cannot tell, e.g. nesting deeper than its recursion limit).
fn expected_verdict(body: &[u8], expected: &str) -> Option<KeyVerdict> {
    let value = match json(body) {
        Ok(Some(value)) => value,
        Ok(None) => return None,
        Err(_) => return Some(KeyVerdict::NoKey),
    };
    let object = match &value {
        Value::Object(o) => o,
        Value::Array(items) => match items.first() {
            Some(Value::Object(o)) => o,
            _ => return Some(KeyVerdict::NoKey),
        },
        _ => return Some(KeyVerdict::NoKey),
    };
    Some(match object.get("key") {
        None | Some(Value::Null) => KeyVerdict::NoKey,
        Some(Value::String(s)) if s == expected => KeyVerdict::Verified,
        // A number matches when its literal is the key; "12345" can only be written 12345.
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n.to_string() == expected) => {
            KeyVerdict::Verified
        }
        Some(_) => KeyVerdict::WrongKey,
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, body) = data.split_at(4);
    let status = if head[0] % 2 == 0 {
        200 + u16::from(head[1] % 100)
    } else {
        u16::from_le_bytes([head[1], head[2]])
    };
    let options = head[3];
    let truncated = (options & 1 == 1).then_some(512 * 1024);
    let (name, key) = HOOKS[usize::from((options >> 1) & 3) % HOOKS.len()];

    // The contract's judgement of the answer.
    match judge_receiver(status, body, truncated) {
        Ok(text) => {
            assert!((200..300).contains(&status));
            assert!(truncated.is_none());
            assert_eq!(text.as_bytes(), body, "the body must travel as received");
            assert!(!text.trim().is_empty());
            json(body).expect("judged JSON but is not");
        }
        Err(failure) => {
            assert!(
                matches!(
                    failure,
                    Failure::ReceiverStatus(_) | Failure::ReceiverNotJson(_)
                ),
                "{failure:?}"
            );
            assert_eq!(failure.delivered(), Delivered::Yes);
            if !(200..300).contains(&status) {
                assert_eq!(failure, Failure::ReceiverStatus(status));
            }
        }
    }

    // Envoy's own reply, with the body standing in for response.code_details.
    let reply = judge_envoy_reply(status, &String::from_utf8_lossy(body));
    assert!(matches!(reply.http_status(), 403 | 502 | 504), "{reply:?}");

    // The key, on a fresh one-bucket table.
    let mut config = LimitConfig {
        max_tracked: 8,
        ..LimitConfig::default()
    };
    config.keys.insert("orders".into(), "s3cret".into());
    config.keys.insert("num".into(), "12345".into());
    if options & 8 != 0 {
        config.verified_per_hour = Some(5);
    }
    let limiter = Limiter::new(&config).expect("limit config");
    let store = MemStore::default();
    limiter.prepare(&store).expect("prepare");
    let clock = FixedClock(T);
    let id = WebhookId {
        name,
        url: URL,
        normalised: false,
    };
    let ticket = limiter.acquire(&store, &clock, &id).expect("first send");
    let verdict = limiter
        .observe_answer(&store, &ticket, body)
        .expect("observe_answer on a healthy store");
    match key {
        None => assert_eq!(verdict, KeyVerdict::NoKey),
        Some(key) => {
            if let Some(expected) = expected_verdict(body, key) {
                assert_eq!(
                    verdict,
                    expected,
                    "key {key:?} in {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
    let state = limiter.state(&store, &clock, &id).expect("state");
    assert_eq!(state.verified, verdict == KeyVerdict::Verified, "{state:?}");
});
