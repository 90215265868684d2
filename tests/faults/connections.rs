//! Faults around the connection: engines that go away, and Envoy's own refusals and cut answers
//! through the shipped local-reply mappers.

use crate::support::receiver::Step;
use crate::support::{
    self, assert_answer, event, loopback_config, unique_name, Behaviour, Gateway, Receiver, FAILED,
};
use crate::{assert_refused, gateway, head};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// Engines that go away: mid-body, and while the receiver is still answering. Nothing breaks:
/// the receiver got the one complete event, and the next requests are answered as usual.
#[test]
fn engines_that_go_away_break_nothing() {
    let gw = gateway();
    let slow = Receiver::start(Behaviour::Delay(
        Duration::from_millis(500),
        Box::new(Behaviour::json(200, "{}")),
    ));
    let body = event(&unique_name("Gone"), &slow.url("/"));
    let streams_logged = || gw.access_log().lines().count();
    let logged_before = streams_logged();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // Half the body, then gone.
    let mut stream = support::http::connect(gw.port).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .unwrap();
    drop(stream);
    // The whole request, then gone before the answer.
    let mut stream = support::http::connect(gw.port).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    // Gone once the receiver has the webhook, while it still takes 500 ms to answer.
    support::eventually("the slow receiver to get the webhook", || {
        slow.records().len() == 1
    });
    drop(stream);
    // Envoy writes a stream's access log line when the stream ends: once both abandoned streams
    // have theirs, no retry or late copy of the webhook can come from them.
    support::eventually("Envoy to end both abandoned streams", || {
        streams_logged() == logged_before + 2
    });
    assert_eq!(slow.records().len(), 1);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    for _ in 0..3 {
        let reply = gw.post(&event(&unique_name("After"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", 1, "{}");
    }
}

/// What the shipped local-reply mappers change, and what they must not: requests Envoy refuses before any
/// filter runs (`OPTIONS *`, a malformed request, headers over Envoy's limit) get the 21111011
/// envelope with `no` and Envoy's status; hookgate's own answers (a refusal, a test report, a
/// receiver that is down, a slow receiver, a delivery) are exactly as without them.
#[test]
fn local_reply_mappers_cover_envoys_own_refusals_and_change_nothing_else() {
    let gw = Gateway::start(loopback_config().route_timeout("1s"));
    let star = gw.raw(b"OPTIONS * HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    assert_refused(&star, 404);
    let malformed = gw.raw(b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-length: x\r\n\r\n");
    assert_refused(&malformed, 400);
    let big_header = format!(
        "POST / HTTP/1.1\r\nhost: gw\r\nx-big: {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
        "a".repeat(100_000)
    );
    assert_refused(&gw.raw(big_header.as_bytes()), 431);

    let refused = gw.post("nope");
    assert_refused(&refused, 400);
    assert!(refused
        .header("x-hookgate-detail")
        .is_some_and(|d| d.starts_with("invalid event")));
    let report = gw.post_with("nope", &[("x-hookgate-test", "true")]);
    assert_eq!(report.status, 400);
    assert_eq!(
        report.json()["envelope"][0]["code"],
        21111011,
        "{:?} {}",
        report.headers,
        report.text()
    );
    assert_eq!(report.json()["request"], Value::Null);
    let down = format!("http://127.0.0.1:{}/", support::free_port());
    assert_answer(
        &gw.post(&event(&unique_name("Down"), &down)),
        502,
        "no",
        11110111,
        FAILED,
    );
    let slow = Receiver::start(Behaviour::Delay(
        Duration::from_secs(3),
        Box::new(Behaviour::json(200, "{}")),
    ));
    let reply = gw.post(&event(&unique_name("Slow"), &slow.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    assert!(reply
        .header("x-hookgate-detail")
        .is_some_and(|d| d.starts_with("no answer from receiver")));
    let good = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let reply = gw.post(&event(&unique_name("Good"), &good.url("/")));
    assert_answer(&reply, 200, "yes", 1, r#"{"ok":1}"#);
}

/// The shipped configuration: an answer cut after its headers (reset or route timeout), which
/// Envoy answers past every filter, still reaches the engine as the envelope (504, `unknown`)
/// thanks to the local-reply mappers of envoy/*.yaml.
#[test]
fn the_shipped_configuration_answers_cut_answers_with_an_envelope() {
    let gw = Gateway::start(loopback_config().route_timeout("1s"));
    let body = br#"{"ok":true}"#;
    let mut first = head(200, "application/json", body.len());
    first.extend_from_slice(&body[..4]);
    let reset = Receiver::start(Behaviour::Script(vec![
        Step::Write(first.clone()),
        Step::Reset,
    ]));
    let reply = gw.post(&event(&unique_name("ShippedRst"), &reset.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    let stall = Receiver::start(Behaviour::Script(vec![
        Step::Write(first),
        Step::Sleep(Duration::from_secs(3)),
    ]));
    let reply = gw.post(&event(&unique_name("ShippedStall"), &stall.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    let star = gw.raw(b"OPTIONS * HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    assert_refused(&star, 404);
}
