//! `DestinationPolicy::new` (CIDR and host-pattern parsers) and `check` under the policy built.
//!
//! Input: lines `D <cidr>` (deny_cidrs), `H <host>` (deny_hosts), `A <cidr>[ <port>]` (allow),
//! `U <url>` (a URL to check); other lines are ignored. Text lines keep the seeds readable and
//! the mutations meaningful.
#![no_main]

use hookgate::destination::{AllowRule, DestinationConfig, DestinationPolicy};
use hookgate_fuzz::{assert_destination, assert_url_failure};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fn literal_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("http://{a}:{port}/"),
        IpAddr::V6(a) => format!("http://[{a}]:{port}/"),
    }
}

/// The network address written in a CIDR the policy accepted.
fn network_address(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut config = DestinationConfig::default();
    let mut urls = Vec::new();
    for line in text.lines().take(64) {
        let Some((tag, rest)) = line.split_at_checked(1) else {
            continue;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match tag {
            "D" => config.deny_cidrs.push(rest.to_string()),
            "H" => config.deny_hosts.push(rest.to_string()),
            "A" => {
                let (cidr, port) = match rest.rsplit_once(' ') {
                    Some((cidr, port)) => (cidr, port.parse::<u16>().ok()),
                    None => (rest, None),
                };
                config.allow.push(AllowRule {
                    cidr: cidr.to_string(),
                    port,
                });
            }
            "U" => urls.push(rest.to_string()),
            _ => {}
        }
    }

    let policy = match DestinationPolicy::new(&config) {
        Ok(policy) => policy,
        Err(message) => {
            assert!(message.starts_with("destination"), "{message}");
            return;
        }
    };
    for raw in &urls {
        match policy.check(raw) {
            Ok(d) => assert_destination(&policy, raw, &d),
            Err(failure) => assert_url_failure(raw, &failure),
        }
    }

    // An exception always lets its own address through on its port (or any port).
    for rule in &config.allow {
        let ip = network_address(&rule.cidr).expect("accepted CIDR without an address");
        let url = literal_url(ip, rule.port.unwrap_or(80));
        let d = policy
            .check(&url)
            .unwrap_or_else(|e| panic!("{url} refused despite allow {rule:?}: {e:?}"));
        assert_destination(&policy, &url, &d);
    }

    // Without exceptions, whatever is denied is refused: its CIDR's own address, its host name
    // and (for *.name) a subdomain.
    let strict = DestinationPolicy::new(&DestinationConfig {
        allow: Vec::new(),
        ..config.clone()
    })
    .expect("removing exceptions made the policy invalid");
    for cidr in &config.deny_cidrs {
        let ip = network_address(cidr).expect("accepted CIDR without an address");
        for port in [80, 443, 8080] {
            let url = literal_url(ip, port);
            assert!(
                strict.check(&url).is_err(),
                "{url} passes deny_cidrs {cidr:?}"
            );
        }
    }
    for host in &config.deny_hosts {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let mut tried = vec![format!("http://{name}/"), format!("https://{name}:8443/x")];
        if host.starts_with("*.") {
            tried.push(format!("http://sub.{name}/"));
        }
        for url in tried {
            assert!(
                strict.check(&url).is_err(),
                "{url} passes deny_hosts {host:?}"
            );
        }
    }
});
