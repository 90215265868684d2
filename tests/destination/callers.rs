//! Callers: a refused network gets the envelope and nothing is sent; the caller token is required,
//! checked, and never forwarded or logged.

use crate::support::{
    self, event, isolated, unique_name, Behaviour, EnvoyConfig, Gateway, Receiver, Reply,
};
use crate::{loopback_high_limit, HIGH_LIMIT};

fn assert_caller_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"), "{what}");
    assert_eq!(
        reply.json(),
        serde_json::json!([{"status": false, "message": "Error during query execution", "code": 21111011}]),
        "{what}"
    );
}

/// The listener accepts only 127.0.0.2; the client comes from 127.0.0.1.
#[test]
fn a_caller_from_a_refused_network_gets_21111011_and_nothing_is_sent() {
    isolated();
    let gw = Gateway::start(loopback_high_limit().edit_plugin_configs(|json| {
        json["callers"] = serde_json::json!(["127.0.0.2/32"]);
    }));
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    // Whatever the caller claims in X-Forwarded-For, the peer address decides.
    let reply = gw.post_with(
        &event(&unique_name("Caller"), &receiver.url("/")),
        &[
            ("x-forwarded-for", "127.0.0.2"),
            ("x-request-id", "refused-1"),
        ],
    );
    assert_caller_refused(&reply, "refused network");
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
    // Refused by hookgate before it read the body: the access log says why, from where, which
    // (hookgate's own reply carries no code_details; its decision record says the outcome).
    support::eventually("the access log line", || !gw.access_log().is_empty());
    let line: serde_json::Value = serde_json::from_str(gw.access_log().trim()).unwrap();
    assert_eq!(line["reason"], "");
    let detail = "caller refused: source 127.0.0.1 is not in the configured callers";
    assert_eq!(line["detail"], detail);
    assert_eq!(line["request_id"], "refused-1");
    assert_eq!(
        line["hookgate"],
        format!(
            "webhook=- host=- outcome=caller_refused code=21111011 status=403 detail={detail:?}"
        )
    );
    let source = line["source"].as_str().unwrap();
    assert!(source.starts_with("127.0.0.1:"), "{source}");
}

#[test]
fn the_caller_token_is_required_checked_and_never_forwarded_or_logged() {
    isolated();
    let secret = "tok-4f9a2c7e1b3d5a6c";
    let gw = Gateway::start(
        EnvoyConfig::load("envoy/envoy.yaml")
            .plugin_config(&format!(
                r#"{{"destination":{{"allow":[{{"cidr":"127.0.0.1/32"}}]}},{HIGH_LIMIT},"caller_token":{{"header":"x-hookgate-token","token":"{secret}"}}}}"#
            )),
    );
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let body = event(&unique_name("Token"), &receiver.url("/"));
    assert_caller_refused(&gw.post(&body), "no token");
    for wrong in [
        "tok-4f9a2c7e1b3d5a6",
        "tok-4f9a2c7e1b3d5a6d",
        "TOK-4f9a2c7e1b3d5a6c",
        "",
    ] {
        assert_caller_refused(&gw.post_with(&body, &[("x-hookgate-token", wrong)]), wrong);
    }
    assert!(receiver.records().is_empty());
    let reply = gw.post_with(&body, &[("x-hookgate-token", secret)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].header("x-hookgate-token"), None);
    assert!(
        !gw.logs().contains(secret),
        "the token appears in Envoy's log"
    );
}
