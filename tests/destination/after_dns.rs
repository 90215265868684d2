//! The check after DNS (hookgate's upstream filter) is needed only where IPv6 is looked up. As
//! shipped (`V4_ONLY`) there is none, and nothing the policy refuses is reached without it. With
//! IPv6 looked up as docs/security.md shows (its blocks loaded as they are), it is skipped for an
//! IPv4 address, which Envoy's guard before connecting judges by the whole plugin policy, and
//! still refuses what the guard cannot express, an IPv6 address in a configured deny_cidr or
//! with an ISATAP interface id embedding a refused IPv4 address, before any byte is sent.

use crate::shipped::SHIPPED;
use crate::support::{
    self, assert_answer, event, isolated, unique_name, upstream_filters, EnvoyConfig, Gateway,
    Reply,
};
use crate::{assert_refused, Counter, HIGH_LIMIT};
use serde_yaml::Value as Yaml;
use std::net::Ipv4Addr;

/// The public IPv6 address scripts/test.sh puts on the namespace's loopback, and its names in
/// the tests' DNS zone (tests/support/dns.rs): itself, and an ISATAP id embedding 127.0.0.1.
const PUBLIC_V6: &str = "2600::7";
const ISATAP_V6: &str = "2600::5efe:7f00:1";

/// The engine chain's check after DNS (in a configuration that looks up IPv6): its wrapper's
/// `typed_config`.
fn wrapper(config: &mut EnvoyConfig) -> &mut Yaml {
    let filters = upstream_filters(&mut config.yaml);
    let wrapper = filters
        .iter_mut()
        .find(|f| f["name"] == "hookgate-after-dns-unless-ipv4")
        .expect("the check after DNS in its wrapper");
    &mut wrapper["typed_config"]
}

/// The same configuration with another plugin configuration for the check after DNS alone
/// (the engine chain's): what it would refuse shows whether it ran.
fn after_dns_plugin(mut config: EnvoyConfig, json: &str) -> EnvoyConfig {
    wrapper(&mut config)["extension_config"]["typed_config"]["config"]["configuration"]["value"] =
        Yaml::String(json.into());
    config
}

/// The check after DNS without its matcher: run on every try, as before it.
fn unwrapped(mut config: EnvoyConfig) -> EnvoyConfig {
    let inner = wrapper(&mut config)["extension_config"].clone();
    let filters = upstream_filters(&mut config.yaml);
    let at = filters
        .iter()
        .position(|f| f["name"] == "hookgate-after-dns-unless-ipv4")
        .unwrap();
    filters[at] = inner;
    config
}

fn shipped(plugin: &str) -> EnvoyConfig {
    EnvoyConfig::load("envoy/envoy.yaml").plugin_config(plugin)
}

fn post(gw: &Gateway, url: &str) -> support::Reply {
    gw.post(&event(&unique_name("AfterDns"), url))
}

fn assert_delivered(reply: &support::Reply, url: &str) {
    assert_eq!(reply.status, 200, "{url}: {}", reply.text());
    assert_eq!(reply.header("x-hookgate-delivered"), Some("yes"), "{url}");
}

/// The documented way to look up IPv6 is what `hookgate check` asks for: every shipped
/// configuration passes as it is (IPv4 only, no check after DNS); with the lookup family changed
/// alone it is refused, naming the cluster and the fix, in every engine chain; with the check
/// after DNS added too it passes, without a warning.
#[test]
fn the_documented_ipv6_lookup_is_what_hookgate_check_asks_for() {
    for path in SHIPPED {
        // Neither a problem nor a warning.
        let passes = |config: &EnvoyConfig| {
            let text = config.text();
            let review = (
                hookgate::operator::check(&text),
                hookgate::operator::warnings(&text),
            );
            assert_eq!(review, (vec![], vec![]), "{path}");
        };
        let shipped = EnvoyConfig::load(path);
        passes(&shipped);

        let family_alone = shipped.clone().ipv6_lookup_family().text();
        let problems = hookgate::operator::check(&family_alone);
        assert!(!problems.is_empty(), "{path}");
        for problem in &problems {
            let (chain, why) = problem.split_once(": ").unwrap();
            assert!(chain.starts_with("listener hookgate"), "{path}: {problem}");
            assert_eq!(
                why,
                "cluster webhooks has dns_lookup_family: ALL: IPv6 addresses need the check after DNS, which is missing (Envoy's guard cannot judge them by the whole policy): add it in its matcher to the router's upstream_http_filters as docs/security.md shows (\"Looking up IPv6\"), or set dns_lookup_family: V4_ONLY",
                "{path}"
            );
        }

        passes(&shipped.dual_stack());
    }
}

