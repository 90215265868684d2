//! The etcd backend against answers recorded from etcd 3.4.23 and against a fake etcd that
//! answers the JSON gateway as the real one does (same fields, int64 as strings, `succeeded`
//! omitted when false). Moves time by hand; interleaves operations to show the compares.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::limit::{KeyVerdict, LimitConfig, WINDOW_SECS};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

const T: u64 = 1_700_000_000;
/// Another webhook at the same URL.
const INVOICES: WebhookId<'static> = WebhookId {
    name: "invoices",
    ..HOOK
};
/// The first lease the fake grants, asked for at T.
const FIRST_GRANT: Lease = Lease {
    id: 7001,
    asked_at: T,
};
const HOOK: WebhookId<'static> = WebhookId {
    name: "orders",
    url: "https://example.com/hook",
    normalised: false,
};

// Answers recorded from etcd 3.4.23 (JSON gateway on loopback).
const RANGE_EMPTY: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"1","raft_term":"2"}}"#;
const LEASE_GRANT: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"1","raft_term":"2"},"ID":"4111120279712738054","TTL":"3900"}"#;
const TXN_PUT_OK: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"2","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
const TXN_FAILED: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"2","raft_term":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"aG9va2dhdGUvZGVmYXVsdC93L0EvaHR0cDovL3gv","create_revision":"2","mod_revision":"2","version":"1","value":"eyJ2IjoxfQ==","lease":"4111120279712738061"}],"count":"1"}}]}"#;
const TXN_DELETE_OK: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"3","raft_term":"2"},"succeeded":true,"responses":[{"response_delete_range":{"header":{"revision":"3"},"deleted":"1"}}]}"#;
const LEASE_NOT_FOUND: &str = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;

fn limiter(extra: impl FnOnce(&mut LimitConfig)) -> Limiter {
    let mut config = LimitConfig::default();
    config.keys.insert("orders".into(), "s3cret".into());
    extra(&mut config);
    Limiter::new(&config).unwrap()
}

fn etcd() -> Etcd {
    Etcd::new(&StateConfig::default())
}

/// A fake etcd: one revision counter, keys with create/mod revisions and leases.
#[derive(Default)]
struct Fake {
    revision: i64,
    next_lease: i64,
    /// Leases granted and not yet revoked.
    leases: BTreeSet<i64>,
    keys: BTreeMap<Vec<u8>, Stored>,
    calls: Vec<Call>,
    /// Answers forced for the next calls (status, body), before the normal ones.
    forced: Vec<(Option<u16>, String)>,
}

#[derive(Clone, Debug)]
struct Stored {
    value: Vec<u8>,
    create: i64,
    modified: i64,
    lease: i64,
}

fn b64(v: &Json) -> Vec<u8> {
    base64_decode(v.as_str().unwrap()).unwrap()
}

impl Fake {
    fn new() -> Fake {
        Fake {
            revision: 1,
            next_lease: 7000,
            ..Fake::default()
        }
    }

    fn header(&self) -> Json {
        json!({"cluster_id": "1", "member_id": "2", "revision": self.revision.to_string(), "raft_term": "2"})
    }

    fn kvs(&self, key: &[u8]) -> Json {
        match self.keys.get(key) {
            None => json!({"header": {"revision": self.revision.to_string()}}),
            Some(s) => {
                let mut kv = json!({"key": base64_encode(key), "create_revision": s.create.to_string(),
                    "mod_revision": s.modified.to_string(), "version": "1", "value": base64_encode(&s.value)});
                if s.lease != 0 {
                    kv["lease"] = json!(s.lease.to_string());
                }
                json!({"header": {"revision": self.revision.to_string()}, "kvs": [kv], "count": "1"})
            }
        }
    }

