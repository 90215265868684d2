//! Policy is configuration: each knob changed in the plugin configuration alone (Envoy's guard
//! before connecting gets exceptions and deny CIDRs from hookgate), checked by `hookgate check`,
//! and enforced end to end. Run through scripts/test.sh (a loopback-only network namespace).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use support::http::post_from;
use support::{
    assert_answer, event, eventually, isolated, unique_name, Behaviour, EnvoyConfig, Gateway,
    Receiver, Reply, QUERY_ERROR,
};

const BLOCKED: &str = "Incorrect url ip";

/// `hookgate check` on a configuration: exit status and output lines.
fn check(config: &EnvoyConfig) -> (i32, String) {
    let dir = support::scratch("check");
    let path = dir.join("envoy.yaml");
    support::write(&path, &serde_yaml::to_string(&config.yaml).unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "F");
    (out.status.code().unwrap(), text)
}

/// `config` with these exceptions added to its plugin configurations' `destination.allow`, and
/// `hookgate check` passing it.
fn with_exceptions(config: EnvoyConfig, exceptions: Vec<serde_json::Value>) -> EnvoyConfig {
    let config = config.edit_plugin_configs(move |json| {
        json["destination"]["allow"]
            .as_array_mut()
            .unwrap()
            .extend(exceptions.clone());
    });
    assert_eq!(check(&config), (0, "F: ok\n".to_string()));
    config
}

