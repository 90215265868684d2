//! Why the check after DNS may skip IPv4 addresses (and is not needed where only IPv4 is looked
//! up): for every IPv4 address the guard before connecting decides as the check after DNS
//! would, and the documented wrapper skips the check exactly for the addresses Envoy writes as
//! IPv4.

use super::cel::eval;
use super::*;
use crate::destination::{after_dns_matcher, DestinationConfig, DestinationPolicy};

/// Whether the shipped guard (`rules`) lets `address` through with these pseudo-headers: the
/// public policy (outside the built-in list, its upstream_ip_port matchers, and its condition)
/// or the excepted one.
fn guard_allows(rules: &serde_json::Value, headers: &[(&str, String)], address: &str) -> bool {
    let ip: std::net::SocketAddr = address.parse().unwrap();
    let in_list = listed(rules).iter().any(|cidr| net(cidr).contains(ip.ip()));
    let holds = |policy: &str| {
        let condition = &rules["policies"][policy]["condition"];
        eval(condition, headers, address, "") == Ok(serde_json::Value::Bool(true))
    };
    (!in_list && holds(PUBLIC_POLICY)) || holds(EXCEPTED_POLICY)
}

/// The built-in list as the guard's matchers write it.
fn listed(rules: &serde_json::Value) -> Vec<String> {
    rules["policies"][PUBLIC_POLICY]["permissions"][0]["not_rule"]["or_rules"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let prefix = &r["matcher"]["typed_config"]["upstream_ip"];
            format!(
                "{}/{}",
                prefix["address_prefix"].as_str().unwrap(),
                prefix["prefix_len"]
            )
        })
        .collect()
}

/// Addresses worth asking about: the edges of every built-in and configured IPv4 range and of
/// every exception, and a spread of others.
fn addresses(config: &DestinationConfig) -> Vec<Ipv4Addr> {
    let mut cidrs: Vec<String> = listed(&guard_rules());
    cidrs.extend(config.deny_cidrs.iter().cloned());
    cidrs.extend(config.allow.iter().map(|a| a.cidr.clone()));
    let mut out = Vec::new();
    for cidr in cidrs {
        if let Net::V4 { addr, len } = net(&cidr) {
            let last = addr | u32::MAX.checked_shr(len).unwrap_or(0);
            for a in [
                addr.wrapping_sub(1),
                addr,
                addr.wrapping_add(1),
                last,
                last.wrapping_add(1),
            ] {
                out.push(Ipv4Addr::from(a));
            }
        }
    }
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(Ipv4Addr::from(x));
    }
    out
}

#[test]
fn for_every_ipv4_address_the_guard_decides_as_the_check_after_dns() {
    for json in [
        "{}",
        r#"{"deny_cidrs": ["100.0.0.0/24", "93.184.0.0/16", "8.8.8.8", "fd00::/8", "2600::/16"],
            "allow": [{"cidr": "127.0.0.2/32", "port": 18090}, {"cidr": "10.0.0.0/8"},
                      {"cidr": "100.0.0.7/32", "port": 443}, {"cidr": "::1/128", "port": 443}]}"#,
        r#"{"allow": [{"cidr": "169.254.169.254/32", "port": 80}, {"cidr": "172.16.0.0/12"}]}"#,
    ] {
        let rules = guard_rules();
        let config: DestinationConfig = serde_json::from_str(json).unwrap();
        let policy = DestinationPolicy::new(&config).unwrap();
        for port in [80, 443, 18090, 18091] {
            let headers = policy
                .check(&format!("https://receiver.example:{port}/"))
                .unwrap()
                .guard;
            for ip in addresses(&config) {
                let address = format!("{ip}:{port}");
                assert_eq!(
                    guard_allows(&rules, &headers, &address),
                    policy.check_resolved("receiver.example", &address).is_ok(),
                    "{json}: {address}"
                );
            }
        }
    }
}

#[test]
fn the_check_after_dns_is_skipped_for_ipv4_addresses_alone() {
    let matcher = after_dns_matcher();
    let [only] = matcher["matcher_list"]["matchers"]
        .as_array()
        .unwrap()
        .as_slice()
    else {
        panic!("one matcher")
    };
    assert_eq!(only["on_match"]["action"]["name"], "skip");
    let predicate = &only["predicate"]["single_predicate"];
    let expr = &predicate["custom_match"]["typed_config"]["expr_match"]["cel_expr_parsed"]["expr"];
    let skipped = |address: &str| eval(expr, &[], address, "") == Ok(serde_json::Value::Bool(true));
    for ipv4 in [
        "0.0.0.0:1",
        "1.2.3.4:80",
        "100.0.0.7:443",
        "127.0.0.1:8080",
        "255.255.255.255:65535",
    ] {
        assert!(skipped(ipv4), "{ipv4}");
    }
    // IPv6 (in brackets, whatever it embeds), and anything that is not an IP address.
    for other in [
        "[::1]:80",
        "[2600::7]:443",
        "[::ffff:127.0.0.1]:80",
        "[2600::5efe:7f00:1]:443",
        "/run/receiver.sock",
        "@abstract",
        "envoy://internal_client_address/",
        ":80",
        "",
    ] {
        assert!(!skipped(other), "{other}");
    }
}