    fn answer(&mut self, call: &Call) -> (Option<u16>, String) {
        self.calls.push(call.clone());
        if !self.forced.is_empty() {
            return self.forced.remove(0);
        }
        let body: Json = serde_json::from_str(&call.body).unwrap();
        match call.path {
            "/v3/kv/range" => {
                let mut answer = self.kvs(&b64(&body["key"]));
                answer["header"] = self.header();
                (Some(200), answer.to_string())
            }
            "/v3/lease/grant" => {
                self.next_lease += 1;
                self.leases.insert(self.next_lease);
                let answer = json!({"header": self.header(), "ID": self.next_lease.to_string(), "TTL": body["TTL"]});
                (Some(200), answer.to_string())
            }
            "/v3/kv/txn" => {
                let compare = &body["compare"][0];
                let key = b64(&compare["key"]);
                let stored = self.keys.get(&key);
                let holds = match compare["target"].as_str().unwrap() {
                    "CREATE" => {
                        let want: i64 = compare["create_revision"]
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        stored.map_or(0, |s| s.create) == want
                    }
                    "MOD" => {
                        let want: i64 = compare["mod_revision"].as_str().unwrap().parse().unwrap();
                        stored.map_or(0, |s| s.modified) == want
                    }
                    other => panic!("compare target {other}"),
                };
                assert_eq!(compare["result"], "EQUAL");
                if !holds {
                    let range = &body["failure"][0]["request_range"];
                    let kvs = self.kvs(&b64(&range["key"]));
                    let answer =
                        json!({"header": self.header(), "responses": [{"response_range": kvs}]});
                    return (Some(200), answer.to_string());
                }
                let op = &body["success"][0];
                if let Some(put) = op.get("request_put") {
                    let lease = put
                        .get("lease")
                        .map_or(0, |l| l.as_str().unwrap().parse().unwrap());
                    if lease != 0 && !self.leases.contains(&lease) {
                        return (Some(404), LEASE_NOT_FOUND.to_string());
                    }
                    self.revision += 1;
                    let key = b64(&put["key"]);
                    let create = self.keys.get(&key).map_or(self.revision, |s| s.create);
                    self.keys.insert(
                        key,
                        Stored {
                            value: b64(&put["value"]),
                            create,
                            modified: self.revision,
                            lease,
                        },
                    );
                } else if let Some(delete) = op.get("request_delete_range") {
                    self.revision += 1;
                    self.keys.remove(&b64(&delete["key"]));
                } else {
                    panic!("success op {op}");
                }
                let answer = json!({"header": self.header(), "succeeded": true, "responses": [{"response_put": {"header": {"revision": self.revision.to_string()}}}]});
                (Some(200), answer.to_string())
            }
            other => panic!("path {other}"),
        }
    }

    fn value(&self, etcd: &Etcd, limiter: &Limiter, id: &WebhookId) -> Option<(Json, i64)> {
        let key = etcd.key(limiter, id.name, &crate::limit::normalise_url(id.url));
        self.keys
            .get(key.as_bytes())
            .map(|s| (serde_json::from_slice(&s.value).unwrap(), s.lease))
    }
}

/// An acquire by a fresh worker (no kept lease).
fn acquire(fake: &mut Fake, limiter: &Limiter, id: &WebhookId, now: u64) -> Decided {
    acquire_on(&etcd(), fake, limiter, id, now)
}

/// An acquire by the worker of `etcd`, which notes what it did with leases, as the filter does.
fn acquire_on(
    etcd: &Etcd,
    fake: &mut Fake,
    limiter: &Limiter,
    id: &WebhookId,
    now: u64,
) -> Decided {
    let (mut op, mut call) = Acquire::start(etcd, limiter, id);
    for _ in 0..50 {
        let (status, body) = fake.answer(&call);
        match op.on_reply(
            limiter,
            Reply {
                status,
                body: body.as_bytes(),
            },
            &now,
        ) {
            Next::Call(next) => call = next,
            Next::Done(decided) => {
                etcd.note_lease(decided.lease);
                return decided;
            }
        }
    }
    panic!("acquire did not finish");
}

fn update(
    fake: &mut Fake,
    limiter: &Limiter,
    start: Option<(Update, Call)>,
) -> Result<(), Failure> {
    let Some((mut op, mut call)) = start else {
        return Ok(());
    };
    for _ in 0..50 {
        let (status, body) = fake.answer(&call);
        match op.on_reply(
            limiter,
            Reply {
                status,
                body: body.as_bytes(),
            },
        ) {
            Next::Call(next) => call = next,
            Next::Done(result) => return result,
        }
    }
    panic!("update did not finish");
}

fn admitted(decided: Decided) -> Admitted {
    match decided.result {
        Ok(admitted) => admitted,
        Err(f) => panic!("refused: {f}"),
    }
}

fn refused(decided: Decided) -> Failure {
    match decided.result {
        Ok(_) => panic!("admitted"),
        Err(f) => f,
    }
}

