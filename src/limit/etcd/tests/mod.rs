//! The etcd backend against answers recorded from etcd 3.4.23 and against a fake etcd that
//! answers the JSON gateway as the real one does (same fields, int64 as strings, `succeeded`
//! omitted when false). Moves time by hand; interleaves operations to show the compares.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::fake::{b64, Fake, Stored, LEASE_NOT_FOUND};
use super::*;
use crate::limit::{KeyVerdict, LimitConfig, WINDOW_SECS};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value as Json};

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

fn limiter(extra: impl FnOnce(&mut LimitConfig)) -> Limiter {
    let mut config = LimitConfig::default();
    config.keys.insert("orders".into(), "s3cret".into());
    extra(&mut config);
    Limiter::new(&config).unwrap()
}

fn etcd() -> Etcd {
    Etcd::new(&StateConfig::default())
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
    let (mut op, mut call) = Acquire::start(etcd, limiter, id, &now);
    for _ in 0..50 {
        let answered = fake.answer(&call);
        match op.on_reply(limiter, answered.reply(), &now) {
            Next::Call(next) => call = next,
            Next::Done(decided) => {
                etcd.note(&decided);
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
        let answered = fake.answer(&call);
        match op.on_reply(limiter, answered.reply()) {
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
        &T,
    );
    assert_eq!(call.path, "/v3/kv/range");
    let body: Json = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        b64(&body["key"]),
        b"teams/hookgate/paid/webhook/x/http://example.com/b"
    );
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
            assert_eq!(STANDARD.decode(&kv.value).unwrap(), br#"{"v":1}"#);
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

mod decisions;
mod failures;
mod first_call;
mod leases;
mod lifts;
