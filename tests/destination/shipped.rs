//! The shipped configurations: Envoy's guard before connecting is hookgate's deny list and
//! plumbing only, the documented deny table is the default list, the sub-cluster design, and
//! `hookgate check` on every one of them.

use crate::support::{self, upstream_filters, EnvoyConfig};
use serde_yaml::Value as Yaml;
use std::collections::BTreeSet;
use std::net::IpAddr;

const RBAC_MATCHER: &str =
    "type.googleapis.com/envoy.extensions.rbac.matchers.upstream_ip_port.v3.UpstreamIpPortMatcher";
/// Every configuration shipped in envoy/, each loaded by a test below.
pub const SHIPPED: &[&str] = &[
    "envoy/envoy.yaml",
    "envoy/fleet-local.yaml",
    "envoy/fleet-run.yaml",
    "envoy/fleet.yaml",
    "envoy/plans.yaml",
    "envoy/run.yaml",
];

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
        let deny: BTreeSet<Exception> = rules["policies"][hookgate::destination::PUBLIC_POLICY]
            ["permissions"][0]["not_rule"]["or_rules"]["rules"]
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
        // No check after DNS: the forward proxy looks up IPv4 only (below), which the guard
        // judges by the whole policy.
        let names = |filters: &[Yaml]| -> Vec<String> {
            filters
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            names(upstream_filters(&mut config.yaml)),
            [
                "envoy.filters.http.upstream_rbac",
                "envoy.filters.http.upstream_codec"
            ],
            "{path}"
        );
        // With IPv6 looked up as documented, the check after DNS follows the guard, with the
        // engine-facing filter's own plugin configuration and VM, wrapped in hookgate's matcher
        // (skipped for IPv4 addresses, which the guard judges whole).
        let mut config = config.dual_stack();
        let engine_facing = config.hookgate_filters()[0]["typed_config"]["config"].clone();
        let filters = upstream_filters(&mut config.yaml);
        assert_eq!(
            names(filters),
            [
                "envoy.filters.http.upstream_rbac",
                "hookgate-after-dns-unless-ipv4",
                "envoy.filters.http.upstream_codec"
            ],
            "{path}"
        );
        let wrapper = &filters[1]["typed_config"];
        let matcher: serde_json::Value =
            serde_yaml::from_value(wrapper["xds_matcher"].clone()).unwrap();
        assert_eq!(
            matcher,
            hookgate::destination::after_dns_matcher(),
            "{path}"
        );
        assert_eq!(
            wrapper["extension_config"]["name"], "hookgate-after-dns",
            "{path}"
        );
        let after_dns = &wrapper["extension_config"]["typed_config"]["config"];
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
            "{path}: listener hookgate, filter hookgate: destination.allow[0].port: must be 1..=65535, got 0\n"
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
