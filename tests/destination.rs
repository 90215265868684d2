//! End to end: where a webhook may go and who may call, through a real Envoy with the
//! shipped configurations. Run through scripts/test.sh: every test that starts Envoy first checks
//! it runs in a network namespace with only loopback, so a policy bug can only hit loopback.
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_yaml::Value as Yaml;
use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{
    event, isolated, unique_name, upstream_filters, Behaviour, EnvoyConfig, Gateway, Receiver,
    Reply,
};

const RBAC_MATCHER: &str =
    "type.googleapis.com/envoy.extensions.rbac.matchers.upstream_ip_port.v3.UpstreamIpPortMatcher";
/// Every configuration shipped in envoy/, each loaded by a test below.
const SHIPPED: &[&str] = &[
    "envoy/envoy.yaml",
    "envoy/fleet-local.yaml",
    "envoy/fleet-run.yaml",
    "envoy/fleet.yaml",
    "envoy/plans.yaml",
    "envoy/run.yaml",
];
/// Plenty of sends per hour, so that repeated sends measure the destination policy only.
const HIGH_LIMIT: &str = r#""limit":{"unverified_per_hour":1000}"#;

/// The production configuration, with a limit high enough that no test here meets it.
fn shipped_high_limit() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(&format!("{{{HIGH_LIMIT}}}"))
}

/// The same with receivers on 127.0.0.1 allowed (in the plugin, which feeds Envoy's guard).
fn loopback_high_limit() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(&format!(
        r#"{{"destination":{{"allow":[{{"cidr":"127.0.0.1/32"}}]}},{HIGH_LIMIT}}}"#
    ))
}

// ---------------------------------------------------------------------------------------------
// Safety and fixtures

