//! Give-back rules: sends that never left (or that Envoy's destination RBAC refused) give the
//! slot back; sends whose outcome is unclear keep it used.

use crate::support::http::{read_body, read_head};
use crate::support::{
    self, assert_delivered, assert_over_limit, event, unique_name, Behaviour, Gateway, Receiver,
};
use crate::{config, gateway, test_report};
use serde_json::json;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minimal receiver on a chosen loopback port: answers `{}` and counts requests.
fn listen_on(port: u16) -> Arc<Mutex<u32>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let count = Arc::new(Mutex::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(100) {
            let counter = counter.clone();
            std::thread::spawn(move || answer_empty_object(stream, &counter));
        }
    });
    count
}

fn answer_empty_object(stream: TcpStream, count: &Mutex<u32>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    for _ in 0..100 {
        let Ok((_, headers)) = read_head(&mut reader) else {
            return;
        };
        if read_body(&mut reader, &headers, false).is_err() {
            return;
        }
        *count.lock().unwrap() += 1;
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if std::io::Write::write_all(&mut write_half, answer).is_err() {
            return;
        }
    }
}

#[test]
fn sends_that_never_left_give_the_slot_back() {
    let gw = gateway(&json!({}));
    let name = unique_name("Back");

    // Refused by the filter's destination policy: the limit is never consulted.
    let blocked = event(&name, "http://127.0.0.2:9/");
    for _ in 0..2 {
        let reply = gw.post(&blocked);
        assert_eq!(reply.status, 403, "{}", reply.text());
        assert_eq!(reply.json()[0]["code"], 11110114);
        assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    }

    // Connection refused (nothing listens yet): never sent, so the slot comes back each time.
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}/back");
    let body = event(&name, &url);
    for _ in 0..3 {
        let reply = gw.post(&body);
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert_eq!(reply.json()[0]["code"], 11110111);
        assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    }
    let (_, report) = test_report(&gw, &body);
    assert_eq!(report["limit"]["sends_in_window"], 0, "{report}");
    // The same webhook, once its receiver listens: delivered, then limited.
    let count = listen_on(port);
    assert_delivered(&gw.post(&body), "{}");
    assert_over_limit(&gw.post(&body));
    assert_eq!(*count.lock().unwrap(), 1);
}

#[test]
fn sends_refused_by_envoys_destination_rbac_give_the_slot_back() {
    let gw = gateway(&json!({}));
    let name = unique_name("Rbac");
    // mixed.test resolves (in the test namespace) to 127.0.0.2 first, which Envoy's RBAC refuses
    // after hookgate took the slot: the filter cannot judge a name.
    let receiver = Receiver::start_on("127.0.0.2", Behaviour::json(200, "{}"));
    let body = event(&name, &format!("http://mixed.test:{}/rbac", receiver.port));
    let mut refused = 0;
    for _ in 0..3 {
        let reply = gw.post(&body);
        if reply.status == 403 {
            assert_eq!(reply.json()[0]["code"], 11110114);
            assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
            refused += 1;
        } else {
            panic!("expected Envoy's RBAC to refuse 127.0.0.2: {reply:?}");
        }
    }
    assert_eq!(refused, 3);
    assert!(receiver.records().is_empty());
    let (reply, report) = test_report(&gw, &body);
    assert_eq!(reply.status, 403);
    assert_eq!(report["limit"]["sends_in_window"], 0, "{report}");
}

#[test]
fn unclear_outcomes_keep_the_slot_used() {
    let gw = Gateway::start_with(config(&json!({})).route_timeout("1s"), 2, &[]);
    let receiver = Receiver::start(Behaviour::Delay(
        Duration::from_secs(3),
        Box::new(Behaviour::json(200, "{}")),
    ));
    // Route timeout: the webhook may have arrived.
    let body = event(&unique_name("Slow"), &receiver.url("/slow"));
    let reply = gw.post(&body);
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("unknown"));
    assert_eq!(reply.json()[0]["code"], 11110111);
    receiver.set(Behaviour::json(200, "{}"));
    assert_over_limit(&gw.post(&body));
    assert_eq!(receiver.received_on("/slow"), 1);

    // The receiver reads the webhook and closes without answering.
    receiver.set(Behaviour::CloseAfterRead);
    let body = event(&unique_name("Closed"), &receiver.url("/closed"));
    let reply = gw.post(&body);
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("unknown"));
    receiver.set(Behaviour::json(200, "{}"));
    assert_over_limit(&gw.post(&body));
    assert_eq!(receiver.received_on("/closed"), 1);

    // A non-2xx answer is a delivery too.
    receiver.set(Behaviour::json(500, "{}"));
    let body = event(&unique_name("Five"), &receiver.url("/500"));
    let reply = gw.post(&body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()[0]["code"], 11110111);
    assert_over_limit(&gw.post(&body));
    assert_eq!(receiver.received_on("/500"), 1);
}
