//! The delivery driven through a recording host, callback by callback as Envoy calls them:
//! every row of the README's answer table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::fake::{Answer, FakeHost};
use super::{Delivery, Flow};
use crate::config::Settings;
use std::rc::Rc;

mod refusals;
mod streams;

pub(super) const T: u64 = 1_700_000_000;
pub(super) const URL: &str = "https://receiver.example/hook";
const ENVELOPE_FAILED: &str =
    r#"[{"status":false,"message":"The request failed","code":11110111}]"#;
const ENVELOPE_QUERY: &str =
    r#"[{"status":false,"message":"Error during query execution","code":21111011}]"#;

pub(super) fn settings(json: &str) -> Rc<Settings> {
    Rc::new(Settings::parse(json.as_bytes()).unwrap())
}

pub(super) fn event(name: &str, url: &str) -> String {
    format!(
        r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","title":"t","execution_date":"2022-01-04 09:02:39","email":"a@example.com","phone":"+380631234567","variables":[]}}"#
    )
}

/// The engine's request: headers as Envoy gives them, then the whole body in one callback.
pub(super) fn post_with(
    host: &FakeHost,
    settings: &Rc<Settings>,
    body: &str,
    extra: &[(&str, &str)],
) -> (Delivery, Flow) {
    *host.local_reply.borrow_mut() = None;
    let mut headers = vec![
        (":method", "POST".to_string()),
        (":path", "/".to_string()),
        (":authority", "gw".to_string()),
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
    ];
    // A header given in `extra` replaces the default one.
    headers.retain(|(k, _)| !extra.iter().any(|(name, _)| name == k));
    headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    *host.request_headers.borrow_mut() = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut delivery = Delivery::new(Some(settings.clone()));
    let flow = delivery.on_request_headers(host, false);
    if host.local_reply.borrow().is_some() {
        // Refused on the headers: Envoy calls nothing more for the request.
        return (delivery, flow);
    }
    *host.request_body.borrow_mut() = body.as_bytes().to_vec();
    let flow = delivery.on_request_body(host, body.len(), true);
    (delivery, flow)
}

pub(super) fn post(host: &FakeHost, settings: &Rc<Settings>, body: &str) -> (Delivery, Flow) {
    post_with(host, settings, body, &[])
}

