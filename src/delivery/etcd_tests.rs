//! The delivery with the etcd backend, driven through the recording host and a fake etcd:
//! every path a request takes through etcd (admitted, refused, etcd failing, a call that cannot
//! be made, give-back, verification, and the verified webhook that needs no call).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::fake::FakeHost;
use super::tests::{event, post, respond, settings, T, URL};
use super::{Delivery, Flow};
use crate::config::Settings;
use crate::limit::etcd::fake::Fake;
use crate::limit::etcd::Call;
use std::rc::Rc;

const ETCD: &str = r#"{"state":{"backend":"etcd"},"limit":{"default_key":"right"}}"#;

/// Answers the call the delivery has in flight with the fake etcd, and each next one, until it
/// dispatches no more; returns the paths called.
fn run_etcd(delivery: &mut Delivery, host: &FakeHost, etcd: &mut Fake) -> Vec<String> {
    let mut paths = Vec::new();
    let first = host.dispatched.borrow().len().saturating_sub(1);
    for answered in first..first + 20 {
        let Some(dispatched) = host.dispatched.borrow().get(answered).cloned() else {
            return paths;
        };
        assert_eq!(dispatched.cluster, "etcd");
        let path = match dispatched.path.as_str() {
            "/v3/kv/range" => "/v3/kv/range",
            "/v3/kv/txn" => "/v3/kv/txn",
            "/v3/lease/grant" => "/v3/lease/grant",
            other => panic!("unexpected path {other}"),
        };
        paths.push(path.to_string());
        let call = Call {
            path,
            body: dispatched.body,
        };
        let answered = etcd.answer(&call);
        let reply = answered.reply();
        delivery.on_etcd_reply(host, reply);
    }
    panic!("etcd calls did not end: {paths:?}");
}

/// A send etcd admitted: posted, every etcd call answered, the request resumed.
fn admitted(host: &FakeHost, settings: &Rc<Settings>, etcd: &mut Fake) -> Delivery {
    let (mut delivery, _) = post(host, settings, &event("orders", URL));
    run_etcd(&mut delivery, host, etcd);
    assert_eq!(host.request_resumed.get(), 1);
    delivery
}

/// The upstream answer to an admitted send whose answer waits for one etcd write (a give-back
/// or a verification): held, written once etcd answered, then resumed.
fn answered_after_a_write(
    delivery: &mut Delivery,
    host: &FakeHost,
    etcd: &mut Fake,
    (status, details, body): (u16, &str, &str),
) {
    let flow = respond(delivery, host, status, details, body);
    assert_eq!(flow, Flow::Pause, "held until etcd has the write");
    assert_eq!(host.response_resumed.get(), 0);
    assert_eq!(run_etcd(delivery, host, etcd), ["/v3/kv/txn"]);
    assert_eq!(host.response_resumed.get(), 1);
}

#[test]
fn a_first_send_waits_for_etcd_then_goes_and_a_second_is_refused() {
    let settings = settings(ETCD);
    let mut etcd = Fake::new();
    let host = FakeHost::at(T);
    let (mut delivery, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause, "paused until etcd decided");
    assert_eq!(host.counter("hookgate.sent"), 0);
    let paths = run_etcd(&mut delivery, &host, &mut etcd);
    assert_eq!(paths, ["/v3/kv/range", "/v3/lease/grant", "/v3/kv/txn"]);
    assert_eq!(host.request_resumed.get(), 1);
    assert_eq!(host.counter("hookgate.sent"), 1);
    assert_eq!(
        respond(&mut delivery, &host, 200, "via_upstream", "{}"),
        Flow::Continue
    );
    assert_eq!(host.answer().status, 200);
    assert_eq!(etcd.keys.len(), 1);

    let host = FakeHost::at(T + 10);
    let (mut second, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    assert_eq!(run_etcd(&mut second, &host, &mut etcd), ["/v3/kv/range"]);
    let answer = host.answer();
    assert!(answer.local);
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), Some("3590"));
    assert_eq!(host.request_resumed.get(), 0);
    assert_eq!(host.counter("hookgate.sent"), 0);
}

#[test]
fn etcd_failing_or_unreachable_refuses_with_503_and_sends_nothing() {
    let settings = settings(ETCD);
    // No answer at all (a timeout or a reset), every time: retried, then refused.
    let mut etcd = Fake::new();
    etcd.forced = vec![(None, String::new()); 20];
    let host = FakeHost::at(T);
    let (mut delivery, _) = post(&host, &settings, &event("orders", URL));
    let paths = run_etcd(&mut delivery, &host, &mut etcd);
    assert_eq!(paths.len(), 4, "{paths:?}");
    let answer = host.answer();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("x-hookgate-delivered"), Some("no"));
    assert_eq!(host.counter("hookgate.sent"), 0);
    assert_eq!(host.request_resumed.get(), 0);

    // The call cannot even be made (unknown cluster: the host says BadArgument).
    let host = FakeHost::at(T);
    host.failing.borrow_mut().insert("dispatch", 2);
    let (_, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    let answer = host.answer();
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.header("x-hookgate-detail"),
        Some("limit state unavailable: etcd: call through cluster \"etcd\" failed (host status 2)")
    );
}

