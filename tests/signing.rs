//! End to end: signed webhooks (Standard Webhooks). Every signed delivery is verified by
//! the specification's own reference library (PyPI `standardwebhooks`, installed by
//! scripts/ensure-standardwebhooks.sh before the tests enter their network namespace).
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{event, loopback_config, repo, Behaviour, Gateway, Receiver};

/// Two secrets for the webhook named `Orders` (the new one first, the old one kept for rotation);
/// no default, so any other name goes unsigned.
const NEW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn gateway() -> Gateway {
    Gateway::start(loopback_config().edit_plugin_configs(|config| {
        config["signing"] = json!({"secrets": {"Orders": [NEW_SECRET, OLD_SECRET]}});
    }))
}

/// The reference library's verdict on one request: Ok, or the library's reason.
/// `clock_offset` moves the verifier's clock (seconds) to judge an old delivery.
const VERIFIER: &str = r#"
import datetime, json, sys
import standardwebhooks.webhooks as w
case = json.load(sys.stdin)
real = datetime.datetime
class Clock(real):
    @classmethod
    def now(cls, tz=None):
        return real.now(tz) + datetime.timedelta(seconds=case["clock_offset"])
w.datetime = Clock
try:
    w.Webhook(case["secret"]).verify(case["body"].encode(), case["headers"])
    print("ok")
except w.WebhookVerificationError as e:
    print("rejected:", e)
"#;

fn verify(
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
    clock_offset: i64,
) -> Result<(), String> {
    let python = repo().join(".tools/standardwebhooks-venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/ensure-standardwebhooks.sh",
        python.display()
    );
    let case = json!({
        "secret": secret,
        "headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "body": String::from_utf8(body.to_vec()).unwrap(),
        "clock_offset": clock_offset,
    });
    let mut child = Command::new(python)
        .args(["-c", VERIFIER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text == "ok" {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn signed_deliveries_verify_with_the_reference_library_and_tampering_or_age_is_rejected() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let reply = gw.post(&event("Orders", &receiver.url("/hooks")));
    assert_eq!(
        reply.header("x-hookgate-delivered"),
        Some("yes"),
        "{}",
        reply.text()
    );
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let got = &records[0];
    let id = got.header("webhook-id").unwrap();
    assert!(id.starts_with("msg_"), "{id}");
    let timestamp: u64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(timestamp.abs_diff(now) <= 5, "{timestamp} vs {now}");
    let signatures: Vec<&str> = got
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(signatures.len(), 2, "one per secret: {signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    // Either secret verifies: a receiver still on the old one and one already on the new one.
    for secret in [NEW_SECRET, OLD_SECRET] {
        assert_eq!(verify(secret, &got.headers, &got.body, 0), Ok(()));
    }
    // A secret the receiver does not share, a changed body, a changed id, an old delivery.
    let stranger = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert!(verify(stranger, &got.headers, &got.body, 0).is_err());
    let mut tampered = got.body.clone();
    let at = tampered.iter().position(|&b| b == b'1').unwrap();
    tampered[at] = b'2';
    let rejected = verify(NEW_SECRET, &got.headers, &tampered, 0).unwrap_err();
    assert!(rejected.contains("No matching signature"), "{rejected}");
    let mut other_id = got.headers.clone();
    for (k, v) in &mut other_id {
        if k == "webhook-id" {
            v.push('x');
        }
    }
    assert!(verify(NEW_SECRET, &other_id, &got.body, 0).is_err());
    let stale = verify(NEW_SECRET, &got.headers, &got.body, 600).unwrap_err();
    assert!(stale.contains("too old"), "{stale}");
}

#[test]
fn the_test_report_shows_the_signing_headers_and_no_secret() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let reply = gw.post_with(
        &event("Orders", &receiver.url("/")),
        &[("x-hookgate-test", "true")],
    );
    let report = reply.json();
    let sent = &report["request"]["headers"];
    let got = &receiver.records()[0];
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(sent[name].as_str(), got.header(name), "{name}: {report}");
    }
    let secret_texts = [NEW_SECRET, OLD_SECRET, &NEW_SECRET[6..], &OLD_SECRET[6..]];
    for text in [reply.text(), gw.logs()] {
        for secret in secret_texts {
            assert!(!text.contains(secret), "a secret shown");
        }
    }
}

#[test]
fn webhooks_without_a_secret_go_unsigned() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let reply = gw.post(&event("Invoices", &receiver.url("/")));
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    let got = &receiver.records()[0];
    let mut names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["content-length", "content-type", "host", "user-agent"]
    );
}

