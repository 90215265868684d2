//! Observability: after a known sequence of requests, the counters on Envoy's admin endpoint
//! say exactly what happened, as labelled Prometheus series; the access log says why.
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

    // Exactly these series, labelled by the stats tags of the generated configuration.
    let series = |prefixes: &[&str]| {
        let text = support::http::get(gw.admin_port, "/stats/prometheus")
            .unwrap()
            .text();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        series(&["hookgate_outcomes{", "hookgate_sent{"]),
        [
            r#"hookgate_outcomes{plan="default",outcome="blocked_destination",code="11110114"} 1"#,
            r#"hookgate_outcomes{plan="default",outcome="delivered",code="1"} 4"#,
            r#"hookgate_outcomes{plan="default",outcome="invalid_name",code="21111011"} 2"#,
            r#"hookgate_outcomes{plan="default",outcome="over_limit",code="11110113"} 1"#,
            r#"hookgate_outcomes{plan="default",outcome="receiver_not_json",code="11110112"} 1"#,
            r#"hookgate_sent{plan="default"} 5"#,
        ],
        "{}",
        gw.logs()
    );
    // On /stats the names carry their labels.
    assert_eq!(
        gw.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.delivered.code.1"),
        Some(4)
    );
    // Latency is Envoy's own histograms, which reach the admin endpoint at Envoy's stats flush
    // (every 5 s): the engine's view is the listener's downstream_rq_time, the time to the
    // receiver's answer the forward-proxy cluster's upstream_rq_time (one sample per webhook
    // that reached a receiver).
    support::eventually("a latency sample per webhook sent", || {
        series(&[
            "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"hookgate\"}",
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"webhooks\"}",
        ]) == [
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"webhooks\"} 5",
            "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"hookgate\"} 9",
        ]
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
    let gauge = "wasmcustom.hookgate.tracked_webhooks.plan.default";
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
        prometheus.contains("hookgate_tracked_webhooks{plan=\"default\"} 4\n"),
        "gauge missing from /stats/prometheus:\n{prometheus}"
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
    // Every line says why (Envoy's code_details, the detail), from where and which request.
    for line in &decisions {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let source = record["source"].as_str().unwrap_or_default();
        assert!(source.starts_with("127.0.0.1:"), "{line}");
        let id = record["request_id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 36, "Envoy's request id (a UUID): {line}");
    }
    let delivered: serde_json::Value = serde_json::from_str(decisions[0]).unwrap();
    assert_eq!(
        (&delivered["reason"], &delivered["detail"]),
        (&serde_json::json!("via_upstream"), &serde_json::Value::Null)
    );
    let refused: serde_json::Value = serde_json::from_str(decisions[2]).unwrap();
    assert_eq!(
        refused["detail"],
        "invalid webhook name: only Latin letters and digits (A-Z a-z 0-9) are allowed"
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