/// The upstream answer (the receiver's, or Envoy's in its place: `details`), in one body chunk.
pub(super) fn respond(
    delivery: &mut Delivery,
    host: &FakeHost,
    status: u16,
    details: &str,
    body: &str,
) -> Flow {
    *host.response_headers.borrow_mut() = vec![
        (":status".to_string(), status.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    *host.code_details.borrow_mut() = Some(details.to_string());
    assert_eq!(delivery.on_response_headers(host, false), Flow::Pause);
    *host.response_body.borrow_mut() = body.as_bytes().to_vec();
    delivery.on_response_body(host, body.len(), true)
}

fn delivered_once(json: &str, receiver_status: u16, receiver_body: &str) -> (FakeHost, Answer) {
    let host = FakeHost::at(T);
    let settings = settings(json);
    let (mut delivery, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Continue);
    let flow = respond(
        &mut delivery,
        &host,
        receiver_status,
        "via_upstream",
        receiver_body,
    );
    assert_eq!(flow, Flow::Continue);
    let answer = host.answer();
    (host, answer)
}

fn assert_answer(answer: &Answer, status: u32, delivered: &str, envelope: &str) {
    assert_eq!(answer.status, status, "{}", answer.body_text());
    assert_eq!(answer.header("x-hookgate-delivered"), Some(delivered));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.body_text(), envelope);
}

#[test]
fn a_delivery_rewrites_the_request_and_passes_the_receivers_json_on() {
    let (host, answer) = delivered_once("{}", 200, r#"{"ok":1}"#);
    assert_answer(
        &answer,
        200,
        "yes",
        r#"[{"status":true,"message":"{\"ok\":1}","code":1}]"#,
    );
    assert!(!answer.local);
    assert_eq!(answer.header("x-hookgate-upstream-status"), Some("200"));
    assert_eq!(answer.header("content-length"), Some("49"));
    let sent: Vec<(String, String)> = host.request_headers.borrow().clone();
    let expected = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "receiver.example:443"),
        (":path", "/hook"),
        ("content-type", "application/json"),
        ("content-length", "137"),
        (
            "user-agent",
            concat!("hookgate/", env!("CARGO_PKG_VERSION")),
        ),
        ("x-hookgate-route", "https"),
        ("x-forwarded-proto", "https"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(sent, expected);
    let payload = String::from_utf8(host.request_body.borrow().clone()).unwrap();
    assert_eq!(
        payload,
        r#"[{"automation_id":"1","title":"t","execution_date":"2022-01-04 09:02:39","email":"a@example.com","phone":"+380631234567","variables":[]}]"#
    );
    assert_eq!(host.counter("hookgate.sent"), 1);
    assert_eq!(host.counter("hookgate.outcome.delivered"), 1);
    assert_eq!(host.counter("hookgate.code.1"), 1);
    assert_eq!(
        host.decision.borrow().as_deref(),
        Some("webhook=orders host=receiver.example outcome=delivered code=1")
    );
}

#[test]
fn receiver_answers_are_judged_as_the_table_says() {
    let rows = [
        // 2xx, body not JSON / empty / over max_response_bytes: 11110112.
        (
            200,
            "ok",
            "{}",
            200,
            "yes",
            r#"[{"status":false,"message":"Invalid response format. Expects json!","code":11110112}]"#,
        ),
        (
            200,
            "",
            "{}",
            200,
            "yes",
            r#"[{"status":false,"message":"Invalid response format. Expects json!","code":11110112}]"#,
        ),
        (
            200,
            "[1,2,3,4,5]",
            r#"{"max_response_bytes":4}"#,
            200,
            "yes",
            r#"[{"status":false,"message":"Invalid response format. Expects json!","code":11110112}]"#,
        ),
        // Non-2xx, redirects included: 11110111.
        (500, "{}", "{}", 200, "yes", ENVELOPE_FAILED),
        (302, "{}", "{}", 200, "yes", ENVELOPE_FAILED),
        // The wrong verification key: 11110113.
        (
            200,
            r#"{"key":"nope"}"#,
            r#"{"limit":{"default_key":"right"}}"#,
            200,
            "yes",
            r#"[{"status":false,"message":"The request did not pass code verification","code":11110113}]"#,
        ),
    ];
    for (status, body, config, http, delivered, envelope) in rows {
        let (_, answer) = delivered_once(config, status, body);
        assert_answer(&answer, http, delivered, envelope);
        assert_eq!(
            answer.header("x-hookgate-upstream-status"),
            Some(status.to_string().as_str())
        );
    }
}

#[test]
fn envoys_own_answers_tell_never_sent_from_no_answer_and_blocked() {
    let rows = [
        (503, "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}", 502, "no", ENVELOPE_FAILED),
        (503, "dns_resolution_failure", 502, "no", ENVELOPE_FAILED),
        (504, "upstream request timeout", 504, "unknown", ENVELOPE_FAILED),
        (503, "upstream_reset_after_response_started{connection_termination}", 504, "unknown", ENVELOPE_FAILED),
        (403, "rbac_access_denied_matched_policy[refused-destinations]", 403, "no", r#"[{"status":false,"message":"Incorrect url ip","code":11110114}]"#),
    ];
    for (status, details, http, delivered, envelope) in rows {
        let host = FakeHost::at(T);
        let settings = settings("{}");
        let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
        assert_eq!(
            respond(&mut delivery, &host, status, details, "envoy's body"),
            Flow::Continue
        );
        let answer = host.answer();
        assert_answer(&answer, http, delivered, envelope);
        assert_eq!(answer.header("x-hookgate-upstream-status"), None);
        // A send that never arrived is given back: the next one is allowed.
        let (_, flow) = post(&host, &settings, &event("orders", URL));
        let given_back = delivered == "no";
        assert_eq!(flow == Flow::Continue, given_back, "{details}");
    }
}

#[test]
fn a_test_request_gets_the_report_with_what_was_sent_and_the_limit() {
    let host = FakeHost::at(T);
    let settings = settings("{}");
    let (mut delivery, _) = post_with(
        &host,
        &settings,
        &event("orders", URL),
        &[("x-hookgate-test", "true")],
    );
    respond(&mut delivery, &host, 201, "via_upstream", r#"{"ok":1}"#);
    let report: serde_json::Value = serde_json::from_slice(&host.answer().body).unwrap();
    assert_eq!(report["request"]["url"], URL);
    assert_eq!(report["response"]["status"], 201);
    assert_eq!(report["response"]["body"], r#"{"ok":1}"#);
    assert_eq!(report["envelope"][0]["code"], 1);
    assert_eq!(report["limit"]["sends_in_window"], 1);
    assert_eq!(report["limit"]["verified"], false);
}

#[test]
fn a_signed_delivery_carries_the_engines_idempotency_key_or_a_new_id() {
    let config = r#"{"signing":{"secrets":{"orders":["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]}}}"#;
    let settings = settings(config);
    let host = FakeHost::at(1_649_367_553);
    post_with(
        &host,
        &settings,
        &event("orders", URL),
        &[("idempotency-key", "evt_1")],
    );
    assert_eq!(host.header("webhook-id").as_deref(), Some("evt_1"));
    assert_eq!(
        host.header("webhook-timestamp").as_deref(),
        Some("1649367553")
    );
    let signature = host.header("webhook-signature").unwrap();
    let payload = host.request_body.borrow().clone();
    let secret = crate::signing::Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    assert_eq!(
        signature,
        crate::signing::signature(&[secret], "evt_1", 1_649_367_553, &payload)
    );
    let host = FakeHost::at(T);
    post(&host, &settings, &event("orders", URL));
    assert_eq!(host.header("webhook-id").as_deref(), Some("msg_test_1"));
    let host = FakeHost::at(T);
    post_with(
        &host,
        &settings,
        &event("orders", URL),
        &[("idempotency-key", "no spaces")],
    );
    assert_answer(&host.answer(), 400, "no", ENVELOPE_QUERY);
}