#[test]
fn base64_matches_rfc_4648_vectors_and_refuses_garbage() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_encode(plain.as_bytes()), encoded);
        assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
    }
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
    assert_eq!(
        base64_encode(b"hookgate/default/w/A/http://x/"),
        "aG9va2dhdGUvZGVmYXVsdC93L0EvaHR0cDovL3gv"
    );
    for bad in ["Zg=x", "Z", "Zh==", "a b", "é"] {
        assert_eq!(base64_decode(bad), None, "{bad}");
    }
}

#[test]
fn key_is_prefix_namespace_escaped_name_and_normalised_url() {
    let limiter = limiter(|c| c.namespace = "paid".into());
    let etcd = Etcd::new(&StateConfig {
        prefix: "teams/hookgate".into(),
        ..StateConfig::default()
    });
    assert_eq!(
        etcd.key(&limiter, "orders", "https://example.com/hook"),
        "teams/hookgate/paid/webhook/orders/https://example.com/hook"
    );
    assert_eq!(
        etcd.key(&limiter, "a/b%c", "u"),
        "teams/hookgate/paid/webhook/a%2Fb%25c/u"
    );
    let (_, call) = Acquire::start(
        &etcd,
        &limiter,
        &WebhookId {
            name: "x",
            url: "HTTP://Example.com:80/a/../b#f",
            normalised: false,
        },
    );
    assert_eq!(call.path, "/v3/kv/range");
    let body: Json = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        b64(&body["key"]),
        b"teams/hookgate/paid/webhook/x/http://example.com/b"
    );
}

