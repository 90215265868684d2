//! The check after DNS (hookgate's upstream filter) runs where only it can judge: it is skipped
//! for an IPv4 address, which Envoy's guard before connecting judges by the whole plugin policy,
//! and still refuses what the guard cannot express, an IPv6 address in a configured deny_cidr
//! or with an ISATAP interface id embedding a refused IPv4 address, before any byte is sent.

use crate::support::{
    self, event, isolated, unique_name, upstream_filters, EnvoyConfig, Gateway, Reply,
};
use crate::{assert_refused, Counter, HIGH_LIMIT};
use serde_yaml::Value as Yaml;
use std::net::Ipv4Addr;

/// The public IPv6 address scripts/test.sh puts on the namespace's loopback, and its names in
/// the tests' DNS zone (tests/support/dns.rs): itself, and an ISATAP id embedding 127.0.0.1.
const PUBLIC_V6: &str = "2600::7";
const ISATAP_V6: &str = "2600::5efe:7f00:1";

/// The engine chain's check after DNS: its wrapper's `typed_config`.
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

/// A check after DNS that would refuse the receiver's IPv4 address lets it through in its
/// wrapper (it was skipped: the guard judged that address), and refuses it unwrapped.
#[test]
fn the_check_after_dns_is_skipped_for_an_ipv4_address() {
    isolated();
    let public = Ipv4Addr::from(support::dns::PUBLIC).to_string();
    let receiver = Counter::start(&public, 0);
    let url = format!("http://public.dns.test:{}/hook", receiver.port);
    let refusing = format!(r#"{{"destination":{{"deny_cidrs":["{public}/32"]}},{HIGH_LIMIT}}}"#);
    let config = after_dns_plugin(shipped(&format!("{{{HIGH_LIMIT}}}")), &refusing);

    let gw = Gateway::start(config.clone());
    assert_delivered(&post(&gw, &url), &url);
    assert_eq!(receiver.requests(), ["POST /hook HTTP/1.1"]);
    drop(gw);

    let gw = Gateway::start(unwrapped(config));
    let reply = post(&gw, &url);
    assert_refused_after_dns(
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
    assert_refused_after_dns(
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
    assert_refused_after_dns(
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

/// Refused 403 / 11110114, named by the check after DNS in the detail header, exactly.
fn assert_refused_after_dns(reply: &Reply, url: &str, detail: &str) {
    assert_refused(reply, url);
    assert_eq!(reply.header("x-hookgate-detail"), Some(detail), "{url}");
}
