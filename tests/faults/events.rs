//! Engine faults in the event: broken, deep, huge, empty, mistyped or non-POST events, invalid
//! UTF-8, trailers over HTTP/1 and HTTP/2.

use crate::support::{self, assert_answer, event, unique_name, Behaviour, Receiver};
use crate::{assert_refused, gateway};
use serde_json::{json, Value};
use std::io::{BufReader, Write};

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
