//! The default deny list end to end, through a real Envoy with the shipped configuration: a
//! cloud platform endpoint in public space, IPv6 outside global unicast and IPv6 forms embedding
//! a refused IPv4 address are refused as literals (by hookgate, before any DNS) and as names
//! resolving to them (by Envoy's upstream RBAC), 403 / 11110114. Run through scripts/test.sh:
//! these addresses have no route in its loopback-only namespace, so a destination that got past
//! the policy would come back 502 (never sent), not 403.
// Tests may panic; the no-panic lints guard the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{assert_answer, event, isolated, unique_name, EnvoyConfig, Gateway, Reply};

const BLOCKED: &str = "Incorrect url ip";
const FAILED: &str = "The request failed";
/// hookgate's detail when Envoy's upstream RBAC refused the address a name resolved to: the
/// address the router picked (Envoy's `upstream.address`) and the most specific range holding it.
fn resolved(address_in_range: &str) -> String {
    format!("destination blocked: resolved address {address_in_range}, refused by Envoy's destination policy")
}

/// The production configuration, with a limit no test here meets.
fn shipped() -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(r#"{"limit":{"unverified_per_hour":1000}}"#)
}

/// The same with IPv6 looked up too (`dns_lookup_family: ALL`, as docs/security.md describes).
fn dual_stack() -> EnvoyConfig {
    shipped().dual_stack()
}

fn post(gw: &Gateway, url: &str) -> Reply {
    gw.post(&event(&unique_name("Deny"), url))
}

/// 403 / 11110114, nothing delivered, and exactly this detail.
fn assert_refused(reply: &Reply, url: &str, detail: &str) {
    assert_answer(reply, 403, "no", 11110114, BLOCKED);
    assert_eq!(reply.header("x-hookgate-detail"), Some(detail), "{url}");
}

#[test]
fn a_cloud_platform_endpoint_in_public_space_is_refused() {
    isolated();
    let gw = Gateway::start(shipped());
    let azure = "168.63.129.16 is in 168.63.129.16/32 (Azure platform endpoint (WireServer, DNS, DHCP, health probes))";
    let url = "http://168.63.129.16/machine?comp=goalstate";
    assert_refused(
        &post(&gw, url),
        url,
        &format!("destination blocked: {azure}"),
    );
    let url = "http://[::ffff:a83f:8110]:32526/";
    assert_refused(
        &post(&gw, url),
        url,
        "destination blocked: ::ffff:168.63.129.16 is in ::ffff:0:0/96 (IPv4-mapped) and embeds 168.63.129.16, which is in 168.63.129.16/32 (Azure platform endpoint (WireServer, DNS, DHCP, health probes))",
    );
    // A name that resolves to it passes hookgate and is refused by Envoy on the address.
    let url = "http://wireserver.dns.test/machine?comp=goalstate";
    assert_refused(&post(&gw, url), url, &resolved(azure));
    let url = "http://metadata.tencentyun.com/latest/meta-data/";
    assert_refused(
        &post(&gw, url),
        url,
        "destination blocked: host \"metadata.tencentyun.com\" matches \"metadata.tencentyun.com\" (cloud metadata host name)",
    );
}

/// IPv6 literals outside global unicast, in IETF protocol assignments, or embedding a refused
/// IPv4 address: refused by hookgate before Envoy resolves or connects anything, whatever the
/// lookup family.
#[test]
fn ipv6_literals_are_refused_before_any_attempt_to_send() {
    isolated();
    let loopback = "127.0.0.1, which is in 127.0.0.0/8 (loopback)";
    let cases = [
        ("fec0::1", "fec0::1 is in fec0::/10 (site-local, deprecated)".to_string()),
        ("4000::1", "4000::1 is in 4000::/2 (outside global unicast)".to_string()),
        ("2001:20::1", "2001:20::1 is in 2001::/23 (IETF protocol assignments)".to_string()),
        (
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:4136:e378:8000:63bf:80ff:fffe is in 2001::/32 (Teredo) and tunnels to client 127.0.0.1 via server 65.54.227.120".to_string(),
        ),
        (
            "64:ff9b::7f00:1",
            format!("64:ff9b::7f00:1 is in 64:ff9b::/96 (NAT64) and embeds {loopback}"),
        ),
        (
            "::ffff:0:7f00:1",
            format!("::ffff:0:7f00:1 is in ::ffff:0:0:0/96 (IPv4-translated (SIIT)) and embeds {loopback}"),
        ),
        (
            "2002:7f00:1::1",
            format!("2002:7f00:1::1 is in 2002::/16 (6to4) and embeds {loopback}"),
        ),
        (
            "2a00:1450::5efe:7f00:1",
            format!("2a00:1450::5efe:7f00:1 has an ISATAP interface id (::5efe:a.b.c.d in the last 64 bits) and embeds {loopback}"),
        ),
    ];
    for config in [shipped(), dual_stack()] {
        let gw = Gateway::start(config);
        for (address, detail) in &cases {
            let url = format!("http://[{address}]/");
            assert_refused(
                &post(&gw, &url),
                &url,
                &format!("destination blocked: {detail}"),
            );
        }
    }
}

/// Names resolving to the same addresses pass hookgate (a name) and are refused by Envoy's
/// upstream RBAC on the resolved address when IPv6 is looked up. Under the shipped V4_ONLY no
/// AAAA record is asked for: such a name is a DNS failure, never sent.
#[test]
fn ipv6_names_are_refused_on_the_resolved_address() {
    isolated();
    // Envoy cannot look inside an address: the embedding ranges are refused whole.
    let names = [
        (
            "sitelocal",
            "fec0::1 is in fec0::/10 (site-local, deprecated)",
        ),
        ("outside", "4000::1 is in 4000::/2 (outside global unicast)"),
        (
            "orchid",
            "2001:20::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "teredo",
            "2001:0:4136:e378:8000:63bf:80ff:fffe is in 2001::/32 (Teredo)",
        ),
        ("nat64", "64:ff9b::7f00:1 is in 64:ff9b::/96 (NAT64)"),
        (
            "siit",
            "::ffff:0:7f00:1 is in ::ffff:0:0:0/96 (IPv4-translated (SIIT))",
        ),
    ];
    let gw = Gateway::start(dual_stack());
    for (name, detail) in names {
        let url = format!("http://{name}.dns.test/");
        assert_refused(&post(&gw, &url), &url, &resolved(detail));
    }
    drop(gw);
    let gw = Gateway::start(shipped());
    for (name, _) in names {
        let url = format!("http://{name}.dns.test/");
        let reply = post(&gw, &url);
        assert_answer(&reply, 502, "no", 11110111, FAILED);
        assert_eq!(
            reply.header("x-hookgate-detail"),
            Some(
                "webhook not sent: DNS: the name resolved to no IPv4 address \
                 (Envoy answered 503: no_healthy_upstream)"
            ),
            "{url}"
        );
    }
}
