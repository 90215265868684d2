//! Support operations end to end (docs/support.md): on the support listener of the shipped
//! configuration, a token-holder looks up one webhook's limit state and lifts it (reset the
//! window, mark verified); what the engine gets afterwards, what the receiver got, and the audit
//! line naming who asked. Refusals (wrong or missing token, the engine's listener) change
//! nothing. The etcd backend's counterpart is in tests/fleet/sharing.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{
    assert_over_limit, event, http, unique_name, Behaviour, EnvoyConfig, Gateway, Receiver,
};

const ALICE: &str = "alice-support-token-0123456789";

fn gateway() -> Gateway {
    Gateway::start(support::loopback_config().support_token("alice", ALICE))
}

/// The `state` of a lookup, with `retry_after` checked to be within the hour and taken out.
fn state(reply: &support::Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut state = reply.json()["state"].clone();
    if let Some(retry) = state["retry_after"].as_u64() {
        assert!((3500..=3600).contains(&retry), "{state}");
        state["retry_after"] = json!("within the hour");
    }
    state
}

#[test]
fn support_looks_up_resets_and_verifies_a_webhook_and_logs_who_asked() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let name = unique_name("Support");
    let url = receiver.url("/hook?q=query-secret");
    let body = event(&name, &url);
    assert_eq!(gw.post(&body).status, 200);
    assert_over_limit(&gw.post(&body));

    let looked = gw.support(ALICE, "state", &name, &url);
    assert_eq!(
        looked.json()["webhook"],
        json!({"name": name, "url": url}),
        "{}",
        looked.text()
    );
    assert_eq!(
        (&looked.json()["namespace"], &looked.json()["backend"]),
        (&json!("default"), &json!("local"))
    );
    assert_eq!(
        state(&looked),
        json!({"verified": false, "sends_in_window": 1, "allowed_per_hour": 1, "retry_after": "within the hour"})
    );

    let reset = gw.support(ALICE, "reset", &name, &url).json();
    assert_eq!(
        (&reset["action"], &reset["changed"]),
        (&json!("reset"), &json!(true))
    );
    assert_eq!(
        reset["after"],
        json!({"verified": false, "sends_in_window": 0, "allowed_per_hour": 1, "retry_after": null})
    );
    assert_eq!(gw.post(&body).status, 200, "the window was reset");
    assert_over_limit(&gw.post(&body));

    let verified = gw.support(ALICE, "verify", &name, &url).json();
    assert_eq!(verified["changed"], true);
    assert_eq!(
        verified["after"],
        json!({"verified": true, "sends_in_window": 0, "allowed_per_hour": null, "retry_after": null})
    );
    for _ in 0..3 {
        assert_eq!(gw.post(&body).status, 200, "verified: unlimited");
    }
    assert_eq!(receiver.records().len(), 5);
    let again = gw.support(ALICE, "verify", &name, &url).json();
    assert_eq!(again["changed"], false);

    // Every operation in Envoy's log and the support listener's access log: who, what, which
    // webhook (its host only), and what changed.
    let host = format!("\"127.0.0.1:{}\"", receiver.port);
    let head = |action: &str| {
        format!(
            "support token=alice action={action} namespace=default webhook=\"{name}\" host={host}"
        )
    };
    support::eventually("four support lines in the access log", || {
        gw.access_log().matches("\"listener\":\"support\"").count() == 4
    });
    let log = gw.envoy_log();
    for expected in [
        format!(
            "{} changed=false state=verified:false,sends:1,retry_after:",
            head("state")
        ),
        format!(
            "{} changed=true before=verified:false,sends:1,retry_after:",
            head("reset")
        ),
        "after=verified:false,sends:0,retry_after:-".to_string(),
        format!(
            "{} changed=true before=verified:false,sends:1,retry_after:",
            head("verify")
        ),
        "after=verified:true,sends:0,retry_after:-".to_string(),
        format!(
            "{} changed=false state=verified:true,sends:0,retry_after:-",
            head("verify")
        ),
    ] {
        assert!(log.contains(&expected), "{expected}\n{log}");
    }
    assert!(!gw.logs().contains("query-secret"), "a URL query in a log");
    assert!(!gw.logs().contains(ALICE), "a token in a log");
}

#[test]
fn wrong_tokens_and_the_engine_listener_are_refused_and_change_nothing() {
    let gw = gateway();
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let name = unique_name("Refused");
    let url = receiver.url("/");
    assert_eq!(gw.post(&event(&name, &url)).status, 200);

    let envelope =
        json!([{"status": false, "message": "Error during query execution", "code": 21111011}]);
    let wrong = gw.support("not-alice-token-0123456789", "reset", &name, &url);
    assert_eq!((wrong.status, wrong.json()), (401, envelope.clone()));
    assert_eq!(
        wrong.header("x-hookgate-detail"),
        Some("unauthorized: wrong support token")
    );
    let body = json!({"name": name, "url": url}).to_string();
    let support_port = gw.ports[1];
    let none = http::post(support_port, "/webhook/reset", body.as_bytes(), &[]).unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("x-hookgate-detail"),
        Some("unauthorized: no `authorization: Bearer` token")
    );
    let unknown = gw.support(ALICE, "lift", &name, &url);
    assert_eq!((unknown.status, unknown.json()), (404, envelope.clone()));
    let get = http::get(support_port, "/webhook/state").unwrap();
    assert_eq!(get.status, 401, "the token is checked first");

    // The engine's listener serves events only: a support request there is a bad event.
    let bearer = format!("Bearer {ALICE}");
    let engine = http::post(
        gw.port,
        "/webhook/reset",
        body.as_bytes(),
        &[("authorization", &bearer)],
    )
    .unwrap();
    assert_eq!((engine.status, engine.json()), (400, envelope));

    // Nothing changed: still one send in the window, and the next one refused.
    assert_eq!(
        state(&gw.support(ALICE, "state", &name, &url)),
        json!({"verified": false, "sends_in_window": 1, "allowed_per_hour": 1, "retry_after": "within the hour"})
    );
    assert_over_limit(&gw.post(&event(&name, &url)));
    assert_eq!(receiver.records().len(), 1);
    let log = gw.envoy_log();
    assert!(
        log.contains(r#"support token=alice refused="no such operation \"/webhook/lift\""#),
        "{log}"
    );
    support::eventually("the refusals in the access log", || {
        gw.access_log().contains(
            r#""hookgate":"support token=- refused=\"unauthorized: wrong support token\"""#,
        )
    });
}

/// The production configuration ships the listener on loopback with no token: every request is
/// refused until an operator adds one.
#[test]
fn shipped_support_listener_is_on_loopback_and_refuses_without_a_configured_token() {
    for path in ["envoy/envoy.yaml", "envoy/run.yaml", "envoy/fleet.yaml"] {
        let config = EnvoyConfig::load(path);
        let listeners = config.yaml["static_resources"]["listeners"]
            .as_sequence()
            .unwrap();
        let support = listeners
            .iter()
            .find(|l| l["name"] == "hookgate-support")
            .unwrap();
        assert_eq!(
            support["address"]["socket_address"]["address"], "127.0.0.1",
            "{path}"
        );
    }
    let gw = Gateway::start(EnvoyConfig::load("envoy/envoy.yaml"));
    let reply = gw.support(ALICE, "state", "Orders", "https://crm.example/hook");
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some("unauthorized: no support token is configured on this listener")
    );
}
