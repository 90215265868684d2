//! End to end: the shipped configuration, a real Envoy, real receivers on loopback.
//! Every row of the contract's table: what the receiver got and what the engine got back.
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{
    assert_answer, event, loopback_config, unique_name, Behaviour, EnvoyConfig, Gateway, Receiver,
    FAILED, NOT_JSON, QUERY_ERROR,
};

/// The production configuration with one exception: loopback receivers of this test.
fn gateway() -> Gateway {
    Gateway::start(loopback_config())
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
        reply.json(),
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

#[test]
fn receiver_answers_that_are_not_json_are_invalid_format() {
    let gw = gateway();
    for (content_type, body) in [
        ("text/plain", &b"OK"[..]),
        ("application/json", b""),
        ("application/json", b"{\"a\":"),
        ("text/html", b"\xff\xfe"),
    ] {
        let receiver = Receiver::start(Behaviour::with_type(200, content_type, body));
        let reply = gw.post(&event(&unique_name("NotJson"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", 11110112, NOT_JSON);
        assert_eq!(reply.header("x-hookgate-upstream-status"), Some("200"));
        assert_eq!(receiver.records().len(), 1);
    }
}

#[test]
fn receiver_non_2xx_is_the_request_failed_but_delivered() {
    let gw = gateway();
    for status in [201u16, 302, 400, 404, 500, 503] {
        let receiver = Receiver::start(Behaviour::json(status, r#"{"error":"x"}"#));
        let reply = gw.post(&event(&unique_name("Status"), &receiver.url("/")));
        if status == 201 {
            assert_answer(&reply, 200, "yes", 1, r#"{"error":"x"}"#);
        } else {
            assert_answer(&reply, 200, "yes", 11110111, FAILED);
        }
        assert_eq!(
            reply.header("x-hookgate-upstream-status"),
            Some(status.to_string().as_str())
        );
        assert_eq!(receiver.records().len(), 1, "status {status}");
    }
}

#[test]
fn a_receiver_answer_without_body_is_judged_too() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::Answer {
        status: 204,
        headers: vec![],
        body: vec![],
    });
    let reply = gw.post(&event(&unique_name("NoBody"), &receiver.url("/")));
    assert_answer(&reply, 200, "yes", 11110112, NOT_JSON);
}

#[test]
fn redirects_are_the_receivers_answer_never_followed() {
    let gw = gateway();
    let target = Receiver::start(Behaviour::json(200, "{}"));
    let redirect = Receiver::start(Behaviour::Answer {
        status: 302,
        headers: vec![("location".into(), target.url("/stolen"))],
        body: vec![],
    });
    let reply = gw.post(&event(&unique_name("Redirect"), &redirect.url("/")));
    assert_answer(&reply, 200, "yes", 11110111, FAILED);
    assert_eq!(reply.header("x-hookgate-upstream-status"), Some("302"));
    assert_eq!(target.records().len(), 0);
}

#[test]
fn connection_refused_is_never_sent() {
    let gw = gateway();
    let port = support::free_port();
    let reply = gw.post(&event(
        &unique_name("Down"),
        &format!("http://127.0.0.1:{port}/"),
    ));
    assert_answer(&reply, 502, "no", 11110111, FAILED);
}

#[test]
fn a_name_that_does_not_resolve_is_never_sent() {
    let gw = gateway();
    let reply = gw.post(&event(
        &unique_name("NoDns"),
        "http://no-such-host.invalid/",
    ));
    assert_answer(&reply, 502, "no", 11110111, FAILED);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some(
            "webhook not sent: DNS: the name resolved to no IPv4 address \
             (Envoy answered 503: no_healthy_upstream)"
        )
    );
}

#[test]
fn route_timeout_is_unknown() {
    let gw = Gateway::start(support::loopback_config().route_timeout("1s"));
    let slow = Behaviour::Delay(
        std::time::Duration::from_secs(3),
        Box::new(Behaviour::json(200, "{}")),
    );
    let receiver = Receiver::start(slow);
    let reply = gw.post(&event(&unique_name("Slow"), &receiver.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    assert_eq!(receiver.records().len(), 1);
}

#[test]
fn reset_after_sending_is_unknown() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::CloseAfterRead);
    let reply = gw.post(&event(&unique_name("Reset"), &receiver.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    assert_eq!(receiver.records().len(), 1);
}

#[test]
fn bad_events_are_refused_before_anything_leaves() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let url = receiver.url("/");
    let bad = [
        "not json".to_string(),
        "{}".to_string(),
        r#"{"webhook":{"name":"A1"},"automation_id":"1"}"#.to_string(),
        format!(r#"{{"webhook":{{"url":"{url}"}},"automation_id":"1"}}"#),
        format!(r#"{{"webhook":{{"name":"Bad Name","url":"{url}"}},"automation_id":"1"}}"#),
        format!(r#"{{"webhook":{{"name":"Лід","url":"{url}"}},"automation_id":"1"}}"#),
        format!(r#"{{"webhook":{{"name":"A1","url":"{url}"}},"automation_id":["x"]}}"#),
        format!(
            r#"{{"webhook":{{"name":"A1","url":"{url}"}},"automation_id":"1","variables":"x"}}"#
        ),
        r#"{"webhook":{"name":"A1","url":"ftp://x.example/"},"automation_id":"1"}"#.to_string(),
        r#"{"webhook":{"name":"A1","url":"http://user@x.example/"},"automation_id":"1"}"#
            .to_string(),
        format!(
            r#"{{"webhook":{{"name":"{}","url":"{url}"}},"automation_id":"1"}}"#,
            "a".repeat(65)
        ),
        "[]".to_string(),
    ];
    // Mistyped fields: a title and an email are strings (or null), a phone a string or a number.
    let mistyped = [
        r#""title":5"#,
        r#""email":5"#,
        r#""email":true"#,
        r#""email":{"a":"b"}"#,
        r#""email":["a@b.c"]"#,
        r#""phone":false"#,
    ]
    .map(|field| {
        format!(r#"{{"webhook":{{"name":"A1","url":"{url}"}},"automation_id":"1",{field}}}"#)
    });
    for body in bad.iter().chain(&mistyped) {
        let reply = gw.post(body);
        assert_answer(&reply, 400, "no", 21111011, QUERY_ERROR);
        assert!(reply.header("x-hookgate-detail").is_some());
    }
    let empty = gw.raw(b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    assert_answer(&empty, 400, "no", 21111011, QUERY_ERROR);
    assert_eq!(receiver.records().len(), 0);
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
}

#[test]
fn method_media_type_and_size_are_checked() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Http"), &receiver.url("/"));
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let request = format!("{method} / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        assert_answer(
            &gw.raw(request.as_bytes()),
            405,
            "no",
            21111011,
            QUERY_ERROR,
        );
    }
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let reply = gw.post_with(&body, &[("content-type", content_type)]);
        assert_answer(&reply, 415, "no", 21111011, QUERY_ERROR);
    }
    let reply = gw.post_with(
        &body,
        &[("content-type", "Application/JSON; charset=utf-8")],
    );
    assert_answer(&reply, 200, "yes", 1, "{}");
    // Over the cap, declared or chunked: an envelope, never Envoy's bare overflow reply.
    let huge = format!(
        r#"{{"webhook":{{"name":"Big","url":"{}"}},"automation_id":"1","title":"{}"}}"#,
        receiver.url("/"),
        "x".repeat(600 * 1024)
    );
    assert_answer(&gw.post(&huge), 413, "no", 21111011, QUERY_ERROR);
    let mut chunked = b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for chunk in huge.as_bytes().chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_answer(&gw.raw(&chunked), 413, "no", 21111011, QUERY_ERROR);
    assert_eq!(receiver.records().len(), 1);
}

/// Answers over max_response_bytes (512 KiB), up to 16 times Envoy's buffer limit, streamed as
/// fast as loopback allows: always an envelope, never Envoy's bare overflow reply.
#[test]
fn an_oversized_answer_still_ends_in_an_envelope() {
    let gw = gateway();
    for size in [600 * 1024, 2 << 20, 16 << 20, 2 << 20, 2 << 20] {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(size));
        let receiver = Receiver::start(Behaviour::json(200, &big));
        let reply = gw.post(&event(&unique_name("BigAnswer"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", 11110112, NOT_JSON);
        let failing = Receiver::start(Behaviour::json(500, &big));
        let reply = gw.post(&event(&unique_name("BigError"), &failing.url("/")));
        assert_answer(&reply, 200, "yes", 11110111, FAILED);
    }
    // Just under the cap is read whole.
    let fits = format!("{{\"a\":\"{}\"}}", "x".repeat(500 * 1024));
    let receiver = Receiver::start(Behaviour::json(200, &fits));
    let reply = gw.post(&event(&unique_name("FitsAnswer"), &receiver.url("/")));
    assert_eq!(
        reply.json()[0]["message"].as_str().map(str::len),
        Some(fits.len())
    );
}

#[test]
fn the_documents_event_webhooks_round_trip_exactly() {
    let gw = gateway();
    let spam = r#"{"timestamp":1496827422,"event":"spam","task_id":3668141,"email":"john.doe@sendpulse.com","source":"automation360","automation_id":"123456789"}"#;
    let unsubscribe = r#"{"task_id":"3668141","timestamp":"1496827872","from_all":1,"email":"john.doe@sendpulse.com","reason":null,"book_id":490686,"event":"unsubscribe","categories":"","source":"automation360","automation_id":"123456789"}"#;
    for doc in [spam, unsubscribe] {
        let receiver = Receiver::start(Behaviour::json(200, "{}"));
        let webhook = json!({"name": unique_name("Event"), "url": receiver.url("/")});
        let reply = gw.post(&format!(
            "{},\"webhook\":{webhook}}}",
            doc.trim_end_matches('}')
        ));
        assert_answer(&reply, 200, "yes", 1, "{}");
        assert_eq!(
            String::from_utf8(receiver.records()[0].body.clone()).unwrap(),
            format!("[{doc}]")
        );
    }
}

#[test]
fn an_array_of_events_is_one_delivery() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "[]"));
    let name = unique_name("Batch");
    let body = format!(
        r#"[{{"webhook":{{"name":"{name}","url":"{}"}},"automation_id":1,"variables":{{"a":"1"}}}},{{"event":"spam","email":"a@b.c","timestamp":1,"webhook":{{"name":"{name}","url":"{}"}}}}]"#,
        receiver.url("/"),
        receiver.url("/")
    );
    let reply = gw.post(&body);
    assert_answer(&reply, 200, "yes", 1, "[]");
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let sent: Value = serde_json::from_slice(&records[0].body).unwrap();
    assert_eq!(sent[0]["automation_id"], "1");
    assert_eq!(sent[0]["variables"], json!([{"a": "1"}]));
    assert_eq!(
        sent[1],
        json!({"event": "spam", "email": "a@b.c", "timestamp": 1, "source": "automation360"})
    );
}

#[test]
fn the_engines_headers_never_travel_and_static_headers_do() {
    let gw = Gateway::start(
        EnvoyConfig::load("envoy/envoy.yaml")
            .plugin_config(r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]},"static_headers":{"x-source":"sendpulse"}}"#),
    );
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let reply = gw.post_with(
        &event(&unique_name("Headers"), &receiver.url("/")),
        &[
            ("authorization", "Bearer secret"),
            ("cookie", "session=1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-envoy-retry-on", "5xx"),
            ("x-hookgate-route", "http"),
            ("x-request-id", "abc"),
        ],
    );
    assert_answer(&reply, 200, "yes", 1, "{}");
    let got = &receiver.records()[0];
    let mut names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "content-length",
            "content-type",
            "host",
            "user-agent",
            "x-source"
        ],
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("x-source"), Some("sendpulse"));
}

#[test]
fn no_open_proxy_a_foreign_host_goes_nowhere() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let host = format!("127.0.0.1:{}", receiver.port);
    for request in [
        format!("GET /secret HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
        format!("GET http://{host}/secret HTTP/1.1\r\nhost: {host}\r\nx-hookgate-route: http\r\nconnection: close\r\n\r\n"),
        format!("POST /secret HTTP/1.1\r\nhost: {host}\r\nx-hookgate-route: http\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"),
        format!("CONNECT {host} HTTP/1.1\r\nhost: {host}\r\n\r\n"),
    ] {
        let reply = gw.raw(request.as_bytes());
        assert!(reply.status >= 400, "{request}: {}", reply.status);
    }
    assert_eq!(receiver.records().len(), 0);
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
}

#[test]
fn test_requests_answer_with_a_report() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let name = unique_name("Test");
    let url = receiver.url("/t?x=1");
    let reply = gw.post_with(&event(&name, &url), &[("x-hookgate-test", "true")]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    let report = reply.json();
    assert_eq!(report["webhook"], json!({"name": name, "url": url}));
    assert_eq!(report["request"]["method"], "POST");
    assert_eq!(report["request"]["url"], url);
    assert_eq!(report["request"]["body"][0]["automation_id"], "123456789");
    assert_eq!(
        report["request"]["headers"]["content-type"],
        "application/json"
    );
    assert_eq!(report["response"]["status"], 200);
    assert_eq!(report["response"]["body"], r#"{"ok":1}"#);
    assert_eq!(
        report["envelope"],
        json!([{"status": true, "message": "{\"ok\":1}", "code": 1}])
    );
    assert_eq!(receiver.records().len(), 1);
    // A refused test request reports the refusal with no response.
    let refused = gw.post_with(&event("Bad Name", &url), &[("x-hookgate-test", "true")]);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["response"], Value::Null);
    assert_eq!(refused.json()["envelope"][0]["code"], 21111011);
}

/// Deliveries keep the engine's connection open; a refusal answers and says `connection: close`
/// (Envoy's rule for replies a filter makes while decoding), so no request is lost either way.
#[test]
fn keep_alive_connections_carry_several_exchanges() {
    use std::io::{BufReader, Write};
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let mut stream = support::http::connect(gw.port).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // A refusal (400, once the whole event was read) keeps the connection too: the listener sets
    // override_stream_error_on_invalid_http_message, without which Envoy closed HTTP/1.1 after
    // any 400 local reply (`connection: close`, a new connection per refused event).
    for i in 0..3 {
        let refused = i == 1;
        let body = if refused {
            "nope".to_string()
        } else {
            event(&unique_name("Keep"), &receiver.url("/"))
        };
        let request = format!("POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        stream.write_all(request.as_bytes()).unwrap();
        let reply =
            support::http::read_reply(&mut reader).unwrap_or_else(|e| panic!("exchange {i}: {e}"));
        if refused {
            assert_answer(&reply, 400, "no", 21111011, QUERY_ERROR);
        } else {
            assert_answer(&reply, 200, "yes", 1, "{}");
        }
        assert_eq!(reply.header("connection"), None, "exchange {i}");
    }
    assert_eq!(receiver.records().len(), 2);
    assert_eq!(
        *receiver.connections.lock().unwrap(),
        1,
        "Envoy reused its upstream connection"
    );
    // Malformed HTTP (both content-length and transfer-encoding) still closes the connection.
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    let reply = support::http::read_reply(&mut reader).unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn an_invalid_plugin_configuration_stops_envoy_with_a_clear_line() {
    let log = EnvoyConfig::load("envoy/envoy.yaml")
        .plugin_config(r#"{"max_event_bytes":0}"#)
        .refused_by_envoy();
    assert!(
        log.contains("hookgate: invalid plugin configuration: max_event_bytes"),
        "{log}"
    );
}

/// hookgate marks the engine's request when it answers itself, so that Envoy's local-reply
/// mappers leave its reply alone without evaluating their CEL filters (envoy/envoy.yaml); the
/// marker is now the pseudo-header `:hookgate-replied`. A copy of the former marker header
/// changes nothing (Envoy's own refusals: tests/answers.rs): a delivery goes without it, a refusal is
/// hookgate's envelope, and a reply Envoy makes after hookgate saw the headers (here the
/// request timeout, with a body that never ends) passes through hookgate, which writes the
/// envelope.
#[test]
fn the_replied_marker_is_hookgates_alone() {
    let config = loopback_config().edit(|yaml| {
        let hcm = &mut yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        hcm["request_timeout"] = serde_yaml::Value::String("1s".into());
    });
    let gw = Gateway::start(config);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let marker = [("x-hookgate-replied", "1")];
    let body = event(&unique_name("Marked"), &receiver.url("/"));
    assert_answer(&gw.post_with(&body, &marker), 200, "yes", 1, "{}");
    assert_eq!(receiver.records()[0].header("x-hookgate-replied"), None);
    let bad = event("Bad Name", &receiver.url("/"));
    assert_answer(
        &gw.post_with(&bad, &marker),
        400,
        "no",
        21111011,
        QUERY_ERROR,
    );
    let unfinished = format!(
        "POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         x-hookgate-replied: 1\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    );
    let reply = gw.raw(unfinished.as_bytes());
    assert_answer(&reply, 408, "no", 21111011, QUERY_ERROR);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some("event not received in time: request_overall_timeout")
    );
    assert_eq!(receiver.records().len(), 1);
}
