//! One limit and one verification state for the fleet: first sends raced over two Envoys, the
//! answer of either, a key answered through one, support operations, the workers' leases, and
//! slots given back.

use crate::etcd::Etcd;
use crate::rig::{fleet, fleet_config, race};
use crate::support::{
    assert_delivered, assert_over_limit, event, free_port, http, unique_name, Behaviour, Gateway,
    Receiver,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn concurrent_first_sends_over_two_envoys_deliver_exactly_one() {
    let etcd = Etcd::start(1);
    let (a, b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    race(&a, &b, &receiver, 20, 16);
    // Both Envoys decided in every trial's refusals: each logged decisions.
    for gw in [&a, &b] {
        assert!(gw.logs().contains("outcome=over_limit"), "{}", gw.logs());
    }
    // One key per webhook in etcd, with its one send.
    let keys = etcd.keys(0);
    assert_eq!(keys.len(), 20);
    for (key, value) in keys {
        assert!(
            key.starts_with("hookgate/default/webhook/FleetRace"),
            "{key}"
        );
        assert_eq!(value["verified"], false);
        assert_eq!(value["sends"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn retry_after_agrees_across_instances() {
    let etcd = Etcd::start(1);
    let (a, b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let name = unique_name("FleetRetry");
    let body = event(&name, &receiver.url("/retry"));
    assert_delivered(&a.post(&body), r#"{"ok":true}"#);
    let on_a = assert_over_limit(&a.post(&body));
    let on_b = assert_over_limit(&b.post(&body));
    assert!(on_a.abs_diff(on_b) <= 1, "A {on_a}, B {on_b}");
    // The test report of the other Envoy shows the same state.
    let reply = b.post_with(&body, &[("x-hookgate-test", "true")]);
    assert_eq!(reply.status, 429);
    let limit = &reply.json()["limit"];
    assert_eq!(limit["verified"], false);
    assert_eq!(limit["sends_in_window"], 1);
    assert_eq!(limit["allowed_per_hour"], 1);
    assert!(limit["retry_after"].as_u64().unwrap().abs_diff(on_a) <= 1);
    assert_eq!(receiver.received_on("/retry"), 1);
}

#[test]
fn key_answered_through_one_envoy_lifts_the_limit_on_the_other() {
    let etcd = Etcd::start(1);
    let name = unique_name("FleetVerify");
    let (a, b) = fleet(&etcd, &json!({"keys": {name.clone(): "s3cret"}}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let body = event(&name, &receiver.url("/verify"));
    assert_delivered(&a.post(&body), r#"{"key":"s3cret"}"#);
    receiver.set(Behaviour::json(200, r#"{"ok":1}"#));
    for _ in 0..3 {
        assert_delivered(&b.post(&body), r#"{"ok":1}"#);
        assert_delivered(&a.post(&body), r#"{"ok":1}"#);
    }
    for reply in http::post_simultaneously(&[a.port, b.port], &body, 8) {
        assert_delivered(&reply, r#"{"ok":1}"#);
    }
    assert_eq!(receiver.received_on("/verify"), 1 + 6 + 8);
    let (_, value) = etcd
        .keys(0)
        .into_iter()
        .find(|(k, _)| k.contains(&name))
        .unwrap();
    assert_eq!(value["verified"], true);

    // A wrong key through A keeps the webhook limited on B.
    let wrong = event(&name, &receiver.url("/wrong"));
    receiver.set(Behaviour::json(200, r#"{"key":"nope"}"#));
    let reply = a.post(&wrong);
    assert_eq!(
        (reply.status, reply.json()[0]["code"].clone()),
        (200, json!(11110113))
    );
    assert_over_limit(&b.post(&wrong));
    assert_eq!(receiver.received_on("/wrong"), 1);
}

/// Support operations with the etcd backend: the support listener of either Envoy sees and lifts
/// the one state of the fleet (a reset deletes the key; a verification writes it without a
/// lease), and the audit line names who asked.
#[test]
fn support_lifts_a_webhook_in_etcd_for_every_envoy() {
    let etcd = Etcd::start(1);
    let token = "oncall-support-token-0123456789";
    let config = fleet_config(&etcd, &json!({})).support_token("oncall", token);
    let a = Gateway::start_with(config.clone(), 2, &[]);
    let b = Gateway::start_with(config, 2, &[]);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let name = unique_name("FleetSupport");
    let url = receiver.url("/support");
    let body = event(&name, &url);
    assert_delivered(&a.post(&body), "{}");
    assert_over_limit(&b.post(&body));

    let looked = b.support(token, "state", &name, &url);
    assert_eq!(looked.status, 200, "{}", looked.text());
    assert_eq!(looked.json()["backend"], "etcd");
    let state = &looked.json()["state"];
    assert_eq!(
        (&state["verified"], &state["sends_in_window"]),
        (&json!(false), &json!(1))
    );

    let reset = a.support(token, "reset", &name, &url).json();
    assert_eq!(
        (&reset["changed"], &reset["after"]["sends_in_window"]),
        (&json!(true), &json!(0))
    );
    assert!(
        etcd.keys(0).iter().all(|(key, _)| !key.contains(&name)),
        "nothing left in the window: the key is deleted"
    );
    assert_delivered(&b.post(&body), "{}");
    assert_over_limit(&a.post(&body));

    let verified = b.support(token, "verify", &name, &url).json();
    assert_eq!(verified["changed"], true, "{verified}");
    assert_eq!(verified["after"]["verified"], true);
    assert_eq!(etcd.lease_of(0, &name), "0", "verified: no lease, it stays");
    for _ in 0..2 {
        assert_delivered(&a.post(&body), "{}");
        assert_delivered(&b.post(&body), "{}");
    }
    assert_eq!(receiver.received_on("/support"), 6);

    let wrong = a.support("not-the-oncall-token-0123", "reset", &name, &url);
    assert_eq!(wrong.status, 401);
    let line = format!(
        "support token=oncall action=verify namespace=default webhook=\"{name}\" host=\"127.0.0.1:{}\" \
         changed=true before=verified:false,sends:1,retry_after:",
        receiver.port
    );
    assert!(b.envoy_log().contains(&line), "{}", b.envoy_log());
}

#[test]
fn first_sends_share_their_workers_lease_and_a_revoked_lease_is_replaced() {
    const WORKERS: usize = 2; // fleet(): two workers per Envoy
    let etcd = Etcd::start(1);
    let (a, _b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    // Six first sends, each on its own connection (so on either worker); the distinct leases
    // their keys carry.
    let send_six = || {
        let names: Vec<String> = (0..6).map(|_| unique_name("FleetLease")).collect();
        for name in &names {
            assert_delivered(
                &a.post(&event(name, &receiver.url("/lease"))),
                r#"{"ok":true}"#,
            );
        }
        let mut leases: Vec<String> = names.iter().map(|n| etcd.lease_of(0, n)).collect();
        leases.sort();
        leases.dedup();
        assert!(
            !leases.contains(&"0".to_string()) && (1..=WORKERS).contains(&leases.len()),
            "one lease per worker at most: {leases:?}"
        );
        leases
    };
    let first = send_six();
    for lease in &first {
        // Long enough for the hour, the skew margin and the minute of reuse.
        let ttl = etcd.call(0, "/v3/lease/timetolive", &json!({"ID": lease}));
        assert_eq!(ttl["grantedTTL"], "3960", "{ttl}");
    }

    // Revoked (etcd deletes their keys with them): each worker's next first send finds its kept
    // lease gone, asks for a new one and is delivered once; the workers keep the new ones.
    for lease in &first {
        etcd.call(0, "/v3/lease/revoke", &json!({"ID": lease}));
    }
    assert!(etcd.keys(0).is_empty());
    let renewed = send_six();
    assert!(
        renewed.iter().all(|l| !first.contains(l)),
        "{renewed:?} {first:?}"
    );
    assert_eq!(receiver.received_on("/lease"), 12);
}

/// A worker that writes asks for its next lease on the tick, before the kept one stops carrying
/// writes: its first sends stay one call each (the write), with the new lease.
#[test]
fn a_writing_worker_gets_its_next_lease_on_the_tick_and_first_sends_stay_one_call() {
    let etcd = Etcd::start(1);
    // One worker: every send meets the same kept lease.
    let gw = Gateway::start_with(fleet_config(&etcd, &json!({})), 1, &[]);
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let calls = || gw.stat("cluster.etcd.upstream_rq_total").unwrap_or(0);
    let first = unique_name("FleetAhead");
    assert_delivered(
        &gw.post(&event(&first, &receiver.url("/ahead"))),
        r#"{"ok":true}"#,
    );
    assert_eq!(
        calls(),
        3,
        "a worker without a lease: read, lease grant, write"
    );
    // The tick asks 15 s before the minute of the first lease ends: a call no send made.
    let deadline = Instant::now() + Duration::from_secs(90);
    while calls() == 3 {
        assert!(Instant::now() < deadline, "no lease asked for ahead");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(calls(), 4);
    let second = unique_name("FleetAhead");
    assert_delivered(
        &gw.post(&event(&second, &receiver.url("/ahead"))),
        r#"{"ok":true}"#,
    );
    assert_eq!(calls(), 5, "a first send is one transaction");
    let (old, new) = (etcd.lease_of(0, &first), etcd.lease_of(0, &second));
    assert_ne!(
        old, new,
        "the second send carries the lease asked for ahead"
    );
    let ttl = etcd.call(0, "/v3/lease/timetolive", &json!({"ID": new}));
    assert_eq!(ttl["grantedTTL"], "3960", "{ttl}");
    assert_eq!(receiver.received_on("/ahead"), 2);
}

#[test]
fn sends_that_never_arrived_give_the_slot_back_on_every_envoy() {
    let etcd = Etcd::start(1);
    let (a, b) = fleet(&etcd, &json!({}));
    let name = unique_name("FleetGiveBack");
    // Nothing listens on this port: connection refused, 502, nothing delivered.
    let port = free_port();
    let body = event(&name, &format!("http://127.0.0.1:{port}/gone"));
    let reply = a.post(&body);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"));
    // The slot came back: the next send, through the other Envoy, is allowed (and fails again).
    let reply = b.post(&body);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        etcd.keys(0).iter().all(|(k, _)| !k.contains(&name)),
        "the key was deleted with its only send"
    );
}
