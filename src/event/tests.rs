use super::*;

const NOW: u64 = 1_641_286_959; // 2022-01-04 09:02:39

fn out(body: &str) -> String {
    String::from_utf8(parse(body.as_bytes(), &NOW, 64).unwrap().payload).unwrap()
}

fn refused(body: &str) -> Failure {
    parse(body.as_bytes(), &NOW, 64).unwrap_err()
}

#[test]
fn the_documents_automation_example_round_trips() {
    let body = r#"{"webhook":{"name":"LeadCalled3","url":"https://crm.example.com/hooks/sendpulse"},
        "automation_id":"123456789","title":"New Automation","execution_date":"2022-01-04 09:02:39",
        "email":"example@example.com","phone":"+380631234567","variables":[{"name1":"value1"},{"name2":"value2"}]}"#;
    let event = parse(body.as_bytes(), &0, 64).unwrap();
    assert_eq!(
        event.webhook,
        Webhook {
            name: "LeadCalled3".into(),
            url: "https://crm.example.com/hooks/sendpulse".into()
        }
    );
    assert_eq!(
        String::from_utf8(event.payload).unwrap(),
        r#"[{"automation_id":"123456789","title":"New Automation","execution_date":"2022-01-04 09:02:39","email":"example@example.com","phone":"+380631234567","variables":[{"name1":"value1"},{"name2":"value2"}]}]"#
    );
}

#[test]
fn defaults_and_conversions() {
    let body = r#"{"phone":null,"variables":{"a":1,"b":{"c":[true]}},"automation_id":42,"webhook":{"url":"http://x.example/","name":"A1"}}"#;
    assert_eq!(
        out(body),
        r#"[{"automation_id":"42","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"","variables":[{"a":1},{"b":{"c":[true]}}]}]"#
    );
}

#[test]
fn a_number_phone_is_its_string_and_a_null_email_is_empty() {
    let body = r#"{"webhook":{"name":"A1","url":"http://x.example/"},"automation_id":"1","email":null,"phone":380631234567}"#;
    assert_eq!(
        out(body),
        r#"[{"automation_id":"1","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"380631234567","variables":[]}]"#
    );
}

#[test]
fn the_documents_event_examples_come_out_identical() {
    let spam = r#"{"timestamp":1496827422,"event":"spam","task_id":3668141,"email":"john.doe@sendpulse.com","source":"automation360","automation_id":"123456789"}"#;
    let unsubscribe = r#"{"task_id":"3668141","timestamp":"1496827872","from_all":1,"email":"john.doe@sendpulse.com","reason":null,"book_id":490686,"event":"unsubscribe","categories":"","source":"automation360","automation_id":"123456789"}"#;
    for event in [spam, unsubscribe] {
        let with_webhook = format!(
            "{},\"webhook\":{{\"name\":\"Unsub1\",\"url\":\"https://crm.example.com/\"}}}}",
            &event[..event.len() - 1]
        );
        assert_eq!(out(&with_webhook), format!("[{event}]"));
    }
}

#[test]
fn events_get_source_and_timestamp_when_absent() {
    let body =
        r#"{"webhook":{"name":"S","url":"https://x.example/"},"event":"spam","email":"a@b.c"}"#;
    assert_eq!(
        out(body),
        r#"[{"event":"spam","email":"a@b.c","source":"automation360","timestamp":1641286959}]"#
    );
}

#[test]
fn an_array_of_events_goes_as_one_delivery() {
    let body = r#"[{"webhook":{"name":"S","url":"https://x.example/"},"automation_id":"1"},{"automation_id":"2","variables":[]}]"#;
    let event = parse(body.as_bytes(), &NOW, 64).unwrap();
    assert_eq!(event.webhook.name, "S");
    assert_eq!(
        String::from_utf8(event.payload).unwrap(),
        r#"[{"automation_id":"1","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"","variables":[]},{"automation_id":"2","title":"","execution_date":"2022-01-04 09:02:39","email":"","phone":"","variables":[]}]"#
    );
}

#[test]
fn wrong_events_are_refused_with_400() {
    let bad = [
        "",
        "not json",
        "{",
        "[]",
        "3",
        r#"{"automation_id":"1"}"#,
        r#"{"webhook":{"name":"A"},"automation_id":"1"}"#,
        r#"{"webhook":"x","automation_id":"1"}"#,
        r#"{"webhook":{"name":"A","url":"u"}}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":true}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","title":5}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":{}}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":5}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":-5.5e3}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":true}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":["a@b.c"]}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","phone":true}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","phone":{}}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":"x"}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":[{"a":1,"b":2}]}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":[{}]}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","variables":[1]}"#,
        r#"{"webhook":{"name":"A","url":"u"},"event":"open"}"#,
        r#"{"webhook":{"name":"A","url":"u"},"event":1}"#,
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","automation_id":"2"}"#,
        r#"[{"webhook":{"name":"A","url":"u"},"automation_id":"1"},{"webhook":{"name":"B","url":"u"},"automation_id":"1"}]"#,
        r#"[{"webhook":{"name":"A","url":"u"},"automation_id":"1"},7]"#,
    ];
    for body in bad {
        let failure = refused(body);
        assert_eq!(failure.http_status(), 400, "{body}: {failure:?}");
        assert_eq!(failure.code().number(), 21111011, "{body}");
    }
}

#[test]
fn names_are_latin_letters_and_digits_only() {
    for good in ["A", "LeadCalled3", "z9", &"a".repeat(64)] {
        assert_eq!(check_name(good, 64), Ok(()), "{good}");
    }
    for bad in [
        "",
        "Lead Called",
        "Lead-1",
        "Лид",
        "naïve",
        "a_b",
        "a\u{0}",
        "１",
        &"a".repeat(65),
    ] {
        assert!(
            matches!(check_name(bad, 64), Err(Failure::InvalidName(_))),
            "{bad}"
        );
    }
    let body = r#"{"webhook":{"name":"bad name","url":"https://x.example/"},"automation_id":"1"}"#;
    assert!(matches!(refused(body), Failure::InvalidName(_)));
}

#[test]
fn details_never_echo_values() {
    let body = r#"{"webhook":{"name":"A","url":"u"},"automation_id":"1","email":{"secret@x":1}}"#;
    assert!(!refused(body).to_string().contains("secret"));
    assert!(!refused("{\"secret@x\" 1}").to_string().contains("secret"));
}

/// Found by fuzzing (fuzz target `event`, RELIABILITY.md): a number beyond f64, such as
/// `1E22490687`, is valid JSON (RFC 8259 sets no range). It is accepted and travels as
/// written, and the payload stays valid JSON; only a reader into f64 would refuse it.
#[test]
fn numbers_beyond_f64_travel_as_written() {
    let event = r#"{"reason":null,"book_id": 1E22490687
        ,"event":"unsubscribe","webhook":{"name":"Unsub1","url":"http://x.example/"}}"#;
    let sent = out(event);
    assert_eq!(
        sent,
        r#"[{"reason":null,"book_id":1E22490687,"event":"unsubscribe","source":"automation360","timestamp":1641286959}]"#
    );
    let automation =
        r#"{"webhook":{"name":"A","url":"u"},"automation_id":1e400,"variables":{"v":-1e400}}"#;
    let sent_too = out(automation);
    assert!(
        sent_too.contains(r#""automation_id":"1e400""#),
        "{sent_too}"
    );
    assert!(sent_too.contains(r#"[{"v":-1e400}]"#), "{sent_too}");
    for payload in [sent, sent_too] {
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(&payload).is_ok());
    }
}
