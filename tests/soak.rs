//! A bounded soak. 3000 mixed good and bad requests from 12 client threads over Envoy
//! with two workers, to receivers that answer well, badly (text, 500), too late for the 1 s route
//! timeout, close after reading, or are not there at all. Afterwards: no wasm VM failure in
//! Envoy's stats or log, every answer is a well-formed envelope with a documented status, header
//! and code, every outcome is the one its request must get, and the books balance between what
//! the engine was told and what the receivers recorded (nothing lost, nothing doubled).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{unique_name, Behaviour, EnvoyConfig, Gateway, Receiver, Reply};

const REQUESTS: usize = 3000;
const CLIENTS: usize = 12;

/// What one request is, and so what it must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The pre-verified webhook (`limit.verified`), a receiver answering JSON.
    Verified,
    /// A webhook name of its own, a receiver answering JSON.
    Fresh,
    /// The receiver answers text.
    Text,
    /// The receiver answers 500.
    Error,
    /// The receiver answers after 2 s; the route timeout is 1 s.
    Slow,
    /// The receiver reads the webhook and closes the connection.
    Closes,
    /// Nothing listens.
    Down,
    BadJson,
    BadName,
    Get,
    TextPlain,
    Blocked,
    /// The second send of an unverified webhook within the hour (its first is a `Fresh`).
    Limited,
}

impl Kind {
    fn of(i: usize) -> Kind {
        match i % 50 {
            25..=29 => Kind::Fresh,
            30 | 31 => Kind::Text,
            32 | 33 => Kind::Error,
            34 => Kind::Slow,
            35 => Kind::Closes,
            36 => Kind::Down,
            37 => Kind::BadJson,
            38 => Kind::BadName,
            39 => Kind::Get,
            40 => Kind::TextPlain,
            41 => Kind::Blocked,
            42 => Kind::Limited,
            _ => Kind::Verified,
        }
    }

    /// The documented answer: HTTP status, `x-hookgate-delivered`, envelope code.
    fn expected(self) -> (u16, &'static str, u64) {
        match self {
            Kind::Verified | Kind::Fresh => (200, "yes", 1),
            Kind::Text => (200, "yes", 11110112),
            Kind::Error => (200, "yes", 11110111),
            Kind::Slow | Kind::Closes => (504, "unknown", 11110111),
            Kind::Down => (502, "no", 11110111),
            Kind::BadJson | Kind::BadName => (400, "no", 21111011),
            Kind::Get => (405, "no", 21111011),
            Kind::TextPlain => (415, "no", 21111011),
            Kind::Blocked => (403, "no", 11110114),
            Kind::Limited => (429, "no", 11110113),
        }
    }
}

/// The documented message of each code, and whether `status` is true.
fn documented(code: u64) -> Option<(&'static str, bool)> {
    Some(match code {
        1 => ("", true),
        11110111 => ("The request failed", false),
        11110112 => ("Invalid response format. Expects json!", false),
        11110113 => ("The request did not pass code verification", false),
        11110114 => ("Incorrect url ip", false),
        21111011 => ("Error during query execution", false),
        _ => return None,
    })
}

struct Outcome {
    id: String,
    kind: Kind,
    status: u16,
    delivered: String,
    code: u64,
}

struct Rig {
    gw: Gateway,
    verified_url: String,
    urls: HashMap<&'static str, String>,
    receivers: Vec<Receiver>,
}