/// A deny CIDR added to the plugin configuration alone refuses a name that resolves into it,
/// after DNS, with the range and its reason; the receiver gets no connection (Envoy's guard
/// refuses before connecting, fed by hookgate). The same gateway without it delivers there (the address is reachable).
#[test]
fn a_deny_cidr_in_the_plugin_alone_is_refused_before_connecting() {
    isolated();
    let public = Ipv4Addr::from(support::dns::PUBLIC).to_string();
    let receiver = Receiver::start_on(&public, Behaviour::json(200, r#"{"ok":1}"#));
    let url = format!("http://public.dns.test:{}/hook", receiver.port);
    let shipped = EnvoyConfig::load("envoy/run.yaml");
    let before = Gateway::start(shipped.clone());
    assert_answer(
        &before.post(&event(&unique_name("Public"), &url)),
        200,
        "yes",
        1,
        r#"{"ok":1}"#,
    );
    drop(before);
    let connections = *receiver.connections.lock().unwrap();
    let edited = shipped.edit_plugin_configs(|json| {
        json["destination"]["deny_cidrs"] = serde_json::json!(["100.0.0.0/24"]);
    });
    assert_eq!(check(&edited), (0, "F: ok\n".to_string()));
    let gw = Gateway::start(edited);
    let reply = gw.post(&event(&unique_name("Public"), &url));
    assert_answer(&reply, 403, "no", 11110114, BLOCKED);
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some(
            format!(
                "destination blocked: resolved address {public} is in 100.0.0.0/24 (configured deny_cidrs), refused by Envoy's destination policy"
            )
            .as_str()
        )
    );
    let literal = gw.post(&event(
        &unique_name("Public"),
        &format!("http://{public}:{}/", receiver.port),
    ));
    assert_answer(&literal, 403, "no", 11110114, BLOCKED);
    assert_eq!(
        receiver.records().len(),
        1,
        "only the delivery before the edit"
    );
    // Refused before connecting: Envoy's guard gets the deny CIDR from hookgate.
    assert_eq!(*receiver.connections.lock().unwrap(), connections);
}

/// Sixteen deny CIDRs, fifteen of the costliest and 100.0.0.0/24 last (the guard's eighth
/// pattern): names resolving into the first and into the last are refused by Envoy's guard
/// (the detail says so, not the check after DNS), and the reachable receiver gets no connection.
#[test]
fn deny_cidrs_over_every_guard_slot_are_refused_before_connecting() {
    isolated();
    let public = Ipv4Addr::from(support::dns::PUBLIC).to_string();
    let receiver = Receiver::start_on(&public, Behaviour::json(200, "{}"));
    let mut cidrs: Vec<String> = (100..115).map(|b| format!("200.{b}.128.0/17")).collect();
    cidrs.push("100.0.0.0/24".into());
    let config = EnvoyConfig::load("envoy/run.yaml").edit_plugin_configs(move |json| {
        json["destination"]["deny_cidrs"] = serde_json::json!(cidrs.clone());
    });
    assert_eq!(check(&config), (0, "F: ok\n".to_string()));
    let gw = Gateway::start(config);
    for (name, ip, range) in [
        ("public.dns.test", public.as_str(), "100.0.0.0/24"),
        (
            "200-100-200-1.ip.dns.test",
            "200.100.200.1",
            "200.100.128.0/17",
        ),
    ] {
        let url = format!("http://{name}:{}/", receiver.port);
        let reply = gw.post(&event(&unique_name("Denied"), &url));
        assert_answer(&reply, 403, "no", 11110114, BLOCKED);
        assert_eq!(
            reply.header("x-hookgate-detail"),
            Some(
                format!(
                    "destination blocked: resolved address {ip} is in {range} (configured \
                     deny_cidrs), refused by Envoy's destination policy"
                )
                .as_str()
            )
        );
    }
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
}

/// A caller network added to the plugin's `callers` alone: a caller from it is served, one from
/// another network gets the 21111011 envelope and nothing is sent.
#[test]
fn a_caller_network_in_the_plugin_alone_is_served_and_others_refused() {
    isolated();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let config = support::loopback_config().edit_plugin_configs(|json| {
        json["callers"] = serde_json::json!(["127.0.0.2/32"]);
    });
    assert_eq!(check(&config), (0, "F: ok\n".to_string()));
    let gw = Gateway::start(config);
    let body = event(&unique_name("Caller"), &receiver.url("/"));
    assert_answer(
        &post_from("127.0.0.2", gw.port, &body),
        200,
        "yes",
        1,
        r#"{"ok":1}"#,
    );
    let refused = post_from(
        "127.0.0.1",
        gw.port,
        &event(&unique_name("Caller"), &receiver.url("/")),
    );
    assert_answer(&refused, 403, "no", 21111011, QUERY_ERROR);
    assert_eq!(
        refused.header("x-hookgate-detail"),
        Some("caller refused: source 127.0.0.1 is not in the configured callers")
    );
    assert_eq!(receiver.records().len(), 1);
}

/// A caller network added to the plugin's `callers` alone, outside the networks the engine chain
/// is chosen for (here the engine's own 127.0.0.1): hookgate in the listener's default chain
/// serves its callers, under that chain's bounds (`hookgate check` warns so) and with the same
/// limit state, and a caller from any other network gets the envelope, as the network did
/// before the edit.
#[test]
fn a_caller_network_outside_the_engine_chain_is_served_by_editing_the_plugin_alone() {
    isolated();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":1}"#));
    let deployed = support::loopback_config()
        .edit(|yaml| {
            let chain = &mut yaml["static_resources"]["listeners"][0]["filter_chains"][0];
            chain["filter_chain_match"]["source_prefix_ranges"] =
                serde_yaml::from_str(r#"[{address_prefix: "127.0.0.1", prefix_len: 32}]"#).unwrap();
        })
        .edit_plugin_configs(|json| json["callers"] = serde_json::json!(["127.0.0.1/32"]));
    assert_eq!(check(&deployed), (0, "F: ok\n".to_string()));
    let edited = deployed.clone().edit_plugin_configs(|json| {
        json["callers"]
            .as_array_mut()
            .unwrap()
            .push("127.0.0.16/28".into());
    });
    assert_eq!(
        check(&edited),
        (
            0,
            "F: warning: listener hookgate: callers has 127.0.0.16/28, which the engine chain's \
             filter_chain_match.source_prefix_ranges does not cover: its callers are served by \
             the default chain, under its tighter bounds (add the range to the engine chain for \
             its bounds)\nF: ok\n"
                .to_string()
        )
    );
    let post = |gw: &Gateway, source: &str| {
        post_from(
            source,
            gw.port,
            &event(&unique_name("Caller"), &receiver.url("/")),
        )
    };
    let assert_refused = |reply: &Reply, source: &str| {
        assert_answer(reply, 403, "no", 21111011, QUERY_ERROR);
        assert_eq!(
            reply.header("x-hookgate-detail"),
            Some(
                format!("caller refused: source {source} is not in the configured callers")
                    .as_str()
            )
        );
    };
    let before = Gateway::start(deployed);
    assert_refused(&post(&before, "127.0.0.17"), "127.0.0.17");
    drop(before);

    let gw = Gateway::start(edited);
    for source in ["127.0.0.17", "127.0.0.31", "127.0.0.1"] {
        assert_answer(&post(&gw, source), 200, "yes", 1, r#"{"ok":1}"#);
    }
    for source in ["127.0.0.2", "127.0.0.32"] {
        assert_refused(&post(&gw, source), source);
    }
    // Both chains keep one limit: a webhook's hour used through one is used through the other.
    let once = event(&unique_name("Caller"), &receiver.url("/"));
    assert_answer(
        &post_from("127.0.0.17", gw.port, &once),
        200,
        "yes",
        1,
        r#"{"ok":1}"#,
    );
    support::assert_over_limit(&post_from("127.0.0.1", gw.port, &once));
    // The new network's callers came through the default chain, the engine through its own.
    eventually("the answers counted by chain", || {
        gw.stat("http.other_networks.downstream_rq_2xx") == Some(3)
            && gw.stat("http.other_networks.downstream_rq_4xx") == Some(2)
            && gw.stat("http.hookgate.downstream_rq_2xx") == Some(1)
            && gw.stat("http.hookgate.downstream_rq_4xx") == Some(1)
    });
    assert_eq!(receiver.records().len(), 4);
}

/// An exception added to the plugin configuration of envoy/run.yaml alone (the guard before
/// connecting gets it from hookgate): a second receiver is delivered to by literal and by a name
/// resolving to it; another port of the same address stays refused and never gets a connection.
#[test]
fn an_exception_in_the_plugin_alone_reaches_exactly_its_receiver() {
    isolated();
    let receiver = Receiver::start_on("127.0.0.2", Behaviour::json(200, r#"{"ok":2}"#));
    let p = receiver.port;
    let config = with_exceptions(
        EnvoyConfig::load("envoy/run.yaml"),
        vec![serde_json::json!({"cidr": "127.0.0.2/32", "port": p})],
    );
    let gw = Gateway::start(config);
    for url in [
        format!("http://127.0.0.2:{p}/literal"),
        format!("http://second.dns.test:{p}/name"),
    ] {
        assert_answer(
            &gw.post(&event(&unique_name("Second"), &url)),
            200,
            "yes",
            1,
            r#"{"ok":2}"#,
        );
    }
    // What the receiver got carries none of hookgate's pseudo-headers for the guard.
    for record in receiver.records() {
        assert!(
            record
                .headers
                .iter()
                .all(|(k, _)| !k.contains("hookgate-guard")),
            "{:?}",
            record.headers
        );
    }
    let other = Receiver::start_on("127.0.0.2", Behaviour::json(200, "{}"));
    for url in [
        format!("http://127.0.0.2:{}/", other.port),
        format!("http://second.dns.test:{}/", other.port),
    ] {
        let reply = gw.post(&event(&unique_name("Second"), &url));
        assert_answer(&reply, 403, "no", 11110114, BLOCKED);
    }
    assert_eq!(receiver.records().len(), 2);
    assert_eq!(*other.connections.lock().unwrap(), 0);
}

/// Twelve exceptions on one port, each a wide CIDR whose pattern is among the costliest (more
/// than Envoy's 100-instruction limit holds in one pattern: hookgate spreads them over the
/// guard's pattern slots): names resolving into the first, a middle and the last are delivered;
/// addresses just outside them, on the same port, are refused and never get a connection.
#[test]
fn a_dozen_exceptions_on_one_port_all_reach_their_receivers() {
    isolated();
    let cidrs: Vec<String> = (10..22).map(|b| format!("127.{b}.128.0/17")).collect();
    let first = Receiver::start_on("127.10.128.1", Behaviour::json(200, r#"{"ok":"first"}"#));
    let p = first.port;
    let middle = Receiver::start_at(
        "127.16.200.9",
        p,
        Behaviour::json(200, r#"{"ok":"middle"}"#),
    );
    let last = Receiver::start_at(
        "127.21.255.254",
        p,
        Behaviour::json(200, r#"{"ok":"last"}"#),
    );
    let below = Receiver::start_at("127.10.127.255", p, Behaviour::json(200, "{}"));
    let beyond = Receiver::start_at("127.22.128.1", p, Behaviour::json(200, "{}"));
    let exceptions: Vec<serde_json::Value> = cidrs
        .iter()
        .map(|c| serde_json::json!({"cidr": c, "port": p}))
        .collect();
    let config = with_exceptions(EnvoyConfig::load("envoy/run.yaml"), exceptions);
    let gw = Gateway::start(config);
    let url = |ip: &str| format!("http://{}.ip.dns.test:{p}/hook", ip.replace('.', "-"));
    for (ip, receiver, body) in [
        ("127.10.128.1", &first, r#"{"ok":"first"}"#),
        ("127.16.200.9", &middle, r#"{"ok":"middle"}"#),
        ("127.21.255.254", &last, r#"{"ok":"last"}"#),
    ] {
        assert_answer(
            &gw.post(&event(&unique_name("Dozen"), &url(ip))),
            200,
            "yes",
            1,
            body,
        );
        assert_eq!(receiver.records().len(), 1, "{ip}");
    }
    for ip in ["127.10.127.255", "127.22.128.1"] {
        let reply = gw.post(&event(&unique_name("Dozen"), &url(ip)));
        assert_answer(&reply, 403, "no", 11110114, BLOCKED);
        assert_eq!(
            reply.header("x-hookgate-detail"),
            Some(
                format!(
                    "destination blocked: resolved address {ip} is in 127.0.0.0/8 (loopback), \
                     refused by Envoy's destination policy"
                )
                .as_str()
            )
        );
    }
    // Refused before connecting: Envoy's guard, not the check after DNS.
    assert_eq!(*below.connections.lock().unwrap(), 0);
    assert_eq!(*beyond.connections.lock().unwrap(), 0);
}

/// An IPv6 exception (one address) added to the plugin configuration alone, with IPv6 looked up
/// (`ALL`): the guard matches Envoy's text of it; a name resolving to it and its literal are
/// delivered, while another port of the same address is refused and never gets a connection.
#[test]
fn an_ipv6_exception_in_the_plugin_alone_reaches_exactly_its_receiver() {
    isolated();
    let receiver = Receiver::start_on("::1", Behaviour::json(200, r#"{"ok":6}"#));
    let p = receiver.port;
    let config = with_exceptions(
        EnvoyConfig::load("envoy/run.yaml").dual_stack(),
        vec![serde_json::json!({"cidr": "::1/128", "port": p})],
    );
    let gw = Gateway::start(config);
    for url in [
        format!("http://[::1]:{p}/literal"),
        format!("http://[0:0::1]:{p}/spelled"),
        format!("http://v6loopback.dns.test:{p}/name"),
    ] {
        assert_answer(
            &gw.post(&event(&unique_name("Six"), &url)),
            200,
            "yes",
            1,
            r#"{"ok":6}"#,
        );
    }
    assert_eq!(receiver.records().len(), 3);
    let other = Receiver::start_on("::1", Behaviour::json(200, "{}"));
    for url in [
        format!("http://[::1]:{}/", other.port),
        format!("http://v6loopback.dns.test:{}/", other.port),
    ] {
        let reply = gw.post(&event(&unique_name("Six"), &url));
        assert_answer(&reply, 403, "no", 11110114, BLOCKED);
    }
    assert_eq!(*other.connections.lock().unwrap(), 0);
}

/// `hookgate explain`: before DNS and after DNS, with the range and reason, and its exit status.
#[test]
fn hookgate_explain_tells_why() {
    let explain = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("explain")
            .args(args)
            .current_dir(support::repo())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, out, _) = explain(&[
        "--config",
        "envoy/run.yaml",
        "http://receiver.test:18080/hook",
        "--resolved",
        "127.0.0.1",
        "--resolved",
        "169.254.169.254",
    ]);
    assert_eq!(status, 1);
    assert_eq!(
        out,
        "before DNS: allowed, sent to receiver.test:18080 as http://receiver.test:18080/hook\n\
         after DNS 127.0.0.1:18080: allowed\n\
         after DNS 169.254.169.254:18080: refused: 403 11110114 (Incorrect url ip) destination blocked: \"receiver.test\" resolved: 169.254.169.254 is in 169.254.0.0/16 (link-local)\n"
    );
    let (status, out, _) = explain(&["--config", "envoy/envoy.yaml", "http://0x7f.1/"]);
    assert_eq!(status, 1);
    assert_eq!(
        out,
        "before DNS: refused: 403 11110114 (Incorrect url ip) destination blocked: 127.0.0.1 is in 127.0.0.0/8 (loopback)\n"
    );
    let (status, out, _) = explain(&["--config", "envoy/envoy.yaml", "https://example.com/x"]);
    assert_eq!(
        (status, out.as_str()),
        (
            0,
            "before DNS: allowed, sent to example.com:443 as https://example.com/x\n"
        )
    );
    let dir = support::scratch("explain");
    let bad = dir.join("plugin.json");
    support::write(&bad, r#"{"destination":{"deny_cidrs":["10.0.0.1/8"]}}"#);
    let (status, _, err) = explain(&["--config", bad.to_str().unwrap(), "http://a.test/"]);
    assert_eq!(status, 2);
    assert_eq!(
        err,
        format!(
            "{}: plugin configuration: destination.deny_cidrs[0]: invalid CIDR \"10.0.0.1/8\"\n",
            bad.display()
        )
    );
}

/// Every shipped configuration passes `envoy --mode validate` (and `hookgate check`, in
/// tests/destination/shipped.rs), rendered with this checkout's module (the files load it from
/// /etc/hookgate/hookgate.wasm). envoy/fleet.yaml and envoy/fleet-local.yaml name certificates,
/// which validation opens: tests/fleet/ and tests/walkthrough.rs start them with certificates.
#[test]
fn envoy_validates_every_shipped_configuration() {
    let mut command = support::envoy_command();
    let program = command.remove(0);
    let dir = support::scratch("validate");
    for path in [
        "envoy/envoy.yaml",
        "envoy/fleet-run.yaml",
        "envoy/plans.yaml",
        "envoy/run.yaml",
        "examples/compose/envoy.yaml",
    ] {
        let rendered = Command::new(support::repo().join("scripts/render-envoy.py"))
            .arg(path)
            .current_dir(support::repo())
            .output()
            .unwrap();
        assert!(rendered.status.success(), "{path}: render failed");
        let copy = dir.join(path.replace('/', "-"));
        std::fs::write(&copy, &rendered.stdout).unwrap();
        let out = Command::new(&program)
            .args(&command)
            .args(["--mode", "validate", "-l", "warning", "-c"])
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("configuration '{}' OK", copy.display())
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
