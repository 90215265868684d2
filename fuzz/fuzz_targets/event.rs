//! `event::parse`: the engine's body. Any bytes: never a panic; a 400 failure or a webhook whose
//! payload is a JSON array of the documented webhook objects.
#![no_main]

use hookgate::event::{check_name, parse};
use hookgate_fuzz::json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: u64 = 1_641_286_959;

fuzz_target!(|body: &[u8]| {
    let event = match parse(body, &NOW, 64) {
        Ok(event) => event,
        Err(failure) => {
            assert_eq!(failure.http_status(), 400, "{failure:?}");
            return;
        }
    };
    // Only JSON is accepted (the body is read by hand, as strictly as serde_json reads it).
    assert!(json(body).is_ok(), "accepted a body that is not JSON");
    // Acceptance does not depend on the clock; the payload is the same apart from the defaults.
    let late = parse(body, &u64::MAX, 64).expect("accepted at NOW but refused at u64::MAX");
    assert_eq!(late.webhook, event.webhook);
    assert_eq!(check_name(&event.webhook.name, 64), Ok(()));

    let payload = &event.payload;
    assert_eq!(payload.first(), Some(&b'['));
    assert_eq!(payload.last(), Some(&b']'));
    assert!(std::str::from_utf8(payload).is_ok(), "payload is not UTF-8");
    let Some(value) = json(payload).expect("payload is not valid JSON") else {
        return; // deeper than the oracle reads
    };
    assert!(json(&late.payload)
        .expect("late payload is not JSON")
        .is_some());
    let items = value.as_array().expect("payload is not an array");
    assert!(!items.is_empty());
    // One webhook object per event sent.
    if let Ok(Some(sent)) = json(body) {
        let sent = sent.as_array().map_or(1, Vec::len);
        assert_eq!(items.len(), sent);
    }
    for item in items {
        let object = item.as_object().expect("payload item is not an object");
        assert!(
            !object.contains_key("webhook"),
            "webhook leaked into the payload"
        );
        if let Some(kind) = object.get("event") {
            assert!(kind == "unsubscribe" || kind == "spam", "{kind}");
            assert!(object.contains_key("source") && object.contains_key("timestamp"));
            continue;
        }
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = vec![
            "automation_id",
            "title",
            "execution_date",
            "email",
            "phone",
            "variables",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        for key in ["automation_id", "title", "execution_date", "email", "phone"] {
            assert!(object.get(key).is_some_and(Value::is_string), "{key}");
        }
        let variables = object
            .get("variables")
            .and_then(Value::as_array)
            .expect("variables is not an array");
        for variable in variables {
            let one = variable.as_object().expect("variable is not an object");
            assert!(one.len() <= 1, "variable with several keys");
        }
    }
});
