//! `DestinationPolicy::check`: the webhook URL as the engine wrote it, under the default policy
//! and under a configured one (exceptions, extra deny lists).
#![no_main]

use hookgate::destination::{AllowRule, DestinationConfig, DestinationPolicy};
use hookgate_fuzz::{
    assert_destination, assert_url_failure, forbidden_name, forbidden_v4, forbidden_v6, host_ip,
};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;

fn policies() -> &'static (DestinationPolicy, DestinationPolicy) {
    static POLICIES: OnceLock<(DestinationPolicy, DestinationPolicy)> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let default = DestinationPolicy::new(&DestinationConfig::default()).expect("default");
        let configured = DestinationPolicy::new(&DestinationConfig {
            deny_cidrs: vec!["8.8.8.0/24".into(), "2606:4700::/32".into()],
            deny_hosts: vec!["*.corp.example".into(), "internal".into()],
            allow: vec![
                AllowRule {
                    cidr: "127.0.0.1/32".into(),
                    port: Some(18080),
                },
                AllowRule {
                    cidr: "::1/128".into(),
                    port: None,
                },
            ],
        })
        .expect("configured");
        (default, configured)
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let (default, configured) = policies();

    match default.check(&raw) {
        Ok(d) => {
            assert_destination(default, &raw, &d);
            match host_ip(&d.host) {
                Some(IpAddr::V4(a)) => assert!(!forbidden_v4(a), "{raw:?} passed as {d:?}"),
                Some(IpAddr::V6(a)) => assert!(!forbidden_v6(a), "{raw:?} passed as {d:?}"),
                None => {
                    assert!(!forbidden_name(&d.host), "{raw:?} passed as {d:?}");
                    assert!(!d.host.starts_with('['), "{raw:?}: {d:?}");
                }
            }
        }
        Err(failure) => assert_url_failure(&raw, &failure),
    }

    match configured.check(&raw) {
        Ok(d) => {
            assert_destination(configured, &raw, &d);
            let port = d.authority.rsplit_once(':').map(|(_, p)| p);
            match host_ip(&d.host) {
                Some(IpAddr::V4(a)) => {
                    let excepted = a == std::net::Ipv4Addr::LOCALHOST && port == Some("18080");
                    assert!(excepted || !forbidden_v4(a), "{raw:?} passed as {d:?}");
                    assert!(a.octets()[..3] != [8, 8, 8], "{raw:?} passed as {d:?}");
                }
                Some(IpAddr::V6(a)) => {
                    let excepted = a == std::net::Ipv6Addr::LOCALHOST;
                    assert!(excepted || !forbidden_v6(a), "{raw:?} passed as {d:?}");
                    assert!(a.segments()[..2] != [0x2606, 0x4700], "{raw:?}");
                }
                None => {
                    let host = d.host.trim_end_matches('.');
                    assert!(!forbidden_name(host), "{raw:?} passed as {d:?}");
                    assert!(
                        host != "internal"
                            && host != "corp.example"
                            && !host.ends_with(".corp.example"),
                        "{raw:?} passed as {d:?}"
                    );
                }
            }
        }
        Err(failure) => assert_url_failure(&raw, &failure),
    }
});
