//! Refusals through the recording host: the engine's request refused (name, address, caller,
//! limit, internal failure) with the answer table's status and code.
use super::*;

#[test]
fn refusals_are_local_replies_with_the_tables_status_and_code() {
    let big = format!(
        r#"{{"webhook":{{"name":"orders","url":"{URL}"}},"pad":"{}"}}"#,
        "x".repeat(600)
    );
    type Row<'a> = (&'a str, String, &'a [(&'a str, &'a str)], u32, &'a str);
    let rows: [Row; 9] = [
        (
            "{}",
            event("orders", "http://10.0.0.1/hook"),
            &[],
            403,
            r#"[{"status":false,"message":"Incorrect url ip","code":11110114}]"#,
        ),
        ("{}", "not json".into(), &[], 400, ENVELOPE_QUERY),
        ("{}", event("bad name!", URL), &[], 400, ENVELOPE_QUERY),
        (
            "{}",
            r#"{"webhook":{"name":"orders"}}"#.into(),
            &[],
            400,
            ENVELOPE_QUERY,
        ),
        (r#"{"max_event_bytes":500}"#, big, &[], 413, ENVELOPE_QUERY),
        (
            "{}",
            event("orders", URL),
            &[(":method", "PUT")],
            405,
            ENVELOPE_QUERY,
        ),
        (
            "{}",
            event("orders", URL),
            &[("content-type", "text/plain")],
            415,
            ENVELOPE_QUERY,
        ),
        (
            r#"{"caller_token":{"header":"x-token","token":"0123456789abcdef"}}"#,
            event("orders", URL),
            &[("x-token", "0123456789abcdeX")],
            403,
            ENVELOPE_QUERY,
        ),
        (
            r#"{"caller_token":{"header":"x-token","token":"0123456789abcdef"}}"#,
            event("orders", URL),
            &[],
            403,
            ENVELOPE_QUERY,
        ),
    ];
    for (config, body, extra, status, envelope) in rows {
        let host = FakeHost::at(T);
        let (_, flow) = post_with(&host, &settings(config), &body, extra);
        assert_eq!(flow, Flow::Pause, "{config} {body} {extra:?}");
        let answer = host.answer();
        assert!(answer.local);
        assert_answer(&answer, status, "no", envelope);
        assert_eq!(host.header(":hookgate-replied").as_deref(), Some("1"));
        assert_eq!(host.counter("hookgate.sent"), 0);
        assert!(host.dispatched.borrow().is_empty());
    }
}

#[test]
fn the_hourly_limit_refuses_with_retry_after_and_the_limit_state_fails_closed() {
    let host = FakeHost::at(T);
    let settings = settings("{}");
    let (mut first, _) = post(&host, &settings, &event("orders", URL));
    respond(&mut first, &host, 200, "via_upstream", "{}");
    host.now.set(T + 60);
    let (_, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    let answer = host.answer();
    assert_answer(
        &answer,
        429,
        "no",
        r#"[{"status":false,"message":"The request did not pass code verification","code":11110113}]"#,
    );
    assert_eq!(answer.header("retry-after"), Some("3540"));
    // The store fails: 503, nothing sent.
    let host = FakeHost::at(T);
    host.store.down.set(true);
    let (_, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    assert_answer(&host.answer(), 503, "no", ENVELOPE_QUERY);
    assert_eq!(host.counter("hookgate.sent"), 0);
}

#[test]
fn an_internal_failure_is_500_and_a_failed_rewrite_gives_the_send_back() {
    let host = FakeHost::at(T);
    let mut delivery = Delivery::new(None);
    *host.request_headers.borrow_mut() = vec![(":method".into(), "POST".into())];
    assert_eq!(delivery.on_request_headers(&host, false), Flow::Pause);
    assert_answer(&host.answer(), 500, "no", ENVELOPE_QUERY);

    let host = FakeHost::at(T);
    let settings = settings("{}");
    host.failing.borrow_mut().insert("set_request_body", 2);
    let (_, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    let answer = host.answer();
    assert_answer(&answer, 500, "no", ENVELOPE_QUERY);
    assert_eq!(
        answer.header("x-hookgate-detail"),
        Some("internal failure: request rewrite failed (2)")
    );
    host.failing.borrow_mut().clear();
    let (_, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Continue, "the send was given back");
}

#[test]
fn an_address_envoys_rbac_refused_after_dns_is_named_with_its_range() {
    let host = FakeHost::at(T);
    let settings = settings("{}");
    let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
    *host.upstream_address.borrow_mut() = Some("10.1.2.3:443".into());
    let details = "rbac_access_denied_matched_policy[refused-destinations]";
    respond(&mut delivery, &host, 403, details, "");
    let answer = host.answer();
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.header("x-hookgate-detail"),
        Some("destination blocked: resolved address 10.1.2.3 is in 10.0.0.0/8 (private), refused by Envoy's destination policy")
    );
}

#[test]
fn a_caller_outside_the_configured_networks_is_refused_before_its_body() {
    let host = FakeHost::at(T);
    *host.source.borrow_mut() = "192.0.2.7:50000".into();
    let (_, flow) = post(&host, &settings("{}"), &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    let answer = host.answer();
    assert_answer(&answer, 403, "no", ENVELOPE_QUERY);
    assert_eq!(
        answer.header("x-hookgate-detail"),
        Some("caller refused: source 192.0.2.7 is not in the configured callers")
    );
    assert!(!host.calls.borrow().contains(&"request_body"));
}
