//! End to end: where a webhook may go and who may call, through a real Envoy with the
//! shipped configurations. Run through scripts/test.sh: every test that starts Envoy first checks
//! it runs in a network namespace with only loopback, so a policy bug can only hit loopback.
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#[path = "../support/mod.rs"]
mod support;

mod after_dns;
mod callers;
mod destinations;
mod shipped;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{event, unique_name, EnvoyConfig, Gateway, Reply};

/// Plenty of sends per hour, so that repeated sends measure the destination policy only.
const HIGH_LIMIT: &str = r#""limit":{"unverified_per_hour":1000}"#;

/// The production configuration, with a limit high enough that no test here meets it.
fn shipped_high_limit() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(&format!("{{{HIGH_LIMIT}}}"))
}

/// The same with receivers on 127.0.0.1 allowed (in the plugin, which feeds Envoy's guard).
fn loopback_high_limit() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(&format!(
        r#"{{"destination":{{"allow":[{{"cidr":"127.0.0.1/32"}}]}},{HIGH_LIMIT}}}"#
    ))
}

// ---------------------------------------------------------------------------------------------
// Safety and fixtures

/// A listener that counts accepted connections and answers `200 {"ok":true}` to each request.
struct Counter {
    port: u16,
    accepted: Arc<AtomicU32>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Counter {
    fn start(address: &str, port: u16) -> Counter {
        let listener = TcpListener::bind((address, port))
            .unwrap_or_else(|e| panic!("bind {address}:{port}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU32::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(mut writer) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    while let Ok((line, headers)) = support::http::read_head(&mut reader) {
                        if support::http::read_body(&mut reader, &headers, false).is_err() {
                            return;
                        }
                        seen.lock().unwrap().push(line);
                        let body = br#"{"ok":true}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if writer.write_all(head.as_bytes()).is_err()
                            || writer.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Counter {
            port,
            accepted,
            requests,
        }
    }

    fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Adds an exception to the plugin's `destination.allow`, and nothing else: the guard before
/// connecting gets it from hookgate, per webhook.
fn except(config: EnvoyConfig, address: &str, prefix_len: u8, port: Option<u16>) -> EnvoyConfig {
    let cidr = format!("{address}/{prefix_len}");
    config.edit_plugin_configs(move |json| {
        let rule = match port {
            Some(p) => serde_json::json!({"cidr": cidr, "port": p}),
            None => serde_json::json!({"cidr": cidr}),
        };
        match json["destination"]["allow"].as_array_mut() {
            Some(allow) => allow.push(rule),
            None => json["destination"]["allow"] = serde_json::json!([rule]),
        }
    })
}

fn post(gw: &Gateway, url: &str) -> Reply {
    gw.post(&event(&unique_name("Dest"), url))
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"), "{what}");
    assert_eq!(
        reply.json(),
        serde_json::json!([{"status": false, "message": "Incorrect url ip", "code": 11110114}]),
        "{what}"
    );
}

fn code(reply: &Reply) -> u64 {
    reply.json()[0]["code"].as_u64().unwrap()
}
