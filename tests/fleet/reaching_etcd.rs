//! Reaching etcd: stopped and restarted, a verified webhook cached, a three-member cluster losing
//! its leader, and the shipped mTLS with the right, a wrong and no client certificate.

use crate::etcd::Etcd;
use crate::pki::Pki;
use crate::rig::{assert_unavailable, client_certificate, fleet, fleet_config, race};
use crate::support::{
    self, assert_delivered, assert_over_limit, event, eventually, http, unique_name, Behaviour,
    Gateway, Receiver,
};
use serde_json::json;

#[test]
fn etcd_stopped_refuses_every_send_and_restarted_keeps_the_state() {
    let mut etcd = Etcd::start(1);
    let verified = unique_name("FleetKept");
    let (a, b) = fleet(&etcd, &json!({"keys": {verified.clone(): "s3cret"}}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let limited = event(&unique_name("FleetLimited"), &receiver.url("/limited"));
    let kept = event(&verified, &receiver.url("/kept"));
    assert_delivered(&a.post(&limited), r#"{"key":"s3cret"}"#);
    assert_delivered(&a.post(&kept), r#"{"key":"s3cret"}"#);
    let before = receiver.records().len();

    etcd.stop(0);
    let fresh = event(&unique_name("FleetDown"), &receiver.url("/down"));
    for gw in [&a, &b] {
        for body in [&fresh, &limited] {
            assert_unavailable(&gw.post(body));
        }
    }
    // B never saw the verified webhook: it cannot know it without etcd.
    assert_unavailable(&b.post(&kept));
    for reply in http::post_simultaneously(&[a.port, b.port], &fresh, 8) {
        assert_unavailable(&reply);
    }
    assert_eq!(
        receiver.records().len(),
        before,
        "nothing delivered while etcd is down"
    );
    for gw in [&a, &b] {
        assert!(gw.logs().contains("outcome=limit_unavailable"));
    }

    etcd.restart(0);
    // Envoy's health check and hookgate's retries find etcd again.
    eventually("the fleet reaching etcd again", || {
        b.post(&limited).status == 429
    });
    assert_over_limit(&a.post(&limited));
    receiver.set(Behaviour::json(200, r#"{"ok":1}"#));
    assert_delivered(&b.post(&kept), r#"{"ok":1}"#);
    assert_delivered(&b.post(&fresh), r#"{"ok":1}"#);
    assert_over_limit(&a.post(&fresh));
    assert_eq!(receiver.received_on("/limited"), 1);
    assert_eq!(receiver.received_on("/down"), 1);
}

/// A webhook read as verified from etcd is cached on every Envoy that read it, not only on the one
/// whose delivery got the key: with etcd stopped it still goes through both. A verified webhook
/// that B never sent is still refused by B (it cannot know it without etcd).
#[test]
fn a_webhook_read_verified_is_cached_on_every_envoy_that_read_it() {
    let mut etcd = Etcd::start(1);
    let name = unique_name("FleetCached");
    let (a, b) = fleet(&etcd, &json!({"keys": {name.clone(): "s3cret"}}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let read = event(&name, &receiver.url("/read"));
    let unread = event(&name, &receiver.url("/unread"));
    for body in [&read, &unread] {
        assert_delivered(&a.post(body), r#"{"key":"s3cret"}"#);
    }
    receiver.set(Behaviour::json(200, r#"{"ok":1}"#));
    assert_delivered(&b.post(&read), r#"{"ok":1}"#);

    etcd.stop(0);
    for gw in [&a, &b] {
        assert_delivered(&gw.post(&read), r#"{"ok":1}"#);
    }
    assert_unavailable(&b.post(&unread));
    assert_eq!(receiver.received_on("/read"), 4);
    assert_eq!(receiver.received_on("/unread"), 1);
}

/// How many race webhooks member `i` holds.
fn races(etcd: &Etcd, i: usize) -> usize {
    etcd.keys(i)
        .iter()
        .filter(|(k, _)| k.contains("/FleetRace"))
        .count()
}

/// The `health_flags` of the etcd member on `port`, as one Envoy's /clusters shows them.
fn member_flags(gw: &Gateway, port: u16) -> String {
    let clusters = http::get(gw.admin_port, "/clusters").unwrap().text();
    let prefix = format!("etcd::127.0.0.1:{port}::health_flags::");
    clusters
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn three_member_etcd_with_one_member_stopped_keeps_the_exact_limit() {
    let mut etcd = Etcd::start(3);
    let (a, b) = fleet(&etcd, &json!({}));
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    // Every member passes Envoy's health check (GET /version, every second) on both Envoys.
    for gw in [&a, &b] {
        for m in &etcd.members {
            eventually("every member healthy", || {
                member_flags(gw, m.client) == "healthy"
            });
        }
    }
    race(&a, &b, &receiver, 5, 16);
    // The leader stops (the harder case: the other two elect a new one).
    let leader = etcd.leader().expect("a leader");
    let stopped = etcd.members[leader].client;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    etcd.stop(leader);
    // The health check sets the stopped member aside by itself, with no send made; the other two
    // stay in the pool through the election.
    for gw in [&a, &b] {
        eventually("the stopped member failing its health check", || {
            member_flags(gw, stopped).contains("failed_active_hc")
        });
        for &i in &others {
            assert_eq!(member_flags(gw, etcd.members[i].client), "healthy");
        }
    }
    // Once the two have a leader again, no call ever meets the stopped member: every send is
    // decided (exactly one of each race delivered, no 503), and outlier detection, which acts
    // only on a failed call, never had to.
    for &i in &others {
        etcd.wait_healthy(i);
    }
    race(&a, &b, &receiver, 10, 16);
    for gw in [&a, &b] {
        assert!(!member_flags(gw, stopped).contains("failed_outlier_check"));
        assert!(!gw.logs().contains("outcome=limit_unavailable"));
    }
    // What was written is on the remaining members.
    for &i in &others {
        assert_eq!(races(&etcd, i), 15);
    }

    // Restarted, the member catches up and passes its checks again: back in the pool.
    etcd.restart(leader);
    for gw in [&a, &b] {
        eventually("the restarted member healthy again", || {
            member_flags(gw, stopped) == "healthy"
        });
    }
    race(&a, &b, &receiver, 5, 16);
    // Caught up: the member has every race, including those run while it was stopped.
    eventually("the restarted member caught up", || {
        races(&etcd, leader) == 20
    });
}

#[test]
fn shipped_mtls_reaches_etcd_with_client_certificate_auth_and_nothing_else_does() {
    let pki = Pki::generate();
    let etcd = Etcd::start_tls(&pki);
    let port = etcd.members[0].client;
    // etcd takes only TLS with a client certificate of its CA: plain HTTP gets no answer.
    assert!(http::get(port, "/health").map_or(true, |r| r.status != 200));
    // The shipped transport (envoy/fleet.yaml's mTLS, certificate paths moved to the test's).
    let (a, b) = fleet(&etcd, &json!({}));
    for gw in [&a, &b] {
        eventually("the member healthy over mTLS", || {
            member_flags(gw, port) == "healthy"
        });
    }
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    race(&a, &b, &receiver, 5, 16);
    assert_eq!(races(&etcd, 0), 5);
    // A webhook already sent once: limited on the Envoys that reach etcd.
    let sent = unique_name("FleetMtlsSent");
    let sent_body = event(&sent, &receiver.url("/mtls-sent"));
    assert_delivered(&a.post(&sent_body), r#"{"ok":true}"#);
    assert_over_limit(&b.post(&sent_body));

    // A client certificate of another CA, and none at all: etcd refuses the handshake, so the
    // member fails its health check, and every send is refused with the documented envelope
    // (503, 21111011), nothing delivered; the webhook sent once gets 503 too, not 429: nothing
    // was read.
    for (label, cert) in [("another CA", Some("rogue-client")), ("none", None)] {
        let config = client_certificate(fleet_config(&etcd, &json!({})), &pki, cert);
        let gw = Gateway::start_with(config, 2, support::DECISION_LINES);
        eventually("the member failing its health check", || {
            member_flags(&gw, port).contains("failed_active_hc")
        });
        let name = unique_name("FleetMtlsRefused");
        let path = format!("/mtls-refused/{name}");
        for reply in http::post_simultaneously(&[gw.port], &event(&name, &receiver.url(&path)), 8) {
            assert_unavailable(&reply);
            let detail = reply.header("x-hookgate-detail").unwrap_or_default();
            assert!(detail.contains("connection failure"), "{label}: {detail}");
        }
        assert_unavailable(&gw.post(&sent_body));
        assert_eq!(receiver.received_on(&path), 0, "{label}");
        assert!(gw.logs().contains("outcome=limit_unavailable"), "{label}");
    }
    assert_eq!(receiver.received_on("/mtls-sent"), 1);
    // Nothing the refused Envoys tried reached etcd.
    assert_eq!(etcd.keys(0).len(), 6);
}
