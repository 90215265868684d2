//! How Envoy hands the callbacks over: answers before the event is read, trailers, answers in
//! chunks, an engine that resets.
use super::*;

#[test]
fn envoy_answering_before_the_event_is_read_still_gets_an_envelope() {
    for (details, status, envelope) in [
        (
            "rbac_access_denied_matched_policy[refused-callers]",
            403,
            ENVELOPE_QUERY,
        ),
        ("request_payload_too_large", 413, ENVELOPE_QUERY),
        ("request_overall_timeout", 408, ENVELOPE_QUERY),
        ("stream_idle_timeout", 408, ENVELOPE_QUERY),
        ("something_else", 500, ENVELOPE_QUERY),
    ] {
        let host = FakeHost::at(T);
        let settings = settings("{}");
        *host.request_headers.borrow_mut() = vec![
            (":method".into(), "POST".into()),
            ("content-type".into(), "application/json".into()),
        ];
        let mut delivery = Delivery::new(Some(settings));
        assert_eq!(delivery.on_request_headers(&host, false), Flow::Pause);
        *host.response_headers.borrow_mut() = vec![(":status".into(), "403".into())];
        *host.code_details.borrow_mut() = Some(details.into());
        // No body: the envelope goes as a local reply.
        assert_eq!(delivery.on_response_headers(&host, true), Flow::Pause);
        assert_answer(&host.answer(), status, "no", envelope);
    }
}

#[test]
fn a_body_ending_in_trailers_is_forwarded_and_the_trailers_dropped() {
    let host = FakeHost::at(T);
    let settings = settings("{}");
    let body = event("orders", URL);
    *host.request_headers.borrow_mut() = vec![
        (":method".into(), "POST".into()),
        ("content-type".into(), "application/json".into()),
    ];
    let mut delivery = Delivery::new(Some(settings));
    assert_eq!(delivery.on_request_headers(&host, false), Flow::Pause);
    *host.request_body.borrow_mut() = body.as_bytes().to_vec();
    assert_eq!(
        delivery.on_request_body(&host, body.len(), false),
        Flow::Pause
    );
    assert_eq!(delivery.on_request_trailers(&host), Flow::Continue);
    assert!(host.trailers_removed.get());
    assert_eq!(
        host.header(":authority").as_deref(),
        Some("receiver.example:443")
    );
}

#[test]
fn a_large_answer_is_moved_out_chunk_by_chunk_and_judged_whole() {
    let host = FakeHost::at(T);
    let settings = settings(r#"{"max_response_bytes":10}"#);
    let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    assert_eq!(delivery.on_response_headers(&host, false), Flow::Pause);
    for chunk in [r#"{"a":"#, r#""bcdefgh"}"#] {
        *host.response_body.borrow_mut() = chunk.as_bytes().to_vec();
        let end = chunk.ends_with('}');
        let flow = delivery.on_response_body(&host, chunk.len(), end);
        if !end {
            assert_eq!(flow, Flow::Pause);
            assert!(host.response_body.borrow().is_empty(), "chunk moved out");
        }
    }
    assert_answer(
        &host.answer(),
        200,
        "yes",
        r#"[{"status":false,"message":"Invalid response format. Expects json!","code":11110112}]"#,
    );
}

#[test]
fn an_answer_in_several_chunks_is_joined_in_order() {
    let host = FakeHost::at(T);
    let settings = settings("{}");
    let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    assert_eq!(delivery.on_response_headers(&host, false), Flow::Pause);
    let chunks = [r#"{"ok":"#, r#"true,"#, r#""n":1}"#];
    for (i, chunk) in chunks.iter().enumerate() {
        *host.response_body.borrow_mut() = chunk.as_bytes().to_vec();
        delivery.on_response_body(&host, chunk.len(), i == chunks.len() - 1);
    }
    assert_answer(
        &host.answer(),
        200,
        "yes",
        r#"[{"status":true,"message":"{\"ok\":true,\"n\":1}","code":1}]"#,
    );
}

#[test]
fn an_engine_that_resets_is_counted_once_and_recorded_without_a_code() {
    // Gone mid-body: nothing sent, no answer.
    let host = FakeHost::at(T);
    let settings = settings("{}");
    *host.request_headers.borrow_mut() = vec![
        (":method".into(), "POST".into()),
        ("content-type".into(), "application/json".into()),
    ];
    let mut delivery = Delivery::new(Some(settings.clone()));
    delivery.on_request_headers(&host, false);
    delivery.on_request_body(&host, 10, false);
    delivery.on_log(&host);
    assert_eq!(host.counter("hookgate.outcome.engine_reset"), 1);
    assert_eq!(
        host.decision.borrow().as_deref(),
        Some(
            "webhook=- host=- outcome=engine_reset detail=\"the engine reset its request \
             before its event was complete: nothing was sent\""
        )
    );
    assert!(host
        .counters
        .borrow()
        .keys()
        .all(|k| !k.starts_with("hookgate.code.")));
    // Gone while the webhook was out.
    let host = FakeHost::at(T);
    let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
    delivery.on_log(&host);
    let record = host.decision.borrow().clone().unwrap();
    assert!(
        record.ends_with("after the webhook was sent: it may have arrived\""),
        "{record}"
    );
    // Answered: the log callback adds nothing.
    let host = FakeHost::at(T);
    let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
    respond(&mut delivery, &host, 200, "via_upstream", "{}");
    delivery.on_log(&host);
    assert_eq!(host.counter("hookgate.outcome.engine_reset"), 0);
    assert_eq!(host.counter("hookgate.outcome.delivered"), 1);
}
