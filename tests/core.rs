//! Issue 2 end to end: the shipped configuration, a real Envoy, real receivers on loopback.
//! Every row of the contract's table: what the receiver got and what the engine got back.
// Tests may panic; the no-panic lints guard the filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use serde_json::{json, Value};
use support::{event, unique_name, Behaviour, EnvoyConfig, Gateway, Receiver};

/// The production configuration with one exception: loopback receivers of this test.
fn gateway() -> Gateway {
    Gateway::start(
        EnvoyConfig::load("envoy/envoy.yaml")
            .plugin_config(r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]}}"#)
            .allow_loopback_receivers(),
    )
}

fn envelope(reply: &support::Reply) -> Value {
    reply.json()
}

#[test]
fn delivered_json_answer_is_the_message() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let name = unique_name("Lead");
    let reply = gw.post(&event(&name, &receiver.url("/hooks/sendpulse?a=1")));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    assert_eq!(reply.header("x-hookgate-upstream-status"), Some("200"));
    assert_eq!(
        envelope(&reply),
        json!([{"status": true, "message": "{\"ok\":true}", "code": 1}])
    );
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let got = &records[0];
    assert_eq!(got.request_line, "POST /hooks/sendpulse?a=1 HTTP/1.1");
    assert_eq!(
        String::from_utf8(got.body.clone()).unwrap(),
        r#"[{"automation_id":"123456789","title":"New Automation","execution_date":"2022-01-04 09:02:39","email":"example@example.com","phone":"+380631234567","variables":[{"name1":"value1"},{"name2":"value2"}]}]"#
    );
    let mut names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["content-length", "content-type", "host", "user-agent"],
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("user-agent"),
        Some(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        got.header("host"),
        Some(format!("127.0.0.1:{}", receiver.port).as_str())
    );
}