#[test]
fn state_config_defaults_and_validation() {
    let config: StateConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, StateConfig::default());
    assert_eq!(config.backend, Backend::Local);
    assert_eq!(
        (
            config.cluster.as_str(),
            config.timeout_ms,
            config.prefix.as_str()
        ),
        ("etcd", 500, "hookgate")
    );
    let config: StateConfig = serde_json::from_str(
        r#"{"backend":"etcd","cluster":"etcd-fleet","timeout_ms":250,"prefix":"a/b","on_failure":"deny"}"#,
    )
    .unwrap();
    config.validate().unwrap();
    assert!(serde_json::from_str::<StateConfig>(r#"{"backend":"redis"}"#).is_err());
    assert!(serde_json::from_str::<StateConfig>(r#"{"on_failure":"allow"}"#).is_err());
    assert!(serde_json::from_str::<StateConfig>(r#"{"surprise":1}"#).is_err());
    for (edit, key) in [
        (json!({"timeout_ms": 0}), "state.timeout_ms"),
        (json!({"timeout_ms": 10001}), "state.timeout_ms"),
        (json!({"cluster": ""}), "state.cluster"),
        (json!({"cluster": "a b"}), "state.cluster"),
        (json!({"prefix": ""}), "state.prefix"),
        (json!({"prefix": "/a"}), "state.prefix"),
        (json!({"prefix": "a/"}), "state.prefix"),
        (json!({"prefix": "a b"}), "state.prefix"),
    ] {
        let config: StateConfig = serde_json::from_value(edit).unwrap();
        assert!(config.validate().unwrap_err().starts_with(key));
    }
}

#[test]
fn recorded_answers_parse() {
    assert_eq!(parse_range(RANGE_EMPTY.as_bytes()).unwrap(), None);
    assert_eq!(
        parse_lease(LEASE_GRANT.as_bytes()).unwrap(),
        4111120279712738054
    );
    match parse_txn(TXN_PUT_OK.as_bytes()).unwrap() {
        Txn::Succeeded { revision } => assert_eq!(revision, 2),
        Txn::Failed { .. } => panic!("succeeded"),
    }
    match parse_txn(TXN_DELETE_OK.as_bytes()).unwrap() {
        Txn::Succeeded { revision } => assert_eq!(revision, 3),
        Txn::Failed { .. } => panic!("succeeded"),
    }
    match parse_txn(TXN_FAILED.as_bytes()).unwrap() {
        Txn::Failed { kv: Some(kv) } => {
            assert_eq!((kv.mod_revision, kv.lease), (2, 4111120279712738061));
            assert_eq!(base64_decode(&kv.value).unwrap(), br#"{"v":1}"#);
        }
        _ => panic!("failed with its range"),
    }
    // An error answer (HTTP 404 from the gateway) is a failure, whatever its body.
    let why = ok_body(Reply {
        status: Some(404),
        body: LEASE_NOT_FOUND.as_bytes(),
    })
    .unwrap_err();
    assert!(
        why.contains("HTTP 404") && why.contains("lease not found"),
        "{why}"
    );
    assert!(parse_txn(b"{}").is_err());
    assert!(parse_lease(b"{\"header\":{}}").is_err());
    assert!(parse_range(b"not json").is_err());
}

#[test]
fn first_send_reads_grants_a_lease_and_creates_the_key_with_it() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    assert_eq!(first.ticket.taken(), Some(T));
    let paths: Vec<_> = fake.calls.iter().map(|c| c.path).collect();
    assert_eq!(paths, ["/v3/kv/range", "/v3/lease/grant", "/v3/kv/txn"]);
    let grant: Json = serde_json::from_str(&fake.calls[1].body).unwrap();
    assert_eq!(grant, json!({"TTL": lease::TTL_SECS.to_string()}));
    let txn: Json = serde_json::from_str(&fake.calls[2].body).unwrap();
    assert_eq!(txn["compare"][0]["target"], "CREATE");
    assert_eq!(txn["compare"][0]["create_revision"], "0");
    assert_eq!(txn["success"][0]["request_put"]["lease"], "7001");
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        value,
        json!({"v": 1, "name": "orders", "url": "https://example.com/hook", "verified": false, "sends": [T]})
    );
    assert_eq!(lease, 7001);
}

#[test]
fn a_granted_lease_is_handed_to_the_filter_with_the_clock_read_before_asking() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let decided = acquire(&mut fake, &limiter, &HOOK, T);
    assert_eq!(decided.lease, LeaseUse::Granted(FIRST_GRANT));
    // A refusal asks for no lease and carries none.
    let refused = acquire(&mut fake, &limiter, &HOOK, T + 1);
    assert!(matches!(refused.result, Err(Failure::OverLimit(_))));
    assert_eq!(refused.lease, LeaseUse::Nothing);
}

/// A webhook of its own for each number.
fn numbered(n: u32) -> String {
    format!("hook{n}")
}

#[test]
fn a_workers_lease_carries_its_writes_for_a_minute_then_a_new_one_is_asked_for() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = etcd();
    let names: Vec<String> = (0..3).map(numbered).collect();
    let id = |name| WebhookId {
        name,
        url: HOOK.url,
        normalised: false,
    };
    acquire_on(&worker, &mut fake, &limiter, &id(names[0].as_str()), T);
    let calls_before = fake.calls.len();
    // The last second of the minute after asking: a read and a write, with the kept lease.
    let last = T + lease::REUSE_SECS - 1;
    let decided = acquire_on(&worker, &mut fake, &limiter, &id(names[1].as_str()), last);
    assert_eq!(decided.lease, LeaseUse::Kept);
    assert_eq!(admitted(decided).ticket.taken(), Some(last));
    let paths: Vec<_> = fake.calls[calls_before..].iter().map(|c| c.path).collect();
    assert_eq!(paths, ["/v3/kv/range", "/v3/kv/txn"]);
    assert_eq!(
        fake.value(&worker, &limiter, &id(names[1].as_str()))
            .unwrap()
            .1,
        7001
    );
    // A minute after asking: a new lease. Another worker never shares this one.
    let decided = acquire_on(
        &worker,
        &mut fake,
        &limiter,
        &id(names[2].as_str()),
        T + lease::REUSE_SECS,
    );
    assert_eq!(
        decided.lease,
        LeaseUse::Granted(Lease {
            id: 7002,
            asked_at: T + lease::REUSE_SECS
        })
    );
    let other = acquire(&mut fake, &limiter, &HOOK, T + lease::REUSE_SECS);
    assert!(matches!(
        other.lease,
        LeaseUse::Granted(Lease { id: 7003, .. })
    ));
}

#[test]
fn a_lease_asked_for_in_the_future_is_not_reused() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = etcd();
    acquire_on(&worker, &mut fake, &limiter, &INVOICES, T + 1);
    // The clock went back a second: the lease's end is no longer known to be far enough.
    let decided = acquire_on(&worker, &mut fake, &limiter, &HOOK, T);
    assert!(matches!(
        decided.lease,
        LeaseUse::Granted(Lease { id: 7002, .. })
    ));
}

#[test]
fn a_lease_carries_at_most_max_writes() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = etcd();
    let names: Vec<String> = (0..=lease::MAX_WRITES).map(numbered).collect();
    for name in &names {
        let id = WebhookId {
            name,
            url: HOOK.url,
            normalised: false,
        };
        admitted(acquire_on(&worker, &mut fake, &limiter, &id, T));
    }
    let grants = fake
        .calls
        .iter()
        .filter(|c| c.path == "/v3/lease/grant")
        .count();
    assert_eq!(grants, 2);
    let on_first = fake.keys.values().filter(|k| k.lease == 7001).count();
    assert_eq!(on_first, lease::MAX_WRITES as usize);
    assert_eq!(fake.keys.values().filter(|k| k.lease == 7002).count(), 1);
}

