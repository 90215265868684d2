//! Leases: granted, kept per worker for a minute or a bounded number of writes, replaced when
//! etcd no longer knows them.

use super::*;

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
    // The last second of the minute after asking: one write with the kept lease (a key this
    // worker has not seen starts with the write; its failure branch would have read it).
    let last = T + lease::REUSE_SECS - 1;
    let decided = acquire_on(&worker, &mut fake, &limiter, &id(names[1].as_str()), last);
    assert_eq!(decided.lease, LeaseUse::Kept);
    assert_eq!(admitted(decided).ticket.taken(), Some(last));
    let paths: Vec<_> = fake.calls[calls_before..].iter().map(|c| c.path).collect();
    assert_eq!(paths, ["/v3/kv/txn"]);
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
fn the_tick_asks_a_writing_worker_for_its_next_lease_so_sends_never_wait_for_one() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = etcd();
    assert!(
        worker.lease_ahead(T).is_none(),
        "no write, no lease asked for"
    );
    acquire_on(&worker, &mut fake, &limiter, &INVOICES, T);
    let due = T + lease::REUSE_SECS - lease::RENEW_AHEAD_SECS;
    assert!(worker.lease_ahead(due - 1).is_none());
    let call = worker.lease_ahead(due).unwrap();
    assert_eq!(call, lease_grant());
    let answered = fake.answer(&call);
    worker.on_lease_ahead(answered.reply()).unwrap();
    // Past the minute of the first lease: the first send is still one transaction, with the new.
    let from = fake.calls.len();
    let later = T + lease::REUSE_SECS + 10;
    let decided = acquire_on(&worker, &mut fake, &limiter, &HOOK, later);
    assert_eq!(decided.lease, LeaseUse::Kept);
    admitted(decided);
    let paths: Vec<_> = fake.calls[from..].iter().map(|c| c.path).collect();
    assert_eq!(paths, ["/v3/kv/txn"]);
    assert_eq!(fake.value(&worker, &limiter, &HOOK).unwrap().1, 7002);
    assert_eq!(
        worker.kept.get(),
        Some(Lease {
            id: 7002,
            asked_at: due
        })
    );
}

#[test]
fn a_lease_not_granted_ahead_leaves_the_send_to_ask_for_its_own() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = etcd();
    acquire_on(&worker, &mut fake, &limiter, &INVOICES, T);
    let due = T + lease::REUSE_SECS - lease::RENEW_AHEAD_SECS;
    worker.lease_ahead(due).unwrap();
    let unavailable = Reply {
        status: Some(503),
        body: b"no healthy upstream",
    };
    let why = worker.on_lease_ahead(unavailable).unwrap_err();
    assert!(why.contains("HTTP 503"), "{why}");
    assert!(worker.lease_ahead(due + 1).is_none(), "asks again later");
    let from = fake.calls.len();
    admitted(acquire_on(
        &worker,
        &mut fake,
        &limiter,
        &HOOK,
        T + lease::REUSE_SECS,
    ));
    let paths: Vec<_> = fake.calls[from..].iter().map(|c| c.path).collect();
    assert_eq!(paths, ["/v3/kv/range", "/v3/lease/grant", "/v3/kv/txn"]);
    assert!(
        worker.lease_ahead(due + lease::ASK_AGAIN_SECS).is_none(),
        "fresh again"
    );
}