#[test]
fn a_send_that_never_arrived_is_given_back_before_the_answer_leaves() {
    let settings = settings(ETCD);
    let mut etcd = Fake::new();
    let host = FakeHost::at(T);
    let mut delivery = admitted(&host, &settings, &mut etcd);
    let never_sent = "upstream_reset_before_response_started{connection_failure}";
    answered_after_a_write(&mut delivery, &host, &mut etcd, (503, never_sent, ""));
    assert_eq!(host.answer().status, 502);
    assert!(etcd.keys.is_empty(), "the only send was removed");

    let host = FakeHost::at(T + 1);
    admitted(&host, &settings, &mut etcd);
}

#[test]
fn the_right_key_is_recorded_in_etcd_and_cached_so_later_sends_need_no_call() {
    let settings = settings(ETCD);
    let mut etcd = Fake::new();
    let host = FakeHost::at(T);
    let mut delivery = admitted(&host, &settings, &mut etcd);
    let right = r#"{"key":"right"}"#;
    answered_after_a_write(
        &mut delivery,
        &host,
        &mut etcd,
        (200, "via_upstream", right),
    );
    let answer = host.answer();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body_text(),
        r#"[{"status":true,"message":"{\"key\":\"right\"}","code":1}]"#
    );
    let (value, lease) = etcd
        .value(
            settings.etcd.as_ref().unwrap(),
            &settings.limiter,
            &crate::limit::WebhookId {
                name: "orders",
                url: URL,
                normalised: false,
            },
        )
        .unwrap();
    assert_eq!(value["verified"], true);
    assert_eq!(lease, 0, "a verified record has no lease");

    // This Envoy remembers: the next send of the same webhook makes no call to etcd. (The
    // verification is cached in this worker's shared data, which the host below shares.)
    let calls_before = etcd.calls.len();
    host.dispatched.borrow_mut().clear();
    host.local_reply.borrow_mut().take();
    host.now.set(T + 5);
    let (mut next, flow) = post(&host, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Continue);
    assert!(host.dispatched.borrow().is_empty());
    respond(&mut next, &host, 200, "via_upstream", r#"{"key":"wrong"}"#);
    assert_eq!(host.answer().status, 200);
    assert_eq!(etcd.calls.len(), calls_before);
}

#[test]
fn a_wrong_key_is_11110113_and_nothing_is_written() {
    let settings = settings(ETCD);
    let mut etcd = Fake::new();
    let host = FakeHost::at(T);
    let mut delivery = admitted(&host, &settings, &mut etcd);
    let calls = etcd.calls.len();
    let flow = respond(&mut delivery, &host, 200, "via_upstream", r#"{"key":"no"}"#);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        host.answer().body_text(),
        r#"[{"status":false,"message":"The request did not pass code verification","code":11110113}]"#
    );
    assert_eq!(etcd.calls.len(), calls);
}

#[test]
fn a_test_request_reports_the_state_etcd_gave() {
    let settings = settings(ETCD);
    let mut etcd = Fake::new();
    let host = FakeHost::at(T);
    let (mut delivery, _) = super::tests::post_with(
        &host,
        &settings,
        &event("orders", URL),
        &[("x-hookgate-test", "true")],
    );
    run_etcd(&mut delivery, &host, &mut etcd);
    respond(&mut delivery, &host, 200, "via_upstream", "{}");
    let report: serde_json::Value = serde_json::from_slice(&host.answer().body).unwrap();
    assert_eq!(
        report["limit"],
        serde_json::json!({"verified": false, "sends_in_window": 1, "allowed_per_hour": 1, "retry_after": 3600})
    );
}

#[test]
fn a_webhook_another_envoy_verified_is_cached_on_first_read() {
    let settings = settings(ETCD);
    let mut etcd = Fake::new();
    // Envoy A verifies the webhook.
    let a = FakeHost::at(T);
    let mut delivery = admitted(&a, &settings, &mut etcd);
    let right = r#"{"key":"right"}"#;
    answered_after_a_write(&mut delivery, &a, &mut etcd, (200, "via_upstream", right));
    // Envoy B (its own shared data) reads it verified once, then needs etcd no more.
    let b = FakeHost::at(T + 10);
    let (mut first, flow) = post(&b, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Pause);
    assert_eq!(run_etcd(&mut first, &b, &mut etcd), ["/v3/kv/range"]);
    assert_eq!(b.request_resumed.get(), 1);
    let calls = etcd.calls.len();
    b.dispatched.borrow_mut().clear();
    let (_, flow) = post(&b, &settings, &event("orders", URL));
    assert_eq!(flow, Flow::Continue);
    assert!(b.dispatched.borrow().is_empty());
    assert_eq!(etcd.calls.len(), calls);
}
