//! Receiver faults: receivers that refuse, reset, stall, trickle, answer too much, answer bytes
//! that are not JSON, gzip, or any status.

use crate::support::receiver::Step;
use crate::support::{
    self, assert_answer, event, loopback_config, unique_name, Behaviour, Gateway, Receiver, Reply,
    FAILED, NOT_JSON,
};
use crate::{gateway, head};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// Posts an event and times the exchange.
fn timed_post(gw: &Gateway, body: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = gw.post(body);
    (reply, started.elapsed())
}
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
