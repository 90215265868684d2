//! End to end: faults through a real Envoy. Receivers that refuse, reset, stall, trickle,
//! answer too much, answer bytes that are not JSON, gzip, or any status; engines that send broken,
//! deep, huge, empty, mistyped or non-POST events. Each gets the documented envelope, status and
//! `x-hookgate-delivered` (never Envoy's bare reply, never a hang), and the receiver's records say
//! what really left.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};
use support::receiver::Step;
use support::{
    assert_answer, event, loopback_config, unique_name, Behaviour, Gateway, Receiver, Reply,
    FAILED, NOT_JSON, QUERY_ERROR,
};

/// The production configuration with loopback receivers allowed (10 s route timeout).
fn gateway() -> Gateway {
    Gateway::start(loopback_config())
}

fn head(status: u16, content_type: &str, length: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// Posts an event and times the exchange.
fn timed_post(gw: &Gateway, body: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = gw.post(body);
    (reply, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Receiver faults
// ---------------------------------------------------------------------------------------------

/// Nothing listens: never sent (502, `no`), no upstream status; the test report says there was
/// no response. An accept followed at once by RST, before the request is read: the receiver
/// records nothing and the engine gets an envelope (Envoy cannot tell whether the bytes it wrote
/// were read, so `unknown` is the documented answer).
#[test]
fn refused_and_reset_at_accept() {
    let gw = gateway();
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let reply = gw.post(&event(&unique_name("Refused"), &url));
    assert_answer(&reply, 502, "no", 11110111, FAILED);
    assert_eq!(reply.header("x-hookgate-upstream-status"), None);
    let report = gw.post_with(
        &event(&unique_name("Refused"), &url),
        &[("x-hookgate-test", "true")],
    );
    assert_eq!(report.status, 502);
    assert_eq!(report.header("x-hookgate-delivered"), Some("no"));
    let report = report.json();
    assert_eq!(report["response"], Value::Null);
    assert_eq!(
        report["envelope"],
        json!([{"status": false, "message": FAILED, "code": 11110111}])
    );

    // Accepts, then resets without reading a byte.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            support::receiver::reset_now(&stream);
        }
    });
    let reply = gw.post(&event(
        &unique_name("ResetAtAccept"),
        &format!("http://127.0.0.1:{port}/"),
    ));
    assert!(
        reply.status == 504 || reply.status == 502,
        "{} {}",
        reply.status,
        reply.text()
    );
    let delivered = if reply.status == 504 { "unknown" } else { "no" };
    assert_answer(&reply, reply.status, delivered, 11110111, FAILED);
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

/// The receiver sends its headers and part of the body, then resets (RST) or closes (FIN) the
/// connection: sent, no complete answer: 504, `unknown`, never a success built from half a body.
#[test]
fn reset_mid_answer_is_unknown() {
    let gw = Gateway::start(loopback_config());
    let body = br#"{"ok":true,"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    for (label, end) in [("Rst", Step::Reset), ("Fin", Step::Close)] {
        let mut first = head(200, "application/json", body.len());
        first.extend_from_slice(&body[..10]);
        let receiver = Receiver::start(Behaviour::Script(vec![
            Step::Write(first),
            Step::Sleep(Duration::from_millis(200)),
            end,
        ]));
        let (reply, took) = timed_post(&gw, &event(&unique_name(label), &receiver.url("/")));
        assert_answer(&reply, 504, "unknown", 11110111, FAILED);
        assert_eq!(receiver.records().len(), 1, "{label}");
        assert!(took < Duration::from_secs(8), "{label}: {took:?}");
    }
    // The same with a chunked answer cut between chunks.
    let receiver = Receiver::start(Behaviour::Script(vec![
        Step::Write(
            b"HTTP/1.1 200 X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n"
                .to_vec(),
        ),
        Step::Sleep(Duration::from_millis(200)),
        Step::Reset,
    ]));
    let reply = gw.post(&event(&unique_name("RstChunked"), &receiver.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    assert_eq!(receiver.records().len(), 1);
}

/// The receiver sends its headers at once, then stalls mid-body past the route timeout (1 s
/// here): 504, `unknown`, in about the route timeout, not hanging for the receiver.
#[test]
fn stalled_mid_body_beyond_the_route_timeout_is_unknown() {
    let gw = Gateway::start(loopback_config().route_timeout("1s"));
    let body = br#"{"ok":true}"#;
    let mut first = head(200, "application/json", body.len());
    first.extend_from_slice(&body[..4]);
    let receiver = Receiver::start(Behaviour::Script(vec![
        Step::Write(first),
        Step::Sleep(Duration::from_secs(4)),
        Step::Write(body[4..].to_vec()),
    ]));
    let (reply, took) = timed_post(&gw, &event(&unique_name("Stall"), &receiver.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    assert_eq!(receiver.records().len(), 1);
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Trickling slower than the route timeout allows in total is the same.
    let slow = Receiver::start(Behaviour::trickle(
        200,
        "application/json",
        b"{\"slow\":\"trickle\"}",
        Duration::from_millis(100),
    ));
    let (reply, took) = timed_post(&gw, &event(&unique_name("SlowTrickle"), &slow.url("/")));
    assert_answer(&reply, 504, "unknown", 11110111, FAILED);
    assert_eq!(slow.records().len(), 1);
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// Every byte of the answer (status line, headers, body) in its own TCP segment, within the
/// route timeout: read whole and judged like any other answer.
#[test]
fn one_byte_at_a_time_is_read_whole_and_judged() {
    let gw = gateway();
    let gap = Duration::from_millis(5);
    let json_body = br#"{"ok":true,"note":"one byte at a time","n":[1,2,3]}"#;
    let cases: [(u16, &str, &[u8], u64, &str); 3] = [
        (200, "application/json", json_body, 1, "json"),
        (200, "text/plain", b"OK, got it", 11110112, NOT_JSON),
        (
            500,
            "application/json",
            br#"{"error":"boom"}"#,
            11110111,
            FAILED,
        ),
    ];
    for (status, content_type, body, code, message) in cases {
        let receiver = Receiver::start(Behaviour::trickle(status, content_type, body, gap));
        let reply = gw.post(&event(&unique_name("Trickle"), &receiver.url("/")));
        let message = if code == 1 {
            std::str::from_utf8(body).unwrap()
        } else {
            message
        };
        assert_answer(&reply, 200, "yes", code, message);
        assert_eq!(
            reply.header("x-hookgate-upstream-status"),
            Some(status.to_string().as_str())
        );
        assert_eq!(receiver.records().len(), 1);
    }
}

/// Chunked answers: many small chunks within the cap are reassembled and judged; over the cap
/// (512 KiB), however chunked, the answer is dropped as it streams: 11110112, never Envoy's
/// bare overflow reply. Trailers after the last chunk change nothing.
#[test]
fn chunked_answers_within_and_over_the_cap() {
    let gw = gateway();
    let fits = format!("{{\"a\":\"{}\"}}", "y".repeat(100 * 1024));
    let pieces: Vec<&[u8]> = fits.as_bytes().chunks(97).collect();
    let receiver = Receiver::start(Behaviour::chunked(200, "application/json", &pieces, &[]));
    let reply = gw.post(&event(&unique_name("ChunkedFits"), &receiver.url("/")));
    assert_answer(&reply, 200, "yes", 1, &fits);

    let with_trailers = Receiver::start(Behaviour::chunked(
        200,
        "application/json",
        &[b"{\"ok\":", b"true}"],
        &[("x-checksum", "abc")],
    ));
    let reply = gw.post(&event(&unique_name("Trailers"), &with_trailers.url("/")));
    assert_answer(&reply, 200, "yes", 1, r#"{"ok":true}"#);
    assert_eq!(reply.header("x-checksum"), None);

    for (size, chunk) in [
        (600 * 1024, 64 * 1024),
        (3 << 20, 16 * 1024),
        (2 << 20, 1 << 20),
    ] {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(size));
        let pieces: Vec<&[u8]> = big.as_bytes().chunks(chunk).collect();
        let receiver = Receiver::start(Behaviour::chunked(200, "application/json", &pieces, &[]));
        let reply = gw.post(&event(&unique_name("ChunkedBig"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", 11110112, NOT_JSON);
        assert_eq!(receiver.records().len(), 1);
        let failing = Receiver::start(Behaviour::chunked(503, "application/json", &pieces, &[]));
        let reply = gw.post(&event(&unique_name("ChunkedBigErr"), &failing.url("/")));
        assert_answer(&reply, 200, "yes", 11110111, FAILED);
        assert_eq!(reply.header("x-hookgate-upstream-status"), Some("503"));
    }
}

/// JSON-looking answers that are not UTF-8 (a stray byte, an overlong encoding, a UTF-16
/// surrogate, a cut multi-byte character): not JSON (RFC 8259 requires UTF-8): 11110112.
#[test]
fn invalid_utf8_answers_are_not_json() {
    let gw = gateway();
    for body in [
        &b"{\"a\":\"\xff\"}"[..],
        b"{\"a\":\"\xc0\xaf\"}",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"{\"a\":\"\xe2\x82\"}",
        b"\xef\xbb\xbf\xfe{}",
    ] {
        let receiver = Receiver::start(Behaviour::with_type(200, "application/json", body));
        let reply = gw.post(&event(&unique_name("Utf8"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", 11110112, NOT_JSON);
        assert_eq!(receiver.records().len(), 1);
    }
}

/// gzip-encoded JSON with `content-encoding: gzip`: hookgate never asks for an encoding (the
/// webhook carries no `accept-encoding`) and does not decompress, so the answer is judged as the
/// bytes received: not UTF-8, not JSON: 11110112. The engine's answer is the plain envelope,
/// with no `content-encoding` left over from the receiver.
#[test]
fn a_gzip_answer_is_judged_as_received() {
    let gw = gateway();
    let json_body = br#"{"ok":true,"compressed":"yes yes yes yes yes yes yes yes yes"}"#;
    let gzipped = gzip(json_body);
    assert_eq!(&gzipped[..2], b"\x1f\x8b");
    for (status, code, message) in [(200, 11110112, NOT_JSON), (500, 11110111, FAILED)] {
        let receiver = Receiver::start(Behaviour::Answer {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-encoding".into(), "gzip".into()),
                ("vary".into(), "accept-encoding".into()),
            ],
            body: gzipped.clone(),
        });
        let reply = gw.post(&event(&unique_name("Gzip"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", code, message);
        assert_eq!(
            reply.header("content-encoding"),
            None,
            "{:?}",
            reply.headers
        );
        assert_eq!(reply.header("vary"), None, "{:?}", reply.headers);
        let records = receiver.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].header("accept-encoding"), None);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .args(["-c", "-n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// 3xx, 4xx and 5xx, each with a JSON body, a text body and no body: the receiver answered, so
/// the webhook was delivered (200, `yes`) and "The request failed" (redirects are not followed);
/// the receiver's own 429/502/503/504 are never taken for hookgate's or Envoy's.
#[test]
fn non_2xx_with_and_without_json() {
    let gw = gateway();
    let mut checked = 0;
    for status in [
        300u16, 301, 303, 304, 307, 308, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504,
    ] {
        let bodies: [(&str, &[u8]); 3] = [
            ("application/json", br#"{"error":"x"}"#),
            ("text/html", b"<h1>nope</h1>"),
            ("application/json", b""),
        ];
        for (content_type, body) in bodies {
            // 304 never has a body (RFC 9110).
            if status == 304 && !body.is_empty() {
                continue;
            }
            let mut behaviour = Behaviour::with_type(status, content_type, body);
            if let Behaviour::Answer { headers, .. } = &mut behaviour {
                if (300..400).contains(&status) {
                    headers.push(("location".into(), "http://127.0.0.1:1/elsewhere".into()));
                }
                if status == 429 || status == 503 {
                    headers.push(("retry-after".into(), "120".into()));
                }
            }
            let receiver = Receiver::start(behaviour);
            let reply = gw.post(&event(&unique_name("Status"), &receiver.url("/")));
            assert_answer(&reply, 200, "yes", 11110111, FAILED);
            assert_eq!(
                reply.header("x-hookgate-upstream-status"),
                Some(status.to_string().as_str()),
                "{status} {content_type}"
            );
            assert_eq!(reply.header("retry-after"), None, "{status}");
            assert_eq!(reply.header("location"), None, "{status}");
            assert_eq!(receiver.records().len(), 1, "{status} {content_type}");
            checked += 1;
        }
    }
    assert_eq!(checked, 46);
    // An interim 100 Continue before the real answer: the real answer is judged.
    let receiver = Receiver::start(Behaviour::Script(vec![
        Step::Write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        Step::Sleep(Duration::from_millis(50)),
        Step::Write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
                .to_vec(),
        ),
    ]));
    let reply = gw.post(&event(&unique_name("Continue"), &receiver.url("/")));
    assert_answer(&reply, 200, "yes", 1, r#"{"ok":true}"#);
}

/// An answer nested 100 000 arrays deep, and one that is a 400 KiB string: JSON, read without
/// recursion limits or copies that could fail, passed on as received.
#[test]
fn deep_and_huge_answers_within_the_cap_are_json() {
    let gw = gateway();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = format!("\"{}\"", "\\u00e9z".repeat(400 * 1024 / 7));
    for body in [deep, huge] {
        let receiver = Receiver::start(Behaviour::json(200, &body));
        let reply = gw.post(&event(&unique_name("DeepAnswer"), &receiver.url("/")));
        assert_answer(&reply, 200, "yes", 1, &body);
    }
}

// ---------------------------------------------------------------------------------------------
// Engine faults
// ---------------------------------------------------------------------------------------------

/// Checks a refusal and that nothing reached the receiver.
fn assert_refused(reply: &Reply, status: u16) {
    assert_answer(reply, status, "no", 21111011, QUERY_ERROR);
    assert!(reply.header("x-hookgate-detail").is_some());
    assert_eq!(reply.header("x-hookgate-upstream-status"), None);
}

/// An event cut short at any point is not JSON: 400, nothing sent.
#[test]
fn truncated_events_are_refused() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let whole = event(&unique_name("Cut"), &receiver.url("/"));
    let mut cuts = 0;
    for cut in (1..whole.len()).step_by(whole.len() / 12) {
        assert_refused(&gw.post(&whole[..cut]), 400);
        cuts += 1;
    }
    assert!(cuts >= 12);
    assert_eq!(receiver.records().len(), 0);
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
}

/// 100 000 nested arrays (or objects): where the contract wants a shape (the event, the
/// webhook, a string field, `variables`), 400; inside a value that travels as written (a
/// variable's value), it is valid JSON and travels byte for byte. Never a crash: the next
/// request is served.
#[test]
fn deep_nesting_in_events() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let url = receiver.url("/");
    let arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let objects = format!("{}1{}", "{\"a\":".repeat(80_000), "}".repeat(80_000));
    let name = unique_name("Deep");
    let refused = [
        arrays.clone(),
        objects.clone(),
        format!(r#"{{"webhook":{arrays},"automation_id":"1"}}"#),
        format!(
            r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","title":{objects}}}"#
        ),
        format!(
            r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","variables":{arrays}}}"#
        ),
        format!(r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":{arrays}}}"#),
        // Unclosed: 100 000 opening brackets and nothing else.
        "[".repeat(100_000),
    ];
    for body in &refused {
        assert!(body.len() < 512 * 1024);
        assert_refused(&gw.post(body), 400);
    }
    assert_eq!(receiver.records().len(), 0);

    let shallower = format!("{}1{}", "{\"a\":".repeat(30_000), "}".repeat(30_000));
    let deep_value = format!(
        r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","variables":[{{"v":{arrays}}}],"extra":{shallower}}}"#
    );
    assert!(deep_value.len() < 512 * 1024);
    let reply = gw.post(&deep_value);
    assert_answer(&reply, 200, "yes", 1, "{}");
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let sent = String::from_utf8(records[0].body.clone()).unwrap();
    assert!(
        sent.ends_with(&format!(r#""variables":[{{"v":{arrays}}}]}}]"#)),
        "the deep value travels as written"
    );
    assert!(!sent.contains("extra"));
}

/// Strings up to the cap: a 500 KiB title and a variable full of escapes and non-ASCII
/// characters travel as written; one byte over `max_event_bytes` is 413.
#[test]
fn huge_strings_within_the_cap_travel_as_written() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let name = unique_name("Huge");
    let url = receiver.url("/");
    let skeleton = format!(
        r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","title":"","variables":{{"v":"{}"}}}}"#,
        "\\\"é\\u00e9\\n".repeat(1000)
    );
    let room = 512 * 1024 - skeleton.len();
    let title = "t".repeat(room);
    let body = skeleton.replacen(r#""title":"""#, &format!(r#""title":"{title}""#), 1);
    assert_eq!(body.len(), 512 * 1024);
    let reply = gw.post(&body);
    assert_answer(&reply, 200, "yes", 1, "{}");
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let sent: Value = serde_json::from_slice(&records[0].body).unwrap();
    assert_eq!(sent[0]["title"].as_str().map(str::len), Some(room));
    assert_eq!(
        sent[0]["variables"][0]["v"].as_str(),
        Some("\"éé\n".repeat(1000).as_str())
    );
    let over = skeleton.replacen(r#""title":"""#, &format!(r#""title":"{}t""#, title), 1);
    assert_refused(&gw.post(&over), 413);
    assert_eq!(receiver.records().len(), 1);
}

/// Content types other than `application/json` (absent, `+json` suffixes, `text/json`,
/// multipart): 415 before the body is read.
#[test]
fn wrong_content_types_are_refused() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Type"), &receiver.url("/"));
    for content_type in [
        "application/ld+json",
        "text/json",
        "multipart/form-data; boundary=x",
        "json",
        "",
    ] {
        let reply = gw.post_with(&body, &[("content-type", content_type)]);
        assert_refused(&reply, 415);
    }
    let missing = format!(
        "POST / HTTP/1.1\r\nhost: gw\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_refused(&gw.raw(missing.as_bytes()), 415);
    assert_eq!(receiver.records().len(), 0);
}

/// Empty bodies however framed (no length at all, an empty chunked body, only whitespace): 400.
#[test]
fn empty_bodies_are_refused() {
    let gw = gateway();
    let json = "content-type: application/json\r\nconnection: close\r\n";
    for request in [
        format!("POST / HTTP/1.1\r\nhost: gw\r\n{json}\r\n"),
        format!("POST / HTTP/1.1\r\nhost: gw\r\n{json}transfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST / HTTP/1.1\r\nhost: gw\r\n{json}content-length: 4\r\n\r\n \r\n\t"),
    ] {
        assert_refused(&gw.raw(request.as_bytes()), 400);
    }
}

/// HEAD and OPTIONS (GET, PUT, DELETE, PATCH: tests/core.rs): 405 with the envelope. A reply
/// to HEAD has no body by HTTP's rules; its headers still say 405, `no`, application/json and
/// the envelope's length.
#[test]
fn head_and_options_are_refused() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let body = event(&unique_name("Method"), &receiver.url("/"));
    let options = format!(
        "OPTIONS / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_refused(&gw.raw(options.as_bytes()), 405);

    let mut stream = support::http::connect(gw.port).unwrap();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status_line, headers) = support::http::read_head(&mut reader).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 405"), "{status_line}");
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(find("x-hookgate-delivered"), Some("no"), "{headers:?}");
    assert_eq!(find("content-type"), Some("application/json"));
    let envelope = r#"[{"status":false,"message":"Error during query execution","code":21111011}]"#;
    assert_eq!(
        find("content-length"),
        Some(envelope.len().to_string().as_str())
    );
    assert_eq!(receiver.records().len(), 0);
}

/// Invalid UTF-8 anywhere in the event (a field sent on, the name, the URL, a variable, a field
/// hookgate ignores, a key): not JSON: 400, nothing sent.
#[test]
fn invalid_utf8_in_events_is_refused() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let url = receiver.url("/");
    let name = unique_name("Bytes");
    let cases: Vec<Vec<u8>> = vec![
        format!(r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","title":"X"}}"#).into_bytes(),
        format!(r#"{{"webhook":{{"name":"{name}X","url":"{url}"}},"automation_id":"1"}}"#).into_bytes(),
        format!(r#"{{"webhook":{{"name":"{name}","url":"{url}X"}},"automation_id":"1"}}"#).into_bytes(),
        format!(r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","variables":{{"v":"X"}}}}"#).into_bytes(),
        format!(r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","ignored":"X"}}"#).into_bytes(),
        format!(r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","X":1}}"#).into_bytes(),
        format!(r#"{{"event":"spam","email":"X","webhook":{{"name":"{name}","url":"{url}"}}}}"#).into_bytes(),
    ];
    for bad in [&b"\xff"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"] {
        for case in &cases {
            let at = case.iter().position(|&b| b == b'X').unwrap();
            let mut body = case[..at].to_vec();
            body.extend_from_slice(bad);
            body.extend_from_slice(&case[at + 1..]);
            let reply =
                support::http::post(gw.port, "/", &body, &[]).expect("an answer to every request");
            assert_refused(&reply, 400);
        }
    }
    assert_eq!(receiver.records().len(), 0);
    // The same events with valid characters in place go through (the cases are otherwise good).
    let good = String::from_utf8(cases[0].clone())
        .unwrap()
        .replace('X', "é");
    assert_answer(&gw.post(&good), 200, "yes", 1, "{}");
}

/// A chunked event with trailers: the trailers end the body like the last chunk does; the
/// event is checked and rewritten as any other, and neither the trailers nor the engine's
/// headers travel.
#[test]
fn an_event_with_trailers_is_checked_like_any_other() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let body = event(&unique_name("Trailer"), &receiver.url("/"));
    let mut request = b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ntrailer: x-trailer\r\nconnection: close\r\n\r\n".to_vec();
    for chunk in body.as_bytes().chunks(50) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nx-trailer: secret\r\n\r\n");
    let reply = gw.raw(&request);
    assert_answer(&reply, 200, "yes", 1, r#"{"ok":1}"#);
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].header("x-trailer"), None);
    assert!(!String::from_utf8_lossy(&records[0].body).contains("secret"));
    // A bad event with trailers is refused like any other.
    let bad = b"POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\nnope\r\n0\r\nx-trailer: 1\r\n\r\n";
    assert_refused(&gw.raw(bad), 400);
    assert_eq!(receiver.records().len(), 1);
}

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
    std::thread::sleep(Duration::from_millis(1000));
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

/// HTTP/2 (the listener speaks it: `codec_type: AUTO`) carries request trailers to the filters,
/// unlike HTTP/1 where Envoy drops them: the event must still be checked and rewritten, and a
/// request must never pass unchecked because its body ended with trailers instead of END_STREAM.
#[test]
fn an_http2_event_with_trailers_is_checked_like_any_other() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":2}"#));
    let body = event(&unique_name("H2Trailer"), &receiver.url("/"));
    let (status, answer) = h2_post_with_trailers(gw.port, "/", body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let envelope: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        envelope,
        json!([{"status": true, "message": "{\"ok\":2}", "code": 1}])
    );
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].header("x-trailer"), None);
    // A request aimed straight at the forward proxy (the route marker set by the caller, a
    // receiver as authority) goes nowhere with trailers either.
    let direct = Receiver::start(Behaviour::json(200, "{}"));
    let (status, answer) = h2_post_with_trailers_to(
        gw.port,
        &format!("127.0.0.1:{}", direct.port),
        &[("x-hookgate-route", "http")],
        b"{}",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(direct.records().len(), 0);
    assert_eq!(*direct.connections.lock().unwrap(), 0);
    let (status, _) = h2_post_with_trailers(gw.port, "/", b"nope");
    assert_eq!(status, 400);
}

fn h2_post_with_trailers(port: u16, _path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    h2_post_with_trailers_to(port, "gw", &[], body)
}

fn h2_post_with_trailers_to(
    port: u16,
    authority: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    support::h2::post(port, authority, extra, body, Some(("x-trailer", "secret")))
        .expect("an HTTP/2 answer")
}