#[test]
fn a_kept_lease_etcd_no_longer_knows_is_replaced_and_the_send_counted_once() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = etcd();
    acquire_on(&worker, &mut fake, &limiter, &INVOICES, T);
    // Revoked (or the cluster restored from a backup): etcd no longer knows the kept lease.
    fake.leases.remove(&7001);
    let calls_before = fake.calls.len();
    let decided = acquire_on(&worker, &mut fake, &limiter, &HOOK, T);
    let paths: Vec<_> = fake.calls[calls_before..].iter().map(|c| c.path).collect();
    assert_eq!(
        paths,
        [
            "/v3/kv/range",
            "/v3/kv/txn",
            "/v3/kv/range",
            "/v3/lease/grant",
            "/v3/kv/txn"
        ]
    );
    assert_eq!(
        decided.lease,
        LeaseUse::Granted(Lease {
            id: 7002,
            asked_at: T
        })
    );
    admitted(decided);
    let (value, lease) = fake.value(&worker, &limiter, &HOOK).unwrap();
    assert_eq!((value["sends"].clone(), lease), (json!([T]), 7002));
    // The worker keeps the new one.
    let next = WebhookId {
        name: "refunds",
        ..HOOK
    };
    assert_eq!(
        acquire_on(&worker, &mut fake, &limiter, &next, T).lease,
        LeaseUse::Kept
    );
}

#[test]
fn rolling_window_edges_and_retry_after_across_envoys() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    // Another Envoy (same store) one second and 3599 seconds later: refused by one read.
    for (later, retry) in [(1, 3599), (1800, 1800), (3599, 1)] {
        let calls = fake.calls.len();
        let decided = acquire(&mut fake, &limiter, &HOOK, T + later);
        assert_eq!(decided.state.as_ref().unwrap().retry_after, Some(retry));
        assert!(matches!(refused(decided), Failure::OverLimit(r) if r == retry));
        assert_eq!(fake.calls.len() - calls, 1, "a refusal is one read");
    }
    let again = admitted(acquire(&mut fake, &limiter, &HOOK, T + WINDOW_SECS));
    assert_eq!(again.ticket.taken(), Some(T + WINDOW_SECS));
    let txn: Json = serde_json::from_str(&fake.calls.last().unwrap().body).unwrap();
    assert_eq!(txn["compare"][0]["target"], "MOD");
    let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        value["sends"],
        json!([T + WINDOW_SECS]),
        "the old send was pruned"
    );
}

#[test]
fn interleaved_first_sends_admit_exactly_the_limit() {
    for per_hour in [1u32, 3] {
        let limiter = limiter(|c| c.unverified_per_hour = per_hour);
        let mut fake = Fake::new();
        // 8 Envoys read "absent" together, then each moves one step at a time, round robin.
        let mut ops: Vec<(Acquire, Option<Call>, u64)> = (0..8)
            .map(|i| {
                let (op, call) = Acquire::start(&etcd(), &limiter, &HOOK);
                (op, Some(call), T + i / 4)
            })
            .collect();
        let mut outcomes = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            for (op, call, now) in ops.iter_mut() {
                if let Some(c) = call.take() {
                    moved = true;
                    let (status, body) = fake.answer(&c);
                    match op.on_reply(
                        &limiter,
                        Reply {
                            status,
                            body: body.as_bytes(),
                        },
                        now,
                    ) {
                        Next::Call(next) => *call = Some(next),
                        Next::Done(decided) => outcomes.push(decided.result.is_ok()),
                    }
                }
            }
            if !moved {
                break;
            }
        }
        assert_eq!(outcomes.len(), 8);
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), per_hour as usize);
        let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
        assert_eq!(value["sends"].as_array().unwrap().len(), per_hour as usize);
    }
}

