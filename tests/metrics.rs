//! Issue 5 observability: after a known sequence of requests, the counters on Envoy's admin
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
    assert!(
        prometheus.contains("receiver_latency_ms"),
        "latency histogram missing"
    );
}
