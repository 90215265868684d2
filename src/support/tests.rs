#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

const CONFIG: &str = r#"{"role":"support","tokens":[
    {"name":"alice","token":"alice-secret-0123456789"},
    {"name":"oncall","token":"oncall-secret-0123456789"}]}"#;

fn config() -> SupportConfig {
    SupportConfig::parse(CONFIG.as_bytes()).unwrap()
}

fn state(verified: bool, sends: u32, retry: Option<u64>) -> LimitState {
    LimitState {
        verified,
        sends_in_window: sends,
        allowed_per_hour: (!verified).then_some(1),
        retry_after: retry,
    }
}

#[test]
fn the_role_tells_a_support_configuration_apart() {
    assert!(is_support_config(CONFIG.as_bytes()));
    assert!(!is_support_config(br#"{"limit":{}}"#));
    assert!(!is_support_config(b""));
    assert_eq!(config().namespace, "default");
}

#[test]
fn bad_configurations_name_the_key_never_the_token() {
    let error = |json: &str| SupportConfig::parse(json.as_bytes()).unwrap_err();
    assert!(
        error(r#"{"role":"support","tokens":[{"name":"a b","token":"0123456789abcdef"}]}"#)
            .starts_with("tokens[0].name")
    );
    let short = error(r#"{"role":"support","tokens":[{"name":"bob","token":"short-secret"}]}"#);
    assert!(short.starts_with("tokens[0].token (bob)"), "{short}");
    assert!(!short.contains("short-secret"));
    let twice = r#"{"role":"support","tokens":[{"name":"a","token":"0123456789abcdef"},
        {"name":"b","token":"0123456789abcdef"}]}"#;
    assert!(!error(twice).contains("0123456789abcdef"));
    assert!(error(r#"{"role":"support","extra":1}"#).contains("extra"));
    assert!(!format!("{:?}", config()).contains("secret-0123"));
}

#[test]
fn the_token_names_who_asked() {
    let config = config();
    assert_eq!(
        config.authorize(Some("Bearer oncall-secret-0123456789")),
        Ok("oncall")
    );
    assert_eq!(
        config.authorize(Some("Bearer alice-secret-0123456789")),
        Ok("alice")
    );
    for wrong in [
        None,
        Some("alice-secret-0123456789"),
        Some("Bearer alice-secret-012345678"),
    ] {
        assert_eq!(
            config.authorize(wrong).unwrap_err().status(),
            401,
            "{wrong:?}"
        );
    }
    let none = SupportConfig::parse(br#"{"role":"support"}"#).unwrap();
    assert_eq!(
        none.authorize(Some("Bearer anything-at-all-here"))
            .unwrap_err()
            .detail(),
        "unauthorized: no support token is configured on this listener"
    );
}

#[test]
fn paths_name_the_operations() {
    assert_eq!(
        Operation::route("POST", "/webhook/state"),
        Ok(Operation::Look)
    );
    assert_eq!(
        Operation::route("POST", "/webhook/verify?x=1"),
        Ok(Operation::Lift(Lift::Verify))
    );
    assert_eq!(
        Operation::route("POST", "/webhook/reset"),
        Ok(Operation::Lift(Lift::ResetWindow))
    );
    assert_eq!(
        Operation::route("GET", "/webhook/state")
            .unwrap_err()
            .status(),
        405
    );
    assert_eq!(Operation::route("POST", "/").unwrap_err().status(), 404);
}

#[test]
fn the_body_names_one_webhook() {
    let target = Target::parse(br#"{"name":"A","url":"https://x.example/h"}"#).unwrap();
    assert_eq!(
        (target.name.as_str(), target.url.as_str()),
        ("A", "https://x.example/h")
    );
    for bad in [
        &b"{}"[..],
        b"[]",
        br#"{"name":"","url":"u"}"#,
        br#"{"name":"A","url":"u","x":1}"#,
    ] {
        assert_eq!(Target::parse(bad).unwrap_err().status(), 400);
    }
}

#[test]
fn answers_and_audit_lines_say_what_changed() {
    let target = Target {
        name: "Orders".into(),
        url: "https://crm.example/hook?secret=1".into(),
    };
    let lifted = Lifted {
        before: state(false, 1, Some(3000)),
        after: state(false, 0, None),
        changed: true,
    };
    let reset = Operation::Lift(Lift::ResetWindow);
    let answer: serde_json::Value =
        serde_json::from_slice(&render(reset, "default", "local", &target, &lifted)).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"status": true,
            "webhook": {"name": "Orders", "url": "https://crm.example/hook?secret=1"},
            "namespace": "default", "backend": "local", "action": "reset", "changed": true,
            "before": {"verified": false, "sends_in_window": 1, "allowed_per_hour": 1, "retry_after": 3000},
            "after": {"verified": false, "sends_in_window": 0, "allowed_per_hour": 1, "retry_after": null}})
    );
    assert_eq!(
        audit("alice", reset, "default", &target, Ok(&lifted)),
        "support token=alice action=reset namespace=default webhook=\"Orders\" \
         host=\"crm.example\" changed=true before=verified:false,sends:1,retry_after:3000 \
         after=verified:false,sends:0,retry_after:-"
    );
    let refused = SupportError::Unavailable("etcd: no answer".into());
    let line = audit("alice", Operation::Look, "default", &target, Err(&refused));
    assert!(
        line.ends_with("refused=\"limit state unavailable: etcd: no answer\""),
        "{line}"
    );
    assert!(!line.contains("secret=1"));
    assert_eq!(
        refused.body(),
        br#"[{"status":false,"message":"Error during query execution","code":21111011}]"#
    );
}