#[test]
fn a_refusal_that_lost_a_race_to_a_later_second_says_at_most_an_hour() {
    let limiter = limiter(|c| c.unverified_per_hour = 1);
    let mut fake = Fake::new();
    // X's request arrives at T and its read goes out; before etcd answers it, Y sends at T + 1.
    let (mut x, call) = Acquire::start(&etcd(), &limiter, &HOOK);
    drop(admitted(acquire(&mut fake, &limiter, &HOOK, T + 1)));
    let (status, body) = fake.answer(&call);
    let reply = Reply {
        status,
        body: body.as_bytes(),
    };
    // X's clock is read once Y's send is in hand: T + 1 too, so the hour is counted from there.
    match x.on_reply(&limiter, reply, &(T + 1)) {
        Next::Done(decided) => match refused(decided) {
            Failure::OverLimit(retry) => assert_eq!(retry, WINDOW_SECS),
            other => panic!("{other:?}"),
        },
        Next::Call(call) => panic!("decided without a call, got {call:?}"),
    }
}

#[test]
fn give_back_removes_only_this_deliverys_send() {
    let limiter = limiter(|c| c.unverified_per_hour = 2);
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let second = admitted(acquire(&mut fake, &limiter, &HOOK, T + 10));
    // The first delivery's write is no longer the current one: it rereads, removes its own send.
    let calls = fake.calls.len();
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &first),
    )
    .unwrap();
    assert_eq!(
        fake.calls.len() - calls,
        2,
        "compare failed once, then the removal"
    );
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(value["sends"], json!([T + 10]));
    assert_ne!(lease, 0, "the key keeps its lease");
    // A second give-back with the same delivery does nothing.
    assert!(Update::give_back(&etcd(), &limiter, &first).is_none());
    // The last send given back on its own revision: one call, and the key is deleted.
    let calls = fake.calls.len();
    let third = admitted(acquire(&mut fake, &limiter, &HOOK, T + 20));
    assert_eq!(
        fake.calls.len() - calls,
        3,
        "read, a lease for this send, write"
    );
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &third),
    )
    .unwrap();
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &second),
    )
    .unwrap();
    assert!(
        fake.value(&etcd(), &limiter, &HOOK).is_none(),
        "nothing left: deleted"
    );
    let delete: Json = serde_json::from_str(&fake.calls.last().unwrap().body).unwrap();
    assert!(delete["success"][0].get("request_delete_range").is_some());
    // Given back: the hour is free again.
    admitted(acquire(&mut fake, &limiter, &HOOK, T + 30));
}

#[test]
fn give_back_after_the_key_expired_does_nothing() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    fake.keys.clear(); // the lease ran out
    fake.revision += 1;
    update(
        &mut fake,
        &limiter,
        Update::give_back(&etcd(), &limiter, &first),
    )
    .unwrap();
    assert!(fake.keys.is_empty());
}

#[test]
fn verification_is_stored_without_lease_and_frees_every_envoy() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    assert!(
        !first.free_by_verification(),
        "an unverified send is not cached"
    );
    assert_eq!(
        limiter.judge_key(&first.ticket, br#"{"key":"s3cret"}"#),
        KeyVerdict::Verified
    );
    let calls = fake.calls.len();
    update(
        &mut fake,
        &limiter,
        Update::verify(&etcd(), &limiter, &first),
    )
    .unwrap();
    assert_eq!(
        fake.calls.len() - calls,
        1,
        "one compare-and-swap on its own revision"
    );
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        (value["verified"].clone(), value["sends"].clone(), lease),
        (json!(true), json!([]), 0)
    );
    for later in [1, 2, 3600 * 24] {
        let calls = fake.calls.len();
        let free = admitted(acquire(&mut fake, &limiter, &HOOK, T + later));
        assert_eq!((free.ticket.taken(), free.ticket.verified()), (None, true));
        // Read verified by any Envoy: it caches the webhook and asks etcd no more.
        assert!(free.free_by_verification());
        assert_eq!(fake.calls.len() - calls, 1, "a verified send is one read");
    }
    // A wrong key changes nothing; its answer is judged by the core.
    let other = WebhookId {
        name: "orders",
        url: "https://example.com/other",
        normalised: false,
    };
    let sent = admitted(acquire(&mut fake, &limiter, &other, T));
    assert_eq!(
        limiter.judge_key(&sent.ticket, br#"{"key":"nope"}"#),
        KeyVerdict::WrongKey
    );
    refused(acquire(&mut fake, &limiter, &other, T + 5));
}

