//! Which call an acquire starts with: the write for a key its worker has not seen lately (a first
//! send is one transaction), the read for a key it saw existing within the hour.

use super::*;

/// A worker holding a fresh lease, granted for the first send of `name` at `now`.
fn worker_with_lease(fake: &mut Fake, limiter: &Limiter, name: &str, now: u64) -> Etcd {
    let worker = etcd();
    let id = WebhookId { name, ..HOOK };
    admitted(acquire_on(&worker, fake, limiter, &id, now));
    worker
}

fn paths_since(fake: &Fake, from: usize) -> Vec<&'static str> {
    fake.calls[from..].iter().map(|c| c.path).collect()
}

#[test]
fn a_first_send_is_one_transaction_and_a_key_seen_is_read_first() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = worker_with_lease(&mut fake, &limiter, "invoices", T);
    let from = fake.calls.len();
    let decided = acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 1);
    assert_eq!(decided.lease, LeaseUse::Kept);
    let state = decided.state.clone().unwrap();
    assert_eq!((state.sends_in_window, state.retry_after), (1, Some(3600)));
    assert_eq!(admitted(decided).ticket.taken(), Some(T + 1));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/txn"]);
    // Create if absent, with the kept lease, else read the key back.
    let txn: Json = serde_json::from_str(&fake.calls[from].body).unwrap();
    let key = txn["compare"][0]["key"].clone();
    assert_eq!(
        (
            &txn["compare"][0]["target"],
            &txn["compare"][0]["create_revision"]
        ),
        (&json!("CREATE"), &json!("0"))
    );
    assert_eq!(txn["success"][0]["request_put"]["key"], key);
    assert_eq!(txn["success"][0]["request_put"]["lease"], "7001");
    assert_eq!(txn["failure"][0]["request_range"]["key"], key);
    let (value, lease) = fake.value(&worker, &limiter, &HOOK).unwrap();
    assert_eq!((value["sends"].clone(), lease), (json!([T + 1]), 7001));

    // The worker has seen the key: the next send is refused by one read.
    let from = fake.calls.len();
    let decided = acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 2);
    assert!(matches!(refused(decided), Failure::OverLimit(3599)));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/range"]);
}

#[test]
fn a_key_another_worker_wrote_costs_one_failed_transaction_then_reads() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let worker = worker_with_lease(&mut fake, &limiter, "invoices", T);
    // Not seen by this worker: the write's compare fails and its failure branch is the read.
    let from = fake.calls.len();
    let decided = acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 10);
    assert_eq!(decided.state.as_ref().unwrap().retry_after, Some(3590));
    assert_eq!(decided.lease, LeaseUse::Nothing);
    assert!(matches!(refused(decided), Failure::OverLimit(3590)));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/txn"]);
    let (value, _) = fake.value(&worker, &limiter, &HOOK).unwrap();
    assert_eq!(
        value["sends"],
        json!([T]),
        "the failed write changed nothing"
    );
    // Seen now: read first.
    let from = fake.calls.len();
    refused(acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 11));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/range"]);
}

#[test]
fn a_later_send_after_a_failed_first_write_is_written_on_what_was_read() {
    let limiter = limiter(|c| c.unverified_per_hour = 2);
    let mut fake = Fake::new();
    admitted(acquire(&mut fake, &limiter, &HOOK, T));
    let worker = worker_with_lease(&mut fake, &limiter, "invoices", T);
    let from = fake.calls.len();
    let second = admitted(acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 5));
    assert_eq!(second.ticket.taken(), Some(T + 5));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/txn", "/v3/kv/txn"]);
    let retry: Json = serde_json::from_str(&fake.calls[from + 1].body).unwrap();
    assert_eq!(retry["compare"][0]["target"], "MOD");
    let (value, lease) = fake.value(&worker, &limiter, &HOOK).unwrap();
    assert_eq!((value["sends"].clone(), lease), (json!([T, T + 5]), 7002));
}

#[test]
fn a_key_gone_since_it_was_seen_is_read_then_created() {
    let limiter = limiter(|_| {});
    let mut fake = Fake::new();
    let worker = worker_with_lease(&mut fake, &limiter, "invoices", T);
    admitted(acquire_on(&worker, &mut fake, &limiter, &HOOK, T));
    fake.keys.clear(); // its lease ended, or support reset it
    let from = fake.calls.len();
    let again = admitted(acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 1));
    assert_eq!(again.ticket.taken(), Some(T + 1));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/range", "/v3/kv/txn"]);
}

#[test]
fn racing_first_sends_that_start_with_the_write_admit_exactly_the_limit() {
    for per_hour in [1u32, 3] {
        let limiter = limiter(|c| c.unverified_per_hour = per_hour);
        let mut fake = Fake::new();
        let names: Vec<String> = (0..8).map(|i| format!("lease{i}")).collect();
        let workers: Vec<Etcd> = names
            .iter()
            .map(|name| worker_with_lease(&mut fake, &limiter, name, T))
            .collect();
        // 8 workers start together, then each moves one step at a time, round robin.
        let mut ops: Vec<(Acquire, Option<Call>, u64)> = workers
            .iter()
            .enumerate()
            .map(|(i, worker)| {
                let now = T + i as u64 / 4;
                let (op, call) = Acquire::start(worker, &limiter, &HOOK, &now);
                assert_eq!(call.path, "/v3/kv/txn");
                (op, Some(call), now)
            })
            .collect();
        let mut admitted_sends = 0;
        for _ in 0..100 {
            let mut moved = false;
            for (op, call, now) in ops.iter_mut() {
                let Some(c) = call.take() else { continue };
                moved = true;
                let answered = fake.answer(&c);
                let reply = answered.reply();
                match op.on_reply(&limiter, reply, now) {
                    Next::Call(next) => *call = Some(next),
                    Next::Done(decided) => admitted_sends += usize::from(decided.result.is_ok()),
                }
            }
            if !moved {
                break;
            }
        }
        assert_eq!(admitted_sends, per_hour as usize);
        let (value, _) = fake.value(&etcd(), &limiter, &HOOK).unwrap();
        assert_eq!(value["sends"].as_array().unwrap().len(), per_hour as usize);
    }
}

#[test]
fn pre_verified_webhooks_and_stale_leases_start_with_the_read() {
    let limiter = limiter(|c| {
        c.verified.push(crate::limit::VerifiedWebhook {
            name: "orders".into(),
            url: "https://example.com/hook".into(),
        })
    });
    let mut fake = Fake::new();
    let worker = worker_with_lease(&mut fake, &limiter, "invoices", T);
    let from = fake.calls.len();
    admitted(acquire_on(&worker, &mut fake, &limiter, &HOOK, T + 1));
    assert_eq!(paths_since(&fake, from), ["/v3/kv/range"]);
    // A lease asked for a minute ago carries no more writes: read first, a refusal needs none.
    let refunds = WebhookId {
        name: "refunds",
        ..HOOK
    };
    let from = fake.calls.len();
    admitted(acquire_on(
        &worker,
        &mut fake,
        &limiter,
        &refunds,
        T + lease::REUSE_SECS,
    ));
    assert_eq!(
        paths_since(&fake, from),
        ["/v3/kv/range", "/v3/lease/grant", "/v3/kv/txn"]
    );
}