/// A listener that counts accepted connections and answers `200 {"ok":true}` to each request.
struct Counter {
    port: u16,
    accepted: Arc<AtomicU32>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Counter {
    fn start(address: &str, port: u16) -> Counter {
        let listener = TcpListener::bind((address, port))
            .unwrap_or_else(|e| panic!("bind {address}:{port}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU32::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(mut writer) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    while let Ok((line, headers)) = support::http::read_head(&mut reader) {
                        if support::http::read_body(&mut reader, &headers, false).is_err() {
                            return;
                        }
                        seen.lock().unwrap().push(line);
                        let body = br#"{"ok":true}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if writer.write_all(head.as_bytes()).is_err()
                            || writer.write_all(body).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Counter {
            port,
            accepted,
            requests,
        }
    }

    fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Adds an exception to the plugin's `destination.allow`, and nothing else: the guard before
/// connecting gets it from hookgate, per webhook.
fn except(config: EnvoyConfig, address: &str, prefix_len: u8, port: Option<u16>) -> EnvoyConfig {
    let cidr = format!("{address}/{prefix_len}");
    config.edit_plugin_configs(move |json| {
        let rule = match port {
            Some(p) => serde_json::json!({"cidr": cidr, "port": p}),
            None => serde_json::json!({"cidr": cidr}),
        };
        match json["destination"]["allow"].as_array_mut() {
            Some(allow) => allow.push(rule),
            None => json["destination"]["allow"] = serde_json::json!([rule]),
        }
    })
}

fn post(gw: &Gateway, url: &str) -> Reply {
    gw.post(&event(&unique_name("Dest"), url))
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("no"), "{what}");
    assert_eq!(
        reply.json(),
        serde_json::json!([{"status": false, "message": "Incorrect url ip", "code": 11110114}]),
        "{what}"
    );
}

fn code(reply: &Reply) -> u64 {
    reply.json()[0]["code"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The shipped configurations

/// An RBAC exception: the network, and the inclusive port range if it names one.
type Exception = ((IpAddr, u64), Option<(u64, u64)>);

fn cidr(address: &str, length: u64) -> (IpAddr, u64) {
    (address.parse().unwrap(), length)
}

fn matcher_cidr(rule: &Yaml) -> Exception {
    let config = &rule["matcher"]["typed_config"];
    assert_eq!(config["@type"], RBAC_MATCHER, "{rule:?}");
    let ip = &config["upstream_ip"];
    let range = config.get("upstream_port_range").map(|r| {
        (
            r["start"].as_u64().unwrap_or(0),
            r["end"].as_u64().unwrap_or(0),
        )
    });
    (
        cidr(
            ip["address_prefix"].as_str().unwrap(),
            ip["prefix_len"].as_u64().unwrap(),
        ),
        range,
    )
}

/// docs/security.md's deny table lists exactly the default ranges: the first column of each row
/// of the table names its ranges in backticks.
#[test]
fn the_documented_deny_table_is_the_default_deny_list() {
    let docs = std::fs::read_to_string("docs/security.md").unwrap();
    let documented: BTreeSet<String> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .flat_map(|row| {
            let first = format!("`{}", row.split(" | ").next().unwrap_or_default());
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|c| c.contains('/'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let listed: BTreeSet<String> = hookgate::destination::default_deny_list()
        .map(|(cidr, _, _)| cidr.to_string())
        .collect();
    assert_eq!(documented, listed, "docs/security.md's deny table");
}

/// Envoy's guard before connecting is the same plumbing in every shipped configuration: the
/// built-in list (hookgate's `default_deny_list()`) and the conditions that read hookgate's
/// per-webhook patterns; no exception or range is written into it.
#[test]
fn envoys_guard_is_hookgates_deny_list_and_plumbing_only() {
    let expected: BTreeSet<Exception> = hookgate::destination::default_deny_list()
        .map(|(c, _, _)| {
            let (a, l) = c.split_once('/').unwrap();
            (cidr(a, l.parse().unwrap()), None)
        })
        .collect();
    let plumbing = serde_json::to_string(&hookgate::destination::guard_rules()).unwrap();
    for path in SHIPPED {
        let mut config = EnvoyConfig::load(path);
        let rules = support::guard_rules_of(&mut config.yaml).clone();
        let deny: BTreeSet<Exception> = rules["policies"]["public-destinations"]["permissions"][0]
            ["not_rule"]["or_rules"]["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(matcher_cidr)
            .collect();
        assert_eq!(
            deny, expected,
            "{path}: Envoy's deny list differs from hookgate's default_deny_list()"
        );
        let json: serde_json::Value = serde_json::to_value(&rules).unwrap();
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            plumbing,
            "{path}: the guard is not hookgate's plumbing"
        );
        // The check after DNS follows the guard, with the engine-facing filter's own plugin
        // configuration and VM.
        let engine_facing = config.hookgate_filters()[0]["typed_config"]["config"].clone();
        let filters = upstream_filters(&mut config.yaml);
        let names: Vec<&str> = filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.upstream_rbac",
                "hookgate-after-dns",
                "envoy.filters.http.upstream_codec"
            ],
            "{path}"
        );
        let after_dns = &filters[1]["typed_config"]["config"];
        assert_eq!(after_dns["root_id"], "hookgate-after-dns", "{path}");
        assert_eq!(after_dns["failure_policy"], "FAIL_CLOSED", "{path}");
        assert_eq!(after_dns["vm_config"], engine_facing["vm_config"], "{path}");
        assert_eq!(
            after_dns["configuration"], engine_facing["configuration"],
            "{path}: the check after DNS reads the same plugin configuration"
        );
    }
}

#[test]
fn shipped_configs_use_the_sub_cluster_design() {
    for path in SHIPPED {
        let config = EnvoyConfig::load(path);
        let text = serde_yaml::to_string(&config.yaml).unwrap();
        let clusters = config.yaml["static_resources"]["clusters"]
            .as_sequence()
            .unwrap();
        let dfp: Vec<&Yaml> = clusters
            .iter()
            .filter(|c| c["cluster_type"]["name"] == "envoy.clusters.dynamic_forward_proxy")
            .collect();
        assert_eq!(
            dfp.len(),
            1,
            "{path}: one forward-proxy parent only (sub-cluster names collide across parents)"
        );
        let cluster = dfp[0];
        assert!(
            cluster["cluster_type"]["typed_config"]
                .get("sub_clusters_config")
                .is_some(),
            "{path}: sub-cluster mode"
        );
        assert_eq!(cluster["dns_lookup_family"], "V4_ONLY", "{path}");
        for key in ["health_checks", "preconnect_policy", "outlier_detection"] {
            assert!(cluster.get(key).is_none(), "{path}: no {key}");
        }
        // The default transport is TLS; only "http" selects plaintext.
        assert_eq!(
            cluster["transport_socket"]["name"],
            "envoy.transport_sockets.tls"
        );
        let map = &cluster["transport_socket_matcher"]["matcher_tree"]["exact_match_map"]["map"];
        assert_eq!(map.as_mapping().unwrap().len(), 1, "{path}");
        assert_eq!(
            map["http"]["action"]["typed_config"]["name"], "plaintext",
            "{path}"
        );
        // The downstream RBAC cannot see resolved addresses in sub-cluster mode: it must not be
        // mistaken for the destination control.
        assert!(!text.contains("save_upstream_address"), "{path}");
        // Callers are hookgate's (plugin `callers`, the connection's peer address): it is the
        // first filter, the peer address is not taken from X-Forwarded-For, and the shipped
        // plugin configurations keep the default, loopback only.
        let mut config = EnvoyConfig::load(path);
        let hcm = &config.yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        assert_eq!(hcm["use_remote_address"], true, "{path}");
        assert_eq!(hcm["preserve_external_request_id"], true, "{path}");
        // Only the request id is kept before hookgate (a filter that refuses nothing).
        let names: Vec<&str> = hcm["http_filters"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names[..2],
            ["envoy.filters.http.set_filter_state", "hookgate"],
            "{path}"
        );
        let plugin: serde_json::Value = serde_json::from_str(&config.plugin_config_text()).unwrap();
        assert_eq!(
            plugin.get("callers"),
            None,
            "{path}: callers are loopback only"
        );
    }
}

/// `hookgate check` (the operators' checker) passes every shipped configuration and names the
/// key of a bad one, exiting non-zero.
#[test]
fn hookgate_check_passes_every_shipped_config_and_names_a_bad_key() {
    let checker = env!("CARGO_BIN_EXE_hookgate");
    let out = std::process::Command::new(checker)
        .arg("check")
        .args(SHIPPED)
        .current_dir(support::repo())
        .output()
        .unwrap();
    let expected: String = SHIPPED.iter().map(|p| format!("{p}: ok\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert!(out.status.success());
    let dir = support::scratch("check");
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(support::repo().join("envoy/run.yaml")).unwrap();
    support::write(&bad, &text.replace(r#""port": 18080"#, r#""port": 0"#));
    let out = std::process::Command::new(checker)
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let path = bad.display();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{path}: listener hookgate, filter hookgate: destination.allow[0].port: must be 1..=65535, got 0\n\
             {path}: listener hookgate, filter hookgate-after-dns: destination.allow[0].port: must be 1..=65535, got 0\n"
        )
    );
}

#[test]
fn every_shipped_config_is_tested() {
    let mut found: Vec<String> = std::fs::read_dir(support::repo().join("envoy"))
        .unwrap()
        .map(|e| format!("envoy/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
        .collect();
    found.sort();
    assert_eq!(
        found, SHIPPED,
        "a configuration in envoy/ that no test loads: add it to SHIPPED and give it a test"
    );
}

// ---------------------------------------------------------------------------------------------
// Destinations, end to end

#[test]
fn ip_literals_are_refused_in_every_spelling() {
    isolated();
    let gw = Gateway::start(shipped_high_limit());
    let listener = Counter::start("127.0.0.1", 0);
    let p = listener.port;
    let urls = [
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://127.0.0.1.:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[::127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::7f00:1]:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("https://%31%32%37.0.0.1:{p}/"),
        format!("http://\u{ff11}\u{ff12}\u{ff17}.0.0.1:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fe80::1]/".to_string(),
        "http://0/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://100.64.0.1/".to_string(),
    ];
    for url in &urls {
        assert_refused(&post(&gw, url), url);
    }
    assert_eq!(listener.accepted(), 0, "a refused literal reached loopback");
}

#[test]
fn names_that_resolve_to_loopback_are_refused_and_never_connected() {
    isolated();
    let gw = Gateway::start(shipped_high_limit());
    let receiver = Receiver::start(Behaviour::json(200, "{}"));
    let p = receiver.port;
    for url in [
        // Refused by name in hookgate.
        format!("http://localhost:{p}/"),
        format!("http://LocalHost.:{p}/"),
        format!("http://a.b.localhost:{p}/"),
        // Pass hookgate (a name), resolve to 127.0.0.1, refused by Envoy's upstream RBAC.
        format!("http://receiver.test:{p}/"),
        format!("http://loopback.dns.test:{p}/"),
        format!("http://RECEIVER.test.:{p}/"),
    ] {
        assert_refused(&post(&gw, &url), &url);
    }
    assert_eq!(*receiver.connections.lock().unwrap(), 0);
    assert!(receiver.records().is_empty());
}

/// A name whose answer is an allowed address first and a blocked one after it: the blocked
/// address never gets a connection, whether the allowed one refuses connections or answers.
#[test]
fn mixed_dns_answers_never_reach_the_blocked_address() {
    isolated();
    // 127.0.0.2 is the allowed receiver here; 127.0.0.1 stays blocked.
    let gw = Gateway::start(except(shipped_high_limit(), "127.0.0.2", 32, None));
    // The allowed address refuses connections (nothing listens on 127.0.0.2:port).
    let blocked = Counter::start("127.0.0.1", 0);
    let mut refused = 0;
    for name in ["mixed.dns.test", "mixedrev.dns.test"] {
        for _ in 0..6 {
            let url = format!("http://{name}:{}/", blocked.port);
            let reply = post(&gw, &url);
            match reply.status {
                403 => {
                    assert_refused(&reply, &url);
                    refused += 1;
                }
                502 => assert_eq!(code(&reply), 11110111, "{url}"),
                _ => panic!("{url}: {} {}", reply.status, reply.text()),
            }
        }
    }
    assert!(refused > 0, "the blocked address was never picked");
    assert_eq!(
        blocked.accepted(),
        0,
        "the blocked address got a connection"
    );

    // The allowed address answers: delivered there, or refused; never the blocked one.
    let allowed = Receiver::start_on("127.0.0.2", Behaviour::json(200, r#"{"ok":1}"#));
    let blocked = Counter::start("127.0.0.1", allowed.port);
    let (mut delivered, mut refused) = (0, 0);
    for name in ["mixed.dns.test", "mixedrev.dns.test"] {
        for _ in 0..6 {
            let url = format!("http://{name}:{}/", allowed.port);
            let reply = post(&gw, &url);
            match reply.status {
                200 => {
                    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
                    delivered += 1;
                }
                403 => {
                    assert_refused(&reply, &url);
                    refused += 1;
                }
                _ => panic!("{url}: {} {}", reply.status, reply.text()),
            }
        }
    }
    assert!(delivered > 0 && refused > 0, "{delivered} {refused}");
    assert_eq!(allowed.records().len(), delivered);
    assert_eq!(
        blocked.accepted(),
        0,
        "the blocked address got a connection"
    );
}

/// An exception (address and port) lets exactly that through: by literal and by name.
#[test]
fn an_exception_reaches_its_receiver_and_nothing_more() {
    isolated();
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let p = receiver.port;
    let gw = Gateway::start(except(shipped_high_limit(), "127.0.0.1", 32, Some(p)));
    for url in [
        format!("http://127.0.0.1:{p}/literal"),
        format!("http://receiver.test:{p}/name"),
    ] {
        let reply = post(&gw, &url);
        assert_eq!(reply.status, 200, "{url}: {}", reply.text());
        assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    }
    assert_eq!(receiver.records().len(), 2);
    // The next port, and another loopback address, stay refused.
    let other = Counter::start("127.0.0.1", 0);
    let neighbour = Counter::start("127.0.0.2", p);
    for url in [
        format!("http://127.0.0.1:{}/", other.port),
        format!("http://receiver.test:{}/", other.port),
        format!("http://127.0.0.2:{p}/"),
        format!("http://127.0.0.1:{}/", p + 1),
        format!("http://receiver.test:{}/", p + 1),
    ] {
        assert_refused(&post(&gw, &url), &url);
    }
    assert_eq!(other.accepted() + neighbour.accepted(), 0);
}

/// envoy/run.yaml: the demo receiver's exception is 127.0.0.1:18080 and not a port more.
#[test]
fn run_config_excepts_the_demo_receiver_only() {
    isolated();
    let config = EnvoyConfig::load("envoy/run.yaml");
    let gw = Gateway::start(config);
    let demo = Counter::start("127.0.0.1", 18080);
    let next = Counter::start("127.0.0.1", 18081);
    let reply = post(&gw, "http://127.0.0.1:18080/hook");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = post(&gw, "http://receiver.test:18080/hook");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(demo.requests().len(), 2);
    assert_refused(&post(&gw, "http://127.0.0.1:18081/"), "literal 18081");
    assert_refused(&post(&gw, "http://receiver.test:18081/"), "name 18081");
    assert_eq!(next.accepted(), 0);
}

/// Sub-cluster names are host:port only: the same host:port used with both schemes must never
/// make an https webhook travel in plaintext (measured downgrade with one parent per scheme).
#[test]
fn https_never_travels_in_plaintext_after_http_to_the_same_host_port() {
    isolated();
    let gw = Gateway::start(loopback_high_limit());
    // A plaintext receiver: an https webhook can only reach its HTTP parser in plaintext.
    let receiver = Counter::start("127.0.0.1", 0);
    let p = receiver.port;
    for host in ["127.0.0.1", "receiver.test"] {
        for (step, scheme) in ["https", "http", "https", "http", "https"]
            .iter()
            .enumerate()
        {
            let url = format!("{scheme}://{host}:{p}/{scheme}?step={step}");
            let reply = post(&gw, &url);
            if *scheme == "http" {
                assert_eq!(reply.status, 200, "{url}: {}", reply.text());
            } else {
                assert_ne!(
                    reply.header("x-hookgate-delivered"),
                    Some("yes"),
                    "{url}: {}",
                    reply.text()
                );
            }
        }
    }
    let plaintext = receiver.requests();
    assert_eq!(plaintext.len(), 4, "{plaintext:?}");
    assert!(
        plaintext.iter().all(|line| line.starts_with("POST /http?")),
        "an https webhook was sent in plaintext: {plaintext:?}"
    );
}

#[test]
fn redirects_are_not_followed() {
    isolated();
    let gw = Gateway::start(loopback_high_limit());
    let target = Counter::start("127.0.0.1", 80);
    let redirect = Receiver::start(Behaviour::Answer {
        status: 302,
        headers: vec![("location".into(), "http://127.0.0.1/".into())],
        body: vec![],
    });
    let reply = post(&gw, &redirect.url("/hook"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    assert_eq!(reply.header("x-hookgate-upstream-status"), Some("302"));
    assert_eq!(code(&reply), 11110111);
    assert_eq!(redirect.records().len(), 1);
    assert_eq!(target.accepted(), 0, "the redirect was followed");
}

/// A webhook refused by Envoy's destination RBAC (after hookgate counted it) gives its slot
/// back: with one send an hour, the same webhook is refused again (not 429), and the same name
/// to an allowed URL is delivered.
#[test]
fn a_refused_webhook_does_not_use_up_the_hourly_allowance() {
    isolated();
    let gw = Gateway::start(EnvoyConfig::load("envoy/envoy.yaml").plugin_config(
        r#"{"destination":{"allow":[{"cidr":"127.0.0.1/32"}]},"limit":{"unverified_per_hour":1}}"#,
    ));
    let blocked = Counter::start("127.0.0.3", 0);
    let receiver = Receiver::start(Behaviour::json(200, r#"{"ok":true}"#));
    let name = unique_name("Refused");
    let refused_url = format!("http://blocked.test:{}/", blocked.port);
    for _ in 0..3 {
        assert_refused(&gw.post(&event(&name, &refused_url)), &refused_url);
    }
    assert_eq!(blocked.accepted(), 0);
    let reply = gw.post(&event(&name, &receiver.url("/ok")));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"));
    // The allowance is live: a second delivery of that webhook in the hour is over the limit.
    let again = gw.post(&event(&name, &receiver.url("/ok")));
    assert_eq!(again.status, 429, "{}", again.text());
    assert_eq!(receiver.records().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Callers

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