#[test]
fn verification_after_another_write_rereads_and_keeps_counting_when_limited() {
    let limiter = limiter(|c| {
        c.unverified_per_hour = 2;
        c.verified_per_hour = Some(3);
    });
    let mut fake = Fake::new();
    let first = admitted(acquire(&mut fake, &limiter, &HOOK, T));
    admitted(acquire(&mut fake, &limiter, &HOOK, T + 1));
    update(
        &mut fake,
        &limiter,
        Update::verify(&etcd(), &limiter, &first),
    )
    .unwrap();
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        (value["verified"].clone(), value["sends"].clone(), lease),
        (json!(true), json!([T, T + 1]), 0)
    );
    let counted = admitted(acquire(&mut fake, &limiter, &HOOK, T + 2));
    assert!(
        !counted.free_by_verification(),
        "still limited: every send asks etcd"
    );
    let decided = acquire(&mut fake, &limiter, &HOOK, T + 3);
    assert!(matches!(refused(decided), Failure::OverLimit(3597)));
    // Verifying when the key has gone re-creates it, verified, with this delivery's send.
    fake.keys.clear();
    update(
        &mut fake,
        &limiter,
        Update::verify(&etcd(), &limiter, &first),
    )
    .unwrap();
    let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!(
        (value["verified"].clone(), value["sends"].clone()),
        (json!(true), json!([T]))
    );
}

#[test]
fn pre_verified_webhooks_are_free_and_write_nothing() {
    let limiter = limiter(|c| {
        c.verified.push(crate::limit::VerifiedWebhook {
            name: "orders".into(),
            url: "https://EXAMPLE.com/hook".into(),
        })
    });
    let mut fake = Fake::new();
    for later in 0..3 {
        let free = admitted(acquire(&mut fake, &limiter, &HOOK, T + later));
        assert_eq!(free.ticket.taken(), None);
    }
    assert!(fake.keys.is_empty());
}