/// As shipped (IPv4 looked up only, no check after DNS), nothing the policy refuses is reached:
/// IPv6 literals in a configured deny_cidr, with an ISATAP id embedding 127.0.0.1, and `::1` are
/// refused by hookgate before DNS; names resolving to them are never looked up to IPv6; an
/// IPv6 literal the policy allows is not connected to either. Listeners on every one of those
/// addresses accept no connection.
#[test]
fn without_ipv6_looked_up_nothing_the_policy_refuses_is_reached() {
    isolated();
    let receiver = Counter::start(PUBLIC_V6, 0);
    let port = receiver.port;
    let embedded = Counter::start(ISATAP_V6, port);
    let loopback = Counter::start("::1", port);
    let denying = format!(r#"{{"destination":{{"deny_cidrs":["{PUBLIC_V6}/128"]}},{HIGH_LIMIT}}}"#);
    let mut config = shipped(&denying);
    assert_eq!(
        upstream_filters(&mut config.yaml).len(),
        2,
        "the guard and the codec alone"
    );
    let gw = Gateway::start(config);
    for (literal, detail) in [
        (PUBLIC_V6, format!("{PUBLIC_V6} is in {PUBLIC_V6}/128 (configured deny_cidrs)")),
        (ISATAP_V6, format!("{ISATAP_V6} has an ISATAP interface id (::5efe:a.b.c.d in the last 64 bits) and embeds 127.0.0.1, which is in 127.0.0.0/8 (loopback)")),
        ("::1", "::1 is in ::1/128 (loopback)".to_string()),
    ] {
        let url = format!("http://[{literal}]:{port}/hook");
        assert_blocked(&post(&gw, &url), &url, &format!("destination blocked: {detail}"));
    }
    for name in ["v6public", "isatap", "v6loopback"] {
        let url = format!("http://{name}.dns.test:{port}/hook");
        assert_never_sent(&post(&gw, &url), &url);
    }
    drop(gw);
    let gw = Gateway::start(shipped(&format!("{{{HIGH_LIMIT}}}")));
    let url = format!("http://[{PUBLIC_V6}]:{port}/hook");
    assert_never_sent(&post(&gw, &url), &url);
    assert_eq!(
        (
            receiver.accepted(),
            embedded.accepted(),
            loopback.accepted()
        ),
        (0, 0, 0)
    );
}

/// Without a lookup family Envoy looks IPv6 up too: a name with only an AAAA record is
/// delivered to. `hookgate check` therefore requires the check after DNS there.
#[test]
fn without_a_lookup_family_envoy_looks_up_ipv6() {
    isolated();
    let receiver = Counter::start(PUBLIC_V6, 0);
    let config = shipped(&format!("{{{HIGH_LIMIT}}}")).edit(|yaml| {
        support::cluster(yaml, "webhooks")
            .as_mapping_mut()
            .unwrap()
            .remove("dns_lookup_family")
            .unwrap();
    });
    let gw = Gateway::start(config);
    let url = format!("http://v6public.dns.test:{}/hook", receiver.port);
    assert_delivered(&post(&gw, &url), &url);
    assert_eq!(receiver.requests(), ["POST /hook HTTP/1.1"]);
}

/// A check after DNS that would refuse the receiver's IPv4 address lets it through in its
/// wrapper (it was skipped: the guard judged that address), and refuses it unwrapped.
#[test]
fn the_check_after_dns_is_skipped_for_an_ipv4_address() {
    isolated();
    let public = Ipv4Addr::from(support::dns::PUBLIC).to_string();
    let receiver = Counter::start(&public, 0);
    let url = format!("http://public.dns.test:{}/hook", receiver.port);
    let refusing = format!(r#"{{"destination":{{"deny_cidrs":["{public}/32"]}},{HIGH_LIMIT}}}"#);
    let config = after_dns_plugin(
        shipped(&format!("{{{HIGH_LIMIT}}}")).dual_stack(),
        &refusing,
    );

    let gw = Gateway::start(config.clone());
    assert_delivered(&post(&gw, &url), &url);
    assert_eq!(receiver.requests(), ["POST /hook HTTP/1.1"]);
    drop(gw);

    let gw = Gateway::start(unwrapped(config));
    let reply = post(&gw, &url);
    assert_blocked(
        &reply,
        &url,
        &format!(
            "destination blocked: \"public.dns.test:{}\" resolved: {public} is in {public}/32 (configured deny_cidrs)",
            receiver.port
        ),
    );
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the delivery in the wrapper"
    );
}

/// With IPv6 looked up, a name resolving to an address in a configured IPv6 deny_cidr, which
/// Envoy's guard cannot hold, is refused by the check after DNS before any byte is sent; so is
/// a name resolving to an ISATAP id that embeds 127.0.0.1. Without the deny_cidr the same
/// receiver gets the webhook: nothing else stood in the way.
#[test]
fn the_check_after_dns_refuses_what_only_it_can_refuse() {
    isolated();
    let receiver = Counter::start(PUBLIC_V6, 0);
    let embedded = Counter::start(ISATAP_V6, receiver.port);
    let url = format!("http://v6public.dns.test:{}/hook", receiver.port);
    let isatap = format!("http://isatap.dns.test:{}/hook", receiver.port);

    let gw = Gateway::start(shipped(&format!("{{{HIGH_LIMIT}}}")).dual_stack());
    assert_delivered(&post(&gw, &url), &url);
    assert_eq!(receiver.requests(), ["POST /hook HTTP/1.1"]);
    let reply = post(&gw, &isatap);
    assert_blocked(
        &reply,
        &isatap,
        &format!(
            "destination blocked: \"isatap.dns.test:{}\" resolved: {ISATAP_V6} has an ISATAP interface id (::5efe:a.b.c.d in the last 64 bits) and embeds 127.0.0.1, which is in 127.0.0.0/8 (loopback)",
            receiver.port
        ),
    );
    drop(gw);

    let denying = format!(r#"{{"destination":{{"deny_cidrs":["2600::/16"]}},{HIGH_LIMIT}}}"#);
    let gw = Gateway::start(shipped(&denying).dual_stack());
    let reply = post(&gw, &url);
    assert_blocked(
        &reply,
        &url,
        &format!(
            "destination blocked: \"v6public.dns.test:{}\" resolved: {PUBLIC_V6} is in 2600::/16 (configured deny_cidrs)",
            receiver.port
        ),
    );
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the delivery without the deny_cidr"
    );
    assert_eq!(embedded.requests(), Vec::<String>::new());
}

/// Never sent: the name (or literal) resolved to no IPv4 address, 502 / 11110111.
fn assert_never_sent(reply: &Reply, url: &str) {
    assert_answer(reply, 502, "no", 11110111, "The request failed");
    assert_eq!(
        reply.header("x-hookgate-detail"),
        Some("webhook not sent: DNS: the name resolved to no IPv4 address (Envoy answered 503: no_healthy_upstream)"),
        "{url}"
    );
}

/// Refused 403 / 11110114 with exactly this detail (by hookgate before DNS, or by the check after
/// DNS).
fn assert_blocked(reply: &Reply, url: &str, detail: &str) {
    assert_refused(reply, url);
    assert_eq!(reply.header("x-hookgate-detail"), Some(detail), "{url}");
}