fn rig() -> Rig {
    let good = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let text = Receiver::start(Behaviour::with_type(200, "text/plain", b"OK"));
    let error = Receiver::start(Behaviour::json(500, r#"{"error":"boom"}"#));
    let slow = Receiver::start(Behaviour::Delay(
        Duration::from_secs(2),
        Box::new(Behaviour::json(200, "{}")),
    ));
    let closes = Receiver::start(Behaviour::CloseAfterRead);
    let verified_url = good.url("/verified");
    let plugin = serde_json::json!({
        "destination": {"allow": [{"cidr": "127.0.0.1/32"}]},
        "limit": {"verified": [{"name": "SoakVerified", "url": verified_url}]},
    });
    let gw = Gateway::start_with(
        EnvoyConfig::load("envoy/envoy.yaml")
            .plugin_config(&plugin.to_string())
            .route_timeout("1s"),
        2,
        &[],
    );
    let urls = HashMap::from([
        ("good", good.url("/fresh")),
        ("text", text.url("/")),
        ("error", error.url("/")),
        ("slow", slow.url("/")),
        ("closes", closes.url("/")),
        (
            "down",
            format!("http://127.0.0.1:{}/", support::free_port()),
        ),
    ]);
    Rig {
        gw,
        verified_url,
        urls,
        receivers: vec![good, text, error, slow, closes],
    }
}

/// An automation event whose `variables` carry the request's id.
fn soak_event(name: &str, url: &str, id: &str) -> String {
    format!(
        r#"{{"webhook":{{"name":"{name}","url":"{url}"}},"automation_id":"1","title":"soak","email":"a@b.c","variables":{{"soak_id":"{id}"}}}}"#
    )
}

/// Sends the requests of index `i` (two for a `Limited` pair) and returns their outcomes.
fn run_one(rig: &Rig, i: usize) -> Vec<Outcome> {
    let kind = Kind::of(i);
    let id = format!("s{i}");
    let gw = &rig.gw;
    let url = |k: &str| rig.urls[k].clone();
    let post = |body: &str| gw.post(body);
    let mut out = Vec::new();
    let mut record = |id: String, kind: Kind, reply: Reply| {
        out.push(judge(id, kind, &reply));
    };
    match kind {
        Kind::Verified => record(
            id.clone(),
            kind,
            post(&soak_event("SoakVerified", &rig.verified_url, &id)),
        ),
        Kind::Fresh => record(
            id.clone(),
            kind,
            post(&soak_event(&unique_name("SoakFresh"), &url("good"), &id)),
        ),
        Kind::Text | Kind::Error | Kind::Slow | Kind::Closes | Kind::Down => {
            let which = match kind {
                Kind::Text => "text",
                Kind::Error => "error",
                Kind::Slow => "slow",
                Kind::Closes => "closes",
                _ => "down",
            };
            let name = unique_name("Soak");
            record(id.clone(), kind, post(&soak_event(&name, &url(which), &id)));
        }
        Kind::BadJson => record(id.clone(), kind, post(&format!("{{\"soak_id\":\"{id}\""))),
        Kind::BadName => record(
            id.clone(),
            kind,
            post(&soak_event("Bad Name", &url("good"), &id)),
        ),
        Kind::Get => {
            let body = soak_event(&unique_name("SoakGet"), &url("good"), &id);
            let request = format!(
                "GET / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            record(id.clone(), kind, gw.raw(request.as_bytes()));
        }
        Kind::TextPlain => record(
            id.clone(),
            kind,
            gw.post_with(
                &soak_event(&unique_name("SoakType"), &url("good"), &id),
                &[("content-type", "text/plain")],
            ),
        ),
        Kind::Blocked => record(
            id.clone(),
            kind,
            post(&soak_event(
                &unique_name("SoakBlocked"),
                "http://169.254.169.254/latest",
                &id,
            )),
        ),
        Kind::Limited => {
            let name = unique_name("SoakLimited");
            let first = format!("{id}a");
            record(
                first.clone(),
                Kind::Fresh,
                post(&soak_event(&name, &url("good"), &first)),
            );
            let second = format!("{id}b");
            record(
                second.clone(),
                Kind::Limited,
                post(&soak_event(&name, &url("good"), &second)),
            );
        }
    }
    out
}

/// Checks that the answer is a well-formed envelope with a documented combination, and reads it.
fn judge(id: String, kind: Kind, reply: &Reply) -> Outcome {
    let context = || {
        format!(
            "{id} {kind:?}: {} {:?} {}",
            reply.status,
            reply.headers,
            reply.text()
        )
    };
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        context()
    );
    let delivered = reply
        .header("x-hookgate-delivered")
        .unwrap_or_else(|| panic!("no x-hookgate-delivered: {}", context()))
        .to_string();
    let envelope: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", context()));
    let items = envelope
        .as_array()
        .unwrap_or_else(|| panic!("{}", context()));
    assert_eq!(items.len(), 1, "{}", context());
    let item = items[0]
        .as_object()
        .unwrap_or_else(|| panic!("{}", context()));
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "status"], "{}", context());
    let code = item["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}", context()));
    let (message, status) = documented(code).unwrap_or_else(|| panic!("{}", context()));
    assert_eq!(item["status"].as_bool(), Some(status), "{}", context());
    if code != 1 {
        assert_eq!(item["message"].as_str(), Some(message), "{}", context());
    }
    // Documented pairs of HTTP status and delivered header.
    let pair_ok = match (reply.status, delivered.as_str()) {
        (200, "yes") => true,
        (504, "unknown") => code == 11110111,
        (400 | 403 | 405 | 413 | 415 | 429 | 502 | 503 | 500, "no") => true,
        _ => false,
    };
    assert!(pair_ok, "undocumented status/delivered: {}", context());
    Outcome {
        id,
        kind,
        status: reply.status,
        delivered,
        code,
    }
}

