//! What each outcome costs in host calls, counted through the recording host (shared data and
//! clock reads included) and pinned call by call, so that a change in the hot path fails here
//! first. `cargo test --lib host_calls -- --nocapture` prints them (BENCHMARKS.md lists them).
//! The limit table is prepared first, as `on_configure` does, so a first send finds its bucket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::fake::FakeHost;
use super::tests::{event, post, post_with, respond, settings, T, URL};
use crate::config::Settings;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The counters: added up in the worker and handed to Envoy on its tick (filter/metrics.rs),
/// so they cost a request no host call.
const COUNTERS: [&str; 3] = ["count_sent", "count_outcome", "count_receiver_answer"];

/// Runs `outcome` on a fresh host whose table is prepared; `before` runs first, uncounted.
fn calls(
    settings: &Rc<Settings>,
    before: &dyn Fn(&FakeHost),
    outcome: &dyn Fn(&FakeHost),
) -> BTreeMap<&'static str, usize> {
    let host = FakeHost::at(T);
    settings.limiter.prepare(&host.store).unwrap();
    before(&host);
    host.calls.borrow_mut().clear();
    host.store.gets.set(0);
    host.store.sets.set(0);
    outcome(&host);
    host.call_counts()
}

fn delivered(host: &FakeHost, settings: &Rc<Settings>, extra: &[(&str, &str)]) {
    let (mut delivery, _) = post_with(host, settings, &event("orders", URL), extra);
    respond(&mut delivery, host, 200, "via_upstream", "{}");
    assert_eq!(host.answer().status, 200, "{}", host.answer().body_text());
}

fn refused(host: &FakeHost, settings: &Rc<Settings>, body: &str, status: u32) {
    post(host, settings, body);
    assert_eq!(
        host.answer().status,
        status,
        "{}",
        host.answer().body_text()
    );
    assert!(host.answer().local);
}

fn expect(pairs: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    pairs.iter().copied().collect()
}

#[test]
fn host_calls_per_outcome() {
    let settings = settings("{}");
    // The bench's webhook: listed in `limit.verified`, so its delivery never touches the table.
    let verified = super::tests::settings(&format!(
        r#"{{"limit":{{"verified":[{{"name":"orders","url":"{URL}"}}]}}}}"#
    ));
    let nothing = |_: &FakeHost| {};
    let outcomes = [
        (
            "delivery",
            calls(&settings, &nothing, &|h| delivered(h, &settings, &[])),
        ),
        (
            "delivery of a verified webhook",
            calls(&verified, &nothing, &|h| delivered(h, &verified, &[])),
        ),
        (
            "refusal: bad name",
            calls(&settings, &nothing, &|h| {
                refused(h, &settings, &event("bad name!", URL), 400)
            }),
        ),
        (
            "refusal: blocked address",
            calls(&settings, &nothing, &|h| {
                refused(h, &settings, &event("orders", "http://10.0.0.1/hook"), 403)
            }),
        ),
        (
            "refusal: over limit",
            calls(&settings, &|h| delivered(h, &settings, &[]), &|h| {
                refused(h, &settings, &event("orders", URL), 429)
            }),
        ),
        (
            "test request",
            calls(&settings, &nothing, &|h| {
                delivered(h, &settings, &[("x-hookgate-test", "true")])
            }),
        ),
    ];
    for (what, counts) in &outcomes {
        let (batched, calls): (Vec<_>, Vec<_>) =
            counts.iter().partition(|(name, _)| COUNTERS.contains(name));
        let total: usize = calls.iter().map(|(_, n)| **n).sum();
        let added: usize = batched.iter().map(|(_, n)| **n).sum();
        println!("{what}: {total} host calls {calls:?}, {added} counter increments (no host call)");
    }
    // Every outcome reads the request headers once and the caller's address once.
    let request = [("request_headers", 1), ("source_address", 1)];
    // A refusal after the body: read it, answer locally, marked for the local-reply mappers,
    // counted and recorded once.
    let refusal = [
        ("request_body", 1),
        ("local_reply", 1),
        ("set_request_header", 1),
        ("count_outcome", 1),
        ("set_decision", 1),
    ];
    // A delivery: the body read and replaced with the headers (one map write), the limit's
    // bucket read and written once, the answer's status read, its body read and replaced with
    // the headers (one map write), one decision record; and three counter increments.
    let delivery = [
        ("request_body", 1),
        ("set_request_headers", 1),
        ("set_request_body", 1),
        ("clock", 1),
        ("shared_data_get", 1),
        ("shared_data_set", 1),
        ("count_sent", 1),
        ("response_header", 1),
        ("count_receiver_answer", 1),
        ("response_body", 1),
        ("set_response_headers", 1),
        ("set_response_body", 1),
        ("count_outcome", 1),
        ("set_decision", 1),
    ];
    let both = |rest: &[(&'static str, usize)]| expect(&[&request[..], rest].concat());
    let over_limit = [&refusal[..], &[("clock", 1), ("shared_data_get", 1)]].concat();
    // A verified webhook's delivery: neither the clock nor its bucket (bench/floor's contract
    // variant makes these calls; it follows this list).
    let mut verified_delivery = both(&delivery);
    for name in ["clock", "shared_data_get", "shared_data_set"] {
        verified_delivery.remove(name);
    }
    // A test request reads every answer header (`:status` among them) instead of `:status`
    // alone, and the limit state as the answer is written, for its report.
    let mut test = both(&delivery);
    test.remove("response_header");
    test.insert("response_headers", 1);
    test.insert("clock", 2);
    test.insert("shared_data_get", 2);
    let expected = [
        ("delivery", both(&delivery)),
        ("delivery of a verified webhook", verified_delivery),
        ("refusal: bad name", both(&refusal)),
        ("refusal: blocked address", both(&refusal)),
        ("refusal: over limit", both(&over_limit)),
        ("test request", test),
    ];
    for ((what, counts), (name, expected)) in outcomes.iter().zip(expected) {
        assert_eq!(*what, name);
        assert_eq!(*counts, expected, "{what}");
    }
}
