//! Observability: after a known sequence of requests, the counters on Envoy's admin endpoint
//! say exactly what happened, as labelled Prometheus series; the access log says why.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeSet;
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
    let failing = Receiver::start(Behaviour::json(500, "{}"));
    assert_eq!(
        gw.post(&event(&unique_name("Failing"), &failing.url("/")))
            .status,
        200
    );
    // Envoy's own 503 (the name does not resolve): not a receiver's answer.
    assert_eq!(
        gw.post(&event(
            &unique_name("NoDns"),
            "http://no-such-host.invalid/"
        ))
        .status,
        502
    );

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
    // hookgate's counters reach Envoy on each worker's tick (every second).
    support::settles(
        &gw.logs(),
        || {
            series(&[
                "hookgate_outcomes{",
                "hookgate_sent{",
                "hookgate_receiver_answers{",
            ])
        },
        [
            r#"hookgate_outcomes{plan="default",outcome="blocked_destination",code="11110114"} 1"#,
            r#"hookgate_outcomes{plan="default",outcome="delivered",code="1"} 4"#,
            r#"hookgate_outcomes{plan="default",outcome="dns_failure",code="11110111"} 1"#,
            r#"hookgate_outcomes{plan="default",outcome="invalid_name",code="21111011"} 2"#,
            r#"hookgate_outcomes{plan="default",outcome="over_limit",code="11110113"} 1"#,
            r#"hookgate_outcomes{plan="default",outcome="receiver_not_json",code="11110112"} 1"#,
            r#"hookgate_outcomes{plan="default",outcome="receiver_status",code="11110111"} 1"#,
            r#"hookgate_receiver_answers{plan="default",class="2xx"} 5"#,
            r#"hookgate_receiver_answers{plan="default",class="5xx"} 1"#,
            r#"hookgate_sent{plan="default"} 7"#,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    // On /stats the names carry their labels.
    assert_eq!(
        gw.stat("wasmcustom.hookgate.outcomes.plan.default.outcome.delivered.code.1"),
        Some(4)
    );
    // Latency is Envoy's own histograms, which reach the admin endpoint at Envoy's stats flush
    // (every 5 s): the engine's view is the listener's downstream_rq_time, the time to the
    // receiver's answer the forward-proxy cluster's upstream_rq_time (one sample per webhook
    // that reached a receiver; none for Envoy's own 503).
    support::eventually("a latency sample per webhook sent", || {
        series(&[
            "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"hookgate\"}",
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"webhooks\"}",
        ]) == [
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"webhooks\"} 6",
            "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"hookgate\"} 11",
        ]
    });
}

/// `hookgate.tracked_webhooks` (a gauge set on a 10 s tick by one context of the Envoy) counts
/// the webhooks the limit table holds: verified ones, and unverified ones with a send in the
/// window. A refused destination, a repeated send and a 429 add nothing.
#[test]
fn tracked_webhooks_gauge_counts_the_table() {
    let config = support::EnvoyConfig::load("envoy/envoy.yaml").plugin_config(
        r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]},
                "limit":{"default_key":"s3cret"}}"#,
    );
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

/// The metric names a PromQL expression reads: its identifiers that start with `hookgate_` or
/// `envoy_`, outside quoted strings (label values), that are not label names of the scrape.
fn metric_names_in(expr: &str, label_names: &BTreeSet<String>) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in expr.chars().chain([' ']) {
        if quoted {
            quoted = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        let ours = word.starts_with("hookgate_") || word.starts_with("envoy_");
        if ours && !label_names.contains(&word) {
            names.push(std::mem::take(&mut word));
        }
        word.clear();
        quoted = c == '"';
    }
    names
}

/// The example dashboard and alert rules (examples/prometheus/) read only metrics a real Envoy
/// with hookgate exports, with only label names it exports: scraped from /stats/prometheus after
/// traffic of every kind they watch.
#[test]
fn dashboard_and_alerts_read_only_exported_metrics() {
    let gw = Gateway::start(support::loopback_config());
    let good = Receiver::start(Behaviour::json(200, "{}"));
    let failing = Receiver::start(Behaviour::json(500, "{}"));
    let limited = event(&unique_name("Limited"), &good.url("/"));
    assert_eq!(gw.post(&limited).status, 200);
    assert_eq!(gw.post(&limited).status, 429);
    assert_eq!(
        gw.post(&event(&unique_name("Fail"), &failing.url("/")))
            .status,
        200
    );
    assert_eq!(
        gw.post(&event(&unique_name("Meta"), "http://169.254.169.254/"))
            .status,
        403
    );
    let scrape = || {
        support::http::get(gw.admin_port, "/stats/prometheus")
            .unwrap()
            .text()
    };
    // Histograms reach the admin endpoint at Envoy's stats flush, the table gauge at a tick.
    support::eventually("the histograms and the gauge", || {
        let text = scrape();
        text.contains("envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"webhooks\"} 2")
            && text.contains("hookgate_tracked_webhooks{")
    });
    let text = scrape();
    let mut names = BTreeSet::new();
    let mut label_names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        names.insert(line[..end].to_string());
        if let Some(labels) = line[end..].strip_prefix('{') {
            for pair in labels.split("\",") {
                label_names.insert(pair.split('=').next().unwrap().to_string());
            }
        }
    }
    for label in ["plan", "outcome", "code", "class", "envoy_cluster_name"] {
        assert!(label_names.contains(label), "label {label} not exported");
    }

    let dir = support::repo().join("examples/prometheus");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dashboard.json")).unwrap())
            .expect("dashboard.json is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "id of {title}");
        assert!(title.ends_with('?'), "a panel answers a question: {title}");
        assert!(
            !panel["description"].as_str().unwrap().is_empty(),
            "{title}"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            exprs.push((
                title.to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(panels.len(), 10);
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts.yml")).unwrap()).unwrap();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        let alert = rule["alert"].as_str().unwrap().to_string();
        exprs.push((alert, rule["expr"].as_str().unwrap().to_string()));
    }
    assert_eq!(exprs.len(), 14 + 5);
    for (what, expr) in &exprs {
        let read = metric_names_in(expr, &label_names);
        assert!(!read.is_empty(), "{what}: no metric in {expr}");
        for name in read {
            assert!(
                names.contains(&name),
                "{what}: {name} is not exported:\n{text}"
            );
        }
    }
}

/// The alert rules pass `promtool check rules` and their unit tests (`promtool test rules`).
#[test]
fn alert_rules_pass_promtool() {
    let dir = support::repo().join("examples/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/test.sh installs Debian's prometheus package)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