#[test]
fn the_engines_idempotency_key_is_the_webhook_id_and_generated_ids_differ() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    // One path per delivery: each is a webhook of its own for the hourly limit.
    let body = |n: usize| event("Orders", &receiver.url(&format!("/{n}")));
    // A resend of the same event keeps its id: the receiver can drop the duplicate.
    for n in 0..2 {
        let reply = gw.post_with(&body(n), &[("idempotency-key", "evt_2024-01:42")]);
        assert_eq!(
            reply.header("x-hookgate-delivered"),
            Some("yes"),
            "{}",
            reply.text()
        );
    }
    // Without a key every delivery has its own id.
    for n in 2..5 {
        let reply = gw.post(&body(n));
        assert_eq!(
            reply.header("x-hookgate-delivered"),
            Some("yes"),
            "{}",
            reply.text()
        );
    }
    let records = receiver.records();
    assert_eq!(records.len(), 5);
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(&ids[..2], ["evt_2024-01:42", "evt_2024-01:42"]);
    let generated: std::collections::BTreeSet<&str> = ids[2..].iter().copied().collect();
    assert_eq!(generated.len(), 3, "{ids:?}");
    for record in &records {
        assert_eq!(verify(OLD_SECRET, &record.headers, &record.body, 0), Ok(()));
    }
    // A key that cannot be a webhook-id is refused before anything is sent.
    let reply = gw.post_with(&body(5), &[("idempotency-key", "has space.and dot")]);
    assert_eq!(
        reply.header("x-hookgate-delivered"),
        Some("no"),
        "{}",
        reply.text()
    );
    assert_eq!(receiver.records().len(), 5);
}

/// One `idempotency-key` rule for every webhook, signed or not: 1 to 128 of `A-Z a-z 0-9 _ - :`,
/// one header at most; anything else is refused with 400 / 21111011 and nothing is sent. An
/// unsigned webhook is exactly the document's: a valid key is checked, not sent.
#[test]
fn the_idempotency_key_is_checked_for_every_webhook_and_given_once() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let too_long = "k".repeat(129);
    for name in ["Unsigned", "Orders"] {
        let body = event(name, &receiver.url(&format!("/{name}")));
        for bad in ["has space", "semi;colon", too_long.as_str(), "é"] {
            let reply = gw.post_with(&body, &[("idempotency-key", bad)]);
            support::assert_answer(&reply, 400, "no", 21111011, support::QUERY_ERROR);
        }
        let twice = [("idempotency-key", "evt-1"), ("idempotency-key", "evt-2")];
        let reply = gw.post_with(&body, &twice);
        support::assert_answer(&reply, 400, "no", 21111011, support::QUERY_ERROR);
        assert_eq!(
            reply.header("x-hookgate-detail"),
            Some("invalid event: idempotency-key header given more than once")
        );
        assert!(receiver.records().is_empty(), "{name}: something was sent");
    }
    let key = [("idempotency-key", "evt_2024-01:42")];
    let reply = gw.post_with(&event("Unsigned", &receiver.url("/u")), &key);
    support::assert_answer(&reply, 200, "yes", 1, r#"{"ok":true}"#);
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    for name in ["idempotency-key", "webhook-id", "webhook-signature"] {
        assert_eq!(records[0].header(name), None, "{name}");
    }
}

/// Generated ids carry the Envoy's node id, from `--service-node` or from `node.id` in the
/// bootstrap: `msg_<time>_<node>_<worker>_<counter>`, so two Envoys never make the same id, and a
/// restarted Envoy's ids differ from its earlier ones (the time part moves on).
#[test]
fn generated_ids_carry_the_node_id_and_stay_distinct_across_envoys_and_restarts() {
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let config = loopback_config().edit_plugin_configs(|config| {
        config["signing"] = json!({"secrets": {"Orders": [NEW_SECRET]}});
        config["limit"] = json!({"unverified_per_hour": 1000});
    });
    let bootstrap = config.clone().edit(|yaml| {
        yaml["node"] = serde_yaml::from_str("{id: bootnode1}").unwrap();
    });
    let by_flag = || Gateway::start_with(config.clone(), 1, &["--service-node", "hf-fleet-1"]);
    let send_two = |gw: &Gateway| {
        for _ in 0..2 {
            let reply = gw.post(&event("Orders", &receiver.url("/")));
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    };
    let first = by_flag();
    send_two(&first);
    send_two(&Gateway::start(bootstrap));
    drop(first);
    send_two(&by_flag());
    let ids: Vec<String> = receiver
        .records()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    let nodes: Vec<&str> = ids
        .iter()
        .map(|id| {
            let fields: Vec<&str> = id.split('_').collect();
            assert_eq!(fields.len(), 5, "{id}");
            assert_eq!(fields[0], "msg", "{id}");
            for hex in [fields[1], fields[3], fields[4]] {
                assert!(u64::from_str_radix(hex, 16).is_ok(), "{id}");
            }
            fields[2]
        })
        .collect();
    assert_eq!(
        nodes,
        [
            "hf-fleet-1",
            "hf-fleet-1",
            "bootnode1",
            "bootnode1",
            "hf-fleet-1",
            "hf-fleet-1"
        ],
        "{ids:?}"
    );
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 6, "{ids:?}");
}

