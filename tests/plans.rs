//! Two policies side by side in one Envoy, chosen by Envoy alone (envoy/plans.yaml):
//! the free plan's listener allows one unverified webhook an hour, the paid plan's sixty, and
//! their states are kept apart by `limit.namespace` although both filters share one VM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{event, http, unique_name, Behaviour, EnvoyConfig, Gateway, Receiver};

#[test]
fn the_listener_chooses_the_plan() {
    let gw = Gateway::start_with(
        EnvoyConfig::load("envoy/plans.yaml").edit_plugin_configs(|json| {
            json["destination"] = serde_json::json!({"allow": [{"cidr": "127.0.0.1/32"}]});
        }),
        2,
        &[],
    );
    assert_eq!(gw.ports.len(), 2, "two listeners");
    let (free, paid) = (gw.ports[0], gw.ports[1]);
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let name = unique_name("Plan");
    let body = event(&name, &receiver.url("/"));
    let post = |port: u16| http::post(port, "/", body.as_bytes(), &[]).unwrap();

    assert_eq!(post(free).status, 200);
    let refused = post(free);
    assert_eq!(refused.status, 429, "free plan: one an hour");
    assert_eq!(refused.json()[0]["code"], 11110113);

    // The same webhook on the paid plan has its own allowance, sixty an hour.
    for i in 0..5 {
        assert_eq!(post(paid).status, 200, "paid plan send {i}");
    }
    assert_eq!(
        post(free).status,
        429,
        "the paid plan's sends changed nothing on the free plan"
    );
    assert_eq!(receiver.records().len(), 6);

    // The metrics tell the plans apart by their `plan` label (limit.namespace).
    let series = || {
        let text = http::get(gw.admin_port, "/stats/prometheus")
            .unwrap()
            .text();
        let mut series: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("hookgate_outcomes{") || l.starts_with("hookgate_sent{"))
            .map(str::to_owned)
            .collect();
        series.sort_unstable();
        series
    };
    support::settles(
        "the series of both plans",
        series,
        [
            r#"hookgate_outcomes{plan="free",outcome="delivered",code="1"} 1"#,
            r#"hookgate_outcomes{plan="free",outcome="over_limit",code="11110113"} 2"#,
            r#"hookgate_outcomes{plan="paid",outcome="delivered",code="1"} 5"#,
            r#"hookgate_sent{plan="free"} 1"#,
            r#"hookgate_sent{plan="paid"} 5"#,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
}