#[test]
fn failed_calls_are_retried_then_limit_unavailable() {
    let limiter = limiter(|_| {});
    // One timeout and one 503 from Envoy, then etcd answers: admitted.
    let mut fake = Fake::new();
    fake.forced = vec![
        (None, String::new()),
        (Some(503), "no healthy upstream".into()),
    ];
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    assert_eq!(fake.calls.len(), 5);
    // Nothing but failures: LimitUnavailable after 1 + MAX_RETRIES calls, nothing written.
    let mut fake = Fake::new();
    fake.forced = vec![(None, String::new()); 10];
    match refused(acquire(&mut fake, &limiter, &HOOK, T)) {
        Failure::LimitUnavailable(why) => assert!(why.contains("etcd: no answer"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.calls.len(), 1 + MAX_RETRIES as usize);
    assert!(fake.keys.is_empty());
    // An answer that is not etcd's: LimitUnavailable at once.
    let mut fake = Fake::new();
    fake.forced = vec![(Some(200), "<html>".into())];
    assert!(matches!(
        refused(acquire(&mut fake, &limiter, &HOOK, T)),
        Failure::LimitUnavailable(_)
    ));
    // A lease grant refused: never a write without its lease.
    let mut fake = Fake::new();
    fake.forced = vec![
        (Some(200), RANGE_EMPTY.into()),
        (
            Some(200),
            r#"{"header":{},"ID":"0","error":"etcdserver: too many requests"}"#.into(),
        ),
    ];
    assert!(matches!(
        refused(acquire(&mut fake, &limiter, &HOOK, T)),
        Failure::LimitUnavailable(_)
    ));
    assert!(fake.keys.is_empty());
}

#[test]
fn undecodable_values_are_never_overwritten() {
    let limiter = limiter(|_| {});
    for garbage in [
        &b"not json"[..],
        br#"{"v":2,"name":"orders","url":"https://example.com/hook","verified":true,"sends":[]}"#,
        br#"{"v":1,"name":"other","url":"https://example.com/hook","verified":true,"sends":[]}"#,
    ] {
        let mut fake = Fake::new();
        let key = etcd().key(&limiter, "orders", "https://example.com/hook");
        fake.keys.insert(
            key.clone().into_bytes(),
            Stored {
                value: garbage.to_vec(),
                create: 1,
                modified: 1,
                lease: 0,
            },
        );
        assert!(matches!(
            refused(acquire(&mut fake, &limiter, &HOOK, T)),
            Failure::LimitUnavailable(_)
        ));
        assert_eq!(fake.keys[key.as_bytes()].value, garbage);
        assert_eq!(fake.calls.len(), 1);
    }
}

#[test]
fn endless_contention_gives_up_with_limit_unavailable() {
    let limiter = limiter(|c| c.unverified_per_hour = 1000);
    let mut fake = Fake::new();
    let (mut op, mut call) = Acquire::start(&etcd(), &limiter, &HOOK);
    let mut rounds = 0;
    let result = loop {
        rounds += 1;
        assert!(rounds < 100);
        if call.path == "/v3/kv/txn" {
            // Another Envoy writes in between every time.
            let other = admitted(acquire(&mut fake, &limiter, &HOOK, T));
            drop(other);
        }
        let (status, body) = fake.answer(&call);
        match op.on_reply(
            &limiter,
            Reply {
                status,
                body: body.as_bytes(),
            },
            &T,
        ) {
            Next::Call(next) => call = next,
            Next::Done(decided) => break decided,
        }
    };
    match refused(result) {
        Failure::LimitUnavailable(why) => assert!(why.contains("contended"), "{why}"),
        other => panic!("{other:?}"),
    }
}

fn support(
    fake: &mut Fake,
    limiter: &Limiter,
    lift: Option<crate::limit::Lift>,
    now: u64,
) -> crate::limit::Lifted {
    let (mut op, mut call) = Support::start(&etcd(), limiter, &HOOK, lift);
    for _ in 0..50 {
        let (status, body) = fake.answer(&call);
        let reply = Reply {
            status,
            body: body.as_bytes(),
        };
        match op.on_reply(limiter, reply, &now) {
            Next::Call(next) => call = next,
            Next::Done(result) => return result.unwrap(),
        }
    }
    panic!("support operation did not finish");
}

#[test]
fn support_looks_up_resets_and_verifies_in_etcd() {
    use crate::limit::Lift;
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let looked = support(&mut fake, &limiter, None, T + 600);
    let limited = LimitState {
        verified: false,
        sends_in_window: 1,
        allowed_per_hour: Some(1),
        retry_after: Some(3000),
    };
    assert_eq!((looked.before, looked.changed), (limited.clone(), false));
    assert_eq!(looked.after, limited);

    let reset = support(&mut fake, &limiter, Some(Lift::ResetWindow), T + 600);
    assert!(reset.changed);
    assert_eq!(reset.after.sends_in_window, 0);
    assert_eq!(
        fake.value(&etcd(), &limiter, &HOOK),
        None,
        "nothing left: deleted"
    );
    admitted(acquire(&mut fake, &limiter, &HOOK, T + 601));

    let verified = support(&mut fake, &limiter, Some(Lift::Verify), T + 602);
    assert!(verified.changed);
    assert_eq!(
        verified.after,
        LimitState {
            verified: true,
            sends_in_window: 0,
            allowed_per_hour: None,
            retry_after: None,
        }
    );
    let (value, lease) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
    assert_eq!((value["verified"].clone(), lease), (json!(true), 0));
    assert!(!support(&mut fake, &limiter, Some(Lift::Verify), T + 603).changed);
    assert!(!support(&mut fake, &limiter, Some(Lift::ResetWindow), T + 603).changed);
}

/// A send stored between the support operation's read and its write: the compare fails, and the
/// reset is decided again on what is there (the new send is reset too: the operator asked for an
/// empty window).
#[test]
fn a_support_write_that_lost_a_race_decides_again() {
    use crate::limit::Lift;
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let (mut op, call) = Support::start(&etcd(), &limiter, &HOOK, Some(Lift::ResetWindow));
    let (status, body) = fake.answer(&call);
    let write = match op.on_reply(
        &limiter,
        Reply {
            status,
            body: body.as_bytes(),
        },
        &T,
    ) {
        Next::Call(write) => write,
        Next::Done(_) => panic!("a reset of a send must write"),
    };
    // Meanwhile another write moves the key on.
    let mut moved = fake.keys.values().next().unwrap().clone();
    fake.revision += 1;
    moved.modified = fake.revision;
    let key = fake.keys.keys().next().unwrap().clone();
    fake.keys.insert(key, moved);
    let (status, body) = fake.answer(&write);
    match op.on_reply(
        &limiter,
        Reply {
            status,
            body: body.as_bytes(),
        },
        &T,
    ) {
        Next::Call(again) => {
            let (status, body) = fake.answer(&again);
            match op.on_reply(
                &limiter,
                Reply {
                    status,
                    body: body.as_bytes(),
                },
                &T,
            ) {
                Next::Done(result) => assert!(result.unwrap().changed),
                Next::Call(_) => panic!("one more round"),
            }
        }
        Next::Done(_) => panic!("a failed compare must be decided again"),
    }
    assert!(fake.keys.is_empty());
}