/// Envoy's wasm counters and gauges, by name.
fn wasm_stats(gw: &Gateway) -> BTreeMap<String, u64> {
    let text = support::http::get(gw.admin_port, "/stats").unwrap().text();
    text.lines()
        .filter(|l| l.contains("wasm") && !l.starts_with("wasmcustom."))
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn soak_mixed_traffic_balances_the_books() {
    let rig = Arc::new(rig());
    let before = wasm_stats(&rig.gw);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS + REQUESTS / 50)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (rig, next, outcomes) = (rig.clone(), next.clone(), outcomes.clone());
            std::thread::spawn(move || {
                for _ in 0..REQUESTS {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= REQUESTS {
                        return;
                    }
                    let done = run_one(&rig, i);
                    outcomes.lock().unwrap().extend(done);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let took = started.elapsed();
    // The slow receiver's sleeping threads answer into closed connections; nothing else is due.
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let gw = &rig.gw;

    // Every outcome is the one its request must get.
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for outcome in &outcomes {
        *by_kind.entry(format!("{:?}", outcome.kind)).or_default() += 1;
        let got = (outcome.status, outcome.delivered.as_str(), outcome.code);
        if got != outcome.kind.expected() {
            wrong.push(format!("{} {:?}: got {got:?}", outcome.id, outcome.kind));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} unexpected outcomes, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(outcomes.len(), REQUESTS + REQUESTS / 50);

    // The books: receivers' records against the engine's answers.
    let mut recorded: HashMap<String, usize> = HashMap::new();
    let mut records_total = 0;
    for receiver in &rig.receivers {
        for record in receiver.records() {
            records_total += 1;
            let sent: Value = serde_json::from_slice(&record.body).expect("a JSON webhook");
            let id = sent[0]["variables"][0]["soak_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a webhook without soak_id: {sent}"))
                .to_string();
            *recorded.entry(id).or_default() += 1;
        }
    }
    let answers: HashMap<&str, &Outcome> = outcomes.iter().map(|o| (o.id.as_str(), o)).collect();
    assert_eq!(answers.len(), outcomes.len(), "ids are unique");
    let doubled: Vec<_> = recorded.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "recorded twice: {doubled:?}");
    for id in recorded.keys() {
        let answer = answers
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} recorded but never answered"));
        assert!(
            answer.delivered == "yes" || answer.delivered == "unknown",
            "{id} recorded but answered {} {}",
            answer.status,
            answer.delivered
        );
    }
    let (mut yes, mut unknown, mut no, mut unknown_recorded) = (0, 0, 0, 0);
    for outcome in &outcomes {
        let n = recorded.get(&outcome.id).copied().unwrap_or(0);
        match outcome.delivered.as_str() {
            "yes" => {
                yes += 1;
                assert_eq!(n, 1, "{} answered yes, recorded {n} times", outcome.id);
            }
            "unknown" => {
                unknown += 1;
                unknown_recorded += n;
            }
            _ => {
                no += 1;
                assert_eq!(n, 0, "{} answered no, recorded {n} times", outcome.id);
            }
        }
    }
    assert_eq!(records_total, yes + unknown_recorded);

    // No wasm VM failure; hookgate never failed internally; nothing panicked.
    let after = wasm_stats(gw);
    let failures: Vec<_> = after
        .iter()
        .filter(|(name, value)| {
            (name.contains("fail") || name.contains("crash") || name.contains("abort"))
                && **value > before.get(*name).copied().unwrap_or(0)
        })
        .collect();
    assert!(failures.is_empty(), "wasm failures: {failures:?}");
    for (name, value) in &after {
        if name.ends_with(".created") {
            assert_eq!(
                Some(value),
                before.get(name),
                "{name}: a VM was created during the soak (a failed one replaced?)"
            );
        }
    }
    for name in ["wasm.hookgate.vm_reload", "wasm.hookgate.vm_reload_failure"] {
        assert_eq!(after.get(name).copied().unwrap_or(0), 0, "{name}");
    }
    assert_eq!(
        after.get("wasm.wasm_vm_count"),
        before.get("wasm.wasm_vm_count")
    );

    let logs = gw.logs();
    for bad in [
        "panicked",
        "wasm trap",
        "Failed to",
        "VM failed",
        "Function: proxy_",
    ] {
        assert!(!logs.contains(bad), "envoy log has {bad:?}");
    }
    // Every webhook hookgate let go was either answered by a receiver, unknown, or never sent
    // because nothing listened.
    // hookgate's counters reach Envoy on each worker's tick (every second).
    let down = outcomes.iter().filter(|o| o.kind == Kind::Down).count();
    let read_sent = || {
        gw.stat("wasmcustom.hookgate.sent.plan.default")
            .unwrap_or(0) as usize
    };
    support::settles("hookgate sent", read_sent, yes + unknown + down);
    let sent = read_sent();
    let internal = gw
        .stat("wasmcustom.hookgate.outcomes.plan.default.outcome.internal.code.21111011")
        .unwrap_or(0);
    assert_eq!(internal, 0, "internal failures");
    eprintln!(
        "soak: {} answers ({} requests) from {CLIENTS} clients in {:.1} s; yes {yes}, unknown {unknown} ({unknown_recorded} recorded), no {no}; receivers recorded {records_total}; hookgate sent {sent}; by kind {by_kind:?}; wasm stats {after:?}",
        outcomes.len(),
        REQUESTS,
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(120),
        "the soak is bounded: {took:?}"
    );
}
