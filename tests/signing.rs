//! Issue 9 end to end: signed webhooks (Standard Webhooks). Every signed delivery is verified by
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