// ---- Safe retries (the shipped route retry policy) ----

/// The shipped configuration (its retry policy untouched) with receivers on 127.0.0.1 and
/// 127.0.0.2 allowed in the plugin's policy (which feeds Envoy's guard before connecting).
fn retry_gateway() -> Gateway {
    support::dns::start();
    let config = support::EnvoyConfig::load("envoy/envoy.yaml").plugin_config(
        r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"},{"cidr":"127.0.0.2/32"}]}}"#,
    );
    Gateway::start(config)
}

/// The sum of one counter over every cluster (sub-clusters are named by host:port).
fn cluster_counter(gw: &Gateway, suffix: &str) -> u64 {
    let reply = support::http::get(gw.admin_port, &format!("/stats?filter={suffix}$")).unwrap();
    reply
        .text()
        .lines()
        .filter(|l| l.starts_with("cluster."))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn a_refused_first_connection_is_retried_and_delivered_exactly_once() {
    let gw = retry_gateway();
    // Listens on 127.0.0.1 only: a connection to 127.0.0.2 on the same port is refused.
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let retries_before = cluster_counter(&gw, "upstream_rq_retry");
    let deliveries = 4;
    for n in 0..deliveries {
        let url = format!("http://retry.dns.test:{}/{n}", receiver.port);
        let reply = gw.post_with(&event("Retried", &url), &[("x-hookgate-test", "true")]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
        // One send counted for this webhook, however many tries it took.
        assert_eq!(
            reply.json()["limit"]["sends_in_window"],
            1,
            "{}",
            reply.text()
        );
    }
    // Round robin over the two addresses: some first tries went to the refusing one.
    let retries = cluster_counter(&gw, "upstream_rq_retry") - retries_before;
    assert!(retries >= 1, "no try was refused and retried");
    assert!(cluster_counter(&gw, "upstream_cx_connect_fail") >= retries);
    let mut paths: Vec<String> = receiver
        .records()
        .iter()
        .map(|r| r.request_line.clone())
        .collect();
    paths.sort();
    let expected: Vec<String> = (0..deliveries)
        .map(|n| format!("POST /{n} HTTP/1.1"))
        .collect();
    assert_eq!(paths, expected, "each delivered exactly once");
}

#[test]
fn when_every_try_is_refused_it_was_never_sent_and_the_slot_is_given_back() {
    let gw = retry_gateway();
    // Nothing listens on this port on either address.
    let port = support::free_port();
    let url = format!("http://retry.dns.test:{port}/");
    let before = cluster_counter(&gw, "upstream_rq_retry");
    let reply = gw.post_with(&event("Refused", &url), &[("x-hookgate-test", "true")]);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    assert_eq!(
        reply.json()["limit"]["sends_in_window"],
        0,
        "{}",
        reply.text()
    );
    assert_eq!(
        cluster_counter(&gw, "upstream_rq_retry") - before,
        2,
        "num_retries"
    );
}

#[test]
fn a_receiver_that_never_completes_a_connection_uses_every_try_within_the_route_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connection to
    // it times out (the dropped-SYN receiver of a firewall).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..1000 {
        match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    assert!(held.len() < 1000, "the accept queue never filled");
    let gw = Gateway::start(loopback_config());
    let before = cluster_counter(&gw, "upstream_rq_retry");
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/", address.port());
    let reply = gw.post(&event("Blackhole", &url));
    let took = started.elapsed();
    // Three tries of the cluster's 3 s connect timeout, then Envoy's own connection-timeout
    // answer: before the route's 10 s timeout, which would hide why (response_timeout).
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The connection never completed: nothing reached the receiver.
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    let detail = reply.header("x-hookgate-detail").unwrap_or_default();
    assert!(detail.contains("connection_timeout"), "{detail}");
    assert_eq!(cluster_counter(&gw, "upstream_rq_retry") - before, 2);
    drop(held);
}
