//! Observability: after a known sequence of requests, the counters on Envoy's admin
//! endpoint say exactly what happened.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{event, unique_name, Behaviour, Gateway, Receiver};

#[test]
fn counters_match_a_known_sequence() {
    let gw = Gateway::start_with(support::loopback_config(), 2, &[]);
    let good = Receiver::start(Behaviour::json(200, "{}"));
    let text = Receiver::start(Behaviour::with_type(200, "text/plain", b"OK"));
    for _ in 0..3 {
        assert_eq!(
            gw.post(&event(&unique_name("Good"), &good.url("/"))).status,
            200
        );
    }
    assert_eq!(
        gw.post(&event(&unique_name("Text"), &text.url("/"))).status,
        200
    );
    assert_eq!(gw.post(&event("Bad Name", &good.url("/"))).status, 400);
    assert_eq!(gw.post(&event("Bad Name", &good.url("/"))).status, 400);
    assert_eq!(
        gw.post(&event(&unique_name("Meta"), "http://169.254.169.254/"))
            .status,
        403
    );
    let limited = unique_name("Limited");
    assert_eq!(gw.post(&event(&limited, &good.url("/x"))).status, 200);
    assert_eq!(gw.post(&event(&limited, &good.url("/x"))).status, 429);

    let stat = |name: &str| gw.stat(&format!("wasmcustom.hookgate.{name}")).unwrap_or(0);
    assert_eq!(stat("outcome.delivered"), 4, "{}", gw.logs());
    assert_eq!(stat("outcome.receiver_not_json"), 1);
    assert_eq!(stat("outcome.invalid_name"), 2);
    assert_eq!(stat("outcome.blocked_destination"), 1);
    assert_eq!(stat("outcome.over_limit"), 1);
    assert_eq!(stat("code.1"), 4);
    assert_eq!(stat("code.11110112"), 1);
    assert_eq!(stat("code.21111011"), 2);
    assert_eq!(stat("code.11110114"), 1);
    assert_eq!(stat("code.11110113"), 1);
    assert_eq!(stat("sent"), 5);
    let prometheus = support::http::get(gw.admin_port, "/stats/prometheus")
        .unwrap()
        .text();
    assert!(
        prometheus.contains("hookgate"),
        "metrics missing from /stats/prometheus"
    );
    // Latency is Envoy's own histograms (README, "Metrics"): the engine's view is the
    // listener's downstream_rq_time, which reaches the admin endpoint at Envoy's stats flush
    // (every 5 s).
    let samples = || {
        support::http::get(gw.admin_port, "/stats/prometheus")
            .unwrap()
            .text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"hookgate\"} ",
                )
                .map(|v| v.trim().parse::<u64>().unwrap())
            })
    };
    support::eventually("a latency sample per webhook sent", || {
        samples().is_some_and(|n| n >= 5)
    });
}

/// `hookgate.tracked_webhooks` (a gauge set on a 10 s tick by one context of the Envoy) counts
/// the webhooks the limit table holds: verified ones, and unverified ones with a send in the
/// window. A refused destination, a repeated send and a 429 add nothing.
#[test]
fn tracked_webhooks_gauge_counts_the_table() {
    let config = support::EnvoyConfig::load("envoy/envoy.yaml")
        .plugin_config(
            r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]},
                "limit":{"default_key":"s3cret"}}"#,
        )
        .allow_loopback_receivers();
    let gw = Gateway::start_with(config, 2, &[]);
    let good = Receiver::start(Behaviour::json(200, "{}"));
    let keyed = Receiver::start(Behaviour::json(200, r#"{"key":"s3cret"}"#));
    let first = unique_name("Tracked");
    for name in [
        first.clone(),
        unique_name("Tracked"),
        unique_name("Tracked"),
    ] {
        assert_eq!(gw.post(&event(&name, &good.url("/"))).status, 200);
    }
    assert_eq!(gw.post(&event(&first, &good.url("/"))).status, 429);
    let verified = unique_name("Verified");
    for _ in 0..3 {
        assert_eq!(gw.post(&event(&verified, &keyed.url("/v"))).status, 200);
    }
    assert_eq!(
        gw.post(&event(&unique_name("Meta"), "http://169.254.169.254/"))
            .status,
        403
    );
    let gauge = "wasmcustom.hookgate.tracked_webhooks";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        seen = gw.stat(gauge);
        if seen == Some(4) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(seen, Some(4), "{}", gw.logs());
    let prometheus = support::http::get(gw.admin_port, "/stats/prometheus")
        .unwrap()
        .text();
    assert!(
        prometheus.contains("hookgate_tracked_webhooks gauge"),
        "gauge missing from /stats/prometheus"
    );
}

/// One decision record per request in Envoy's access log, with the webhook name, host, outcome
/// and code, and no personal data: the event's email, phone and variables never reach a log.
/// At Envoy's default level hookgate writes nothing per request to Envoy's own log.
#[test]
fn one_decision_record_per_request_without_personal_data() {
    let gw = Gateway::start(support::loopback_config());
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let text = Receiver::start(Behaviour::with_type(200, "text/plain", b"OK"));
    let good = unique_name("LogGood");
    let odd = unique_name("LogText");
    assert_eq!(gw.post(&event(&good, &receiver.url("/"))).status, 200);
    assert_eq!(gw.post(&event(&odd, &text.url("/"))).status, 200);
    let bad_email = r#"{"webhook":{"name":"Bad Name","url":"http://127.0.0.1/"},"automation_id":"1","email":"secret.person@example.com"}"#;
    assert_eq!(gw.post(bad_email).status, 400);
    support::eventually("three access log lines", || {
        gw.access_log().lines().count() == 3
    });
    let access_log = gw.access_log();
    let decisions: Vec<&str> = access_log.lines().collect();
    assert!(
        decisions.iter().all(|l| l.contains(r#""hookgate":""#)),
        "{decisions:#?}"
    );
    assert!(
        !gw.envoy_log().contains("webhook="),
        "a decision in Envoy's own log at info"
    );
    assert!(decisions.iter().any(|l| l.contains(&format!(
        "webhook={good} host=127.0.0.1 outcome=delivered code=1"
    ))));
    assert!(decisions.iter().any(|l| l.contains(&format!(
        "webhook={odd} host=127.0.0.1 outcome=receiver_not_json code=11110112"
    ))));
    assert!(
        decisions
            .iter()
            .any(|l| l.contains(r#""status":400"#)
                && l.contains("outcome=invalid_name code=21111011"))
    );
    let logs = gw.logs();
    for personal in [
        "example@example.com",
        "+380631234567",
        "value1",
        "value2",
        "secret.person",
    ] {
        assert!(!logs.contains(personal), "{personal} in the log:\n{logs}");
    }
}
