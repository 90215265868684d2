//! The destination policy's corpus: every public bypass spelling with its verdict.

use super::*;

mod corpus;
use corpus::{DNS_CORPUS, PUBLIC_CORPUS, RULE_CORPUS};

#[test]
fn host_as_written_for_refusal_logs() {
    assert_eq!(host_as_written("http://0x7f.1/x"), "\"0x7f.1\"");
    assert_eq!(
        host_as_written("https://user:pw@Evil.example:8080/?q#f"),
        "\"Evil.example:8080\""
    );
    assert_eq!(host_as_written("no scheme"), "\"no scheme\"");
    assert_eq!(
        host_as_written("http://\u{ff11}27.0.0.1/"),
        "\"\\u{ff11}27.0.0.1\""
    );
    assert_eq!(host_as_written(""), "\"\"");
}

/// Expected verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    /// Passes.
    P,
    /// Passes the filter: a public DNS name that only becomes local through DNS or a
    /// redirect; the filter cannot resolve it, Envoy's RBAC refuses the resolved address.
    D,
    /// Refused as a blocked destination (403, 11110114).
    B,
    /// Refused as an invalid URL (400).
    I,
}
use V::{B, D, I, P};

fn policy() -> DestinationPolicy {
    DestinationPolicy::new(&DestinationConfig::default()).unwrap()
}

fn verdict(policy: &DestinationPolicy, raw: &str) -> V {
    match policy.check(raw) {
        Ok(destination) => {
            // The limit tracks `Destination::url` as it is (`WebhookId::normalised`): it must be
            // the URL's normalised form, and stay so when normalised again.
            let tracked = crate::limit::normalise_url(raw);
            assert_eq!(destination.url, tracked, "{raw:?}: tracked URL");
            assert_eq!(crate::limit::normalise_url(&tracked), tracked, "{raw:?}");
            P
        }
        Err(Failure::BlockedDestination(_)) => B,
        Err(Failure::InvalidUrl(_)) => I,
        Err(other) => panic!("{raw:?}: unexpected failure {other:?}"),
    }
}

fn assert_corpus(policy: &DestinationPolicy, corpus: &[(&str, V)]) {
    let mut wrong = Vec::new();
    for &(raw, expected) in corpus {
        let got = verdict(policy, raw);
        let expected_here = if expected == D { P } else { expected };
        if got != expected_here {
            wrong.push(format!(
                "{raw:?}: expected {expected:?}, got {:?}",
                policy.check(raw)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn details_name_reason_and_address() {
    let policy = policy();
    let cases = [
        ("http://127.0.0.1/", "127.0.0.1 is in 127.0.0.0/8 (loopback)"),
        ("http://2130706433/", "127.0.0.1 is in 127.0.0.0/8 (loopback)"),
        (
            "http://0xa9fea9fe/latest/meta-data/",
            "169.254.169.254 is in 169.254.0.0/16 (link-local)",
        ),
        ("http://255.255.255.255/", "255.255.255.255 is in 255.255.255.255/32 (broadcast)"),
        ("http://[::1]/", "::1 is in ::1/128 (loopback)"),
        (
            "http://[::ffff:127.0.0.1]/",
            "::ffff:127.0.0.1 is in ::ffff:0:0/96 (IPv4-mapped) and embeds 127.0.0.1, which is in 127.0.0.0/8 (loopback)",
        ),
        (
            "http://[2002:a9fe:a9fe::]/",
            "2002:a9fe:a9fe:: is in 2002::/16 (6to4) and embeds 169.254.169.254, which is in 169.254.0.0/16 (link-local)",
        ),
        ("http://localhost/", "host \"localhost\" matches \"localhost\" (local host name)"),
        ("http://a.localhost./", "host \"a.localhost\" matches \"*.localhost\" (local host name)"),
        (
            "http://127.0.0.1../",
            "host \"127.0.0.1\" is written as an address: 127.0.0.1 is in 127.0.0.0/8 (loopback)",
        ),
        (
            "http://[fe80::1%25eth0]/",
            "fe80::1 is in fe80::/10 (link-local) (zone id \"eth0\")",
        ),
    ];
    for (raw, detail) in cases {
        assert_eq!(
            policy.check(raw),
            Err(Failure::BlockedDestination(detail.to_string())),
            "{raw}"
        );
    }
    let blocked = policy.check("http://127.0.0.1/").unwrap_err();
    assert_eq!(blocked.http_status(), 403);
    assert_eq!(blocked.code().number(), 11110114);
    let invalid = policy.check("http://user@example.com/").unwrap_err();
    assert_eq!(invalid.http_status(), 400);
    assert_eq!(
        invalid,
        Failure::InvalidUrl("userinfo (user@) not allowed".into())
    );
}

#[test]
fn details_are_ascii() {
    let policy = policy();
    for raw in [
        "http://१२७.०.०.१/",
        "ftp\u{e9}://x/",
        "http://example.com/\u{3000}",
        "http://[fe80::1%25\u{e9}\u{e9}]/",
    ] {
        let failure = policy.check(raw).unwrap_err();
        assert!(failure.to_string().is_ascii(), "{raw}: {failure}");
    }
}

fn destination(raw: &str) -> Destination {
    policy().check(raw).unwrap()
}

#[test]
fn what_will_be_sent() {
    assert_eq!(
        destination("https://crm.example.com/hooks/sendpulse"),
        Destination {
            url: "https://crm.example.com/hooks/sendpulse".into(),
            https: true,
            authority: "crm.example.com:443".into(),
            path_and_query: "/hooks/sendpulse".into(),
            host: "crm.example.com".into(),
            guard: vec![],
        }
    );
    assert_eq!(
        destination("HTTP://Example.COM:80?a=1&b=%20#frag"),
        Destination {
            url: "http://example.com/?a=1&b=%20".into(),
            https: false,
            authority: "example.com:80".into(),
            path_and_query: "/?a=1&b=%20".into(),
            host: "example.com".into(),
            guard: vec![],
        }
    );
    assert_eq!(
        destination("https://[2001:4860:4860:0:0:0:0:8888]:8443/a/../b?q#"),
        Destination {
            url: "https://[2001:4860:4860::8888]:8443/b?q".into(),
            https: true,
            authority: "[2001:4860:4860::8888]:8443".into(),
            path_and_query: "/b?q".into(),
            host: "[2001:4860:4860::8888]".into(),
            guard: vec![],
        }
    );
    let d = destination("http://134744072:8080");
    assert_eq!(d.url, "http://8.8.8.8:8080/");
    assert_eq!(d.authority, "8.8.8.8:8080");
    assert_eq!(d.path_and_query, "/");
    let d = destination("https://bücher.example/ä?x=ü");
    assert_eq!(d.url, "https://xn--bcher-kva.example/%C3%A4?x=%C3%BC");
    assert_eq!(d.authority, "xn--bcher-kva.example:443");
    assert_eq!(d.path_and_query, "/%C3%A4?x=%C3%BC");
    let d = destination("http://example.com/?");
    assert_eq!(d.url, "http://example.com/?");
    assert_eq!(d.path_and_query, "/?");
    let d = destination("https://example.com:443/x");
    assert_eq!(
        (d.url.as_str(), d.authority.as_str()),
        ("https://example.com/x", "example.com:443")
    );
    let d = destination("http://example.com:443/x");
    assert_eq!(
        (d.url.as_str(), d.authority.as_str()),
        ("http://example.com:443/x", "example.com:443")
    );
}

fn with(config: serde_json::Value) -> DestinationPolicy {
    let config: DestinationConfig = serde_json::from_value(config).unwrap();
    DestinationPolicy::new(&config).unwrap()
}

#[test]
fn exceptions_name_exactly_what_they_allow() {
    let policy = with(serde_json::json!({
        "allow": [
            {"cidr": "127.0.0.1/32", "port": 18080},
            {"cidr": "10.1.0.0/16"},
        ]
    }));
    assert_corpus(
        &policy,
        &[
            ("http://127.0.0.1:18080/hook", P),
            ("http://2130706433:18080/hook", P),
            ("http://127.1:18080/hook", P),
            ("http://127.0.0.1/hook", B),
            ("http://127.0.0.1:8080/hook", B),
            ("https://127.0.0.1:18081/hook", B),
            ("http://127.0.0.2:18080/hook", B),
            ("http://localhost:18080/hook", B),
            ("http://127.0.0.1..:18080/hook", B),
            ("http://१२७.०.०.१:18080/hook", B),
            ("http://[::ffff:127.0.0.1]:18080/hook", B),
            ("http://[::127.0.0.1]:18080/hook", B),
            ("http://[64:ff9b::127.0.0.1]:18080/hook", B),
            ("http://[2002:7f00:1::]:18080/hook", B),
            ("http://[::1]:18080/hook", B),
            ("http://10.1.2.3/", P),
            ("http://10.1.2.3:9999/", P),
            ("http://10.2.0.1/", B),
            ("http://[::ffff:10.1.2.3]/", B),
            ("https://[fd12:3456::1]/", B),
            ("http://[fd12:3456::1]:443/", B),
            ("http://[fd12:3456::1]/", B),
            ("https://[fd12:3457::1]/", B),
            ("http://[::ffff:192.168.7.7]/", B),
            ("http://192.168.7.7/", B),
            ("http://[::ffff:192.168.7.8]/", B),
            ("http://[fe80::1%25eth0]:18080/", B),
            ("http://8.8.8.8/", P),
        ],
    );
    // IPv6 exceptions wider than one address are refused: Envoy's guard before connecting could
    // not follow them.
    let ipv6: DestinationConfig =
        serde_json::from_value(serde_json::json!({"allow": [{"cidr": "fd12:3456::/32"}]})).unwrap();
    assert!(DestinationPolicy::new(&ipv6)
        .unwrap_err()
        .starts_with("destination.allow[0].cidr: an IPv6 exception must be one address (/128)"));
    assert_eq!(
        policy.check("http://127.0.0.1:8080/"),
        Err(Failure::BlockedDestination(
            "127.0.0.1 is in 127.0.0.0/8 (loopback); the exception for \"127.0.0.1/32\" covers port 18080 only, not 8080"
                .into()
        ))
    );
}

#[test]
fn configured_denials() {
    let policy = with(serde_json::json!({
        "deny_cidrs": ["203.0.113.7/32", "fd12::/16", "8.8.4.0/24", "93.184.216.34"],
        "deny_hosts": ["*.corp.example", "Evil.Example.", "bücher.example"],
    }));
    assert_corpus(
        &policy,
        &[
            ("http://8.8.4.4/", B),
            ("http://134743044/", B),
            ("http://[::ffff:8.8.4.4]/", B),
            ("http://[64:ff9b::8.8.4.4]/", B),
            ("http://[2002:808:404::]/", B),
            ("http://8.8.8.8/", P),
            ("http://93.184.216.34/", B),
            ("http://93.184.216.35/", P),
            ("http://[fd12::1]/", B),
            ("http://corp.example/", B),
            ("http://a.b.CORP.example./", B),
            ("http://notcorp.example/", P),
            ("http://corp.example.com/", P),
            ("http://evil.example/", B),
            ("http://www.evil.example/", P),
            ("http://BÜCHER.example/", B),
            ("http://xn--bcher-kva.example/", B),
            ("http://localhost/", B),
        ],
    );
    assert_eq!(
        policy.check("http://8.8.4.4/"),
        Err(Failure::BlockedDestination(
            "8.8.4.4 is in 8.8.4.0/24 (configured deny_cidrs)".into()
        ))
    );
    assert_eq!(
        policy.check("http://x.corp.example/"),
        Err(Failure::BlockedDestination(
            "host \"x.corp.example\" matches \"*.corp.example\" (configured deny_hosts)".into()
        ))
    );
    // A configured deny is lifted by an exception naming the address.
    let policy = with(serde_json::json!({
        "deny_cidrs": ["8.8.4.0/24"],
        "allow": [{"cidr": "8.8.4.4/32"}],
    }));
    assert_eq!(verdict(&policy, "http://8.8.4.4/"), P);
    assert_eq!(verdict(&policy, "http://8.8.4.5/"), B);
}

#[test]
fn config_errors_name_the_key() {
    let bad_cidr = |cidr: &str| {
        let config = DestinationConfig {
            deny_cidrs: vec!["10.0.0.0/8".into(), "fd00::/8".into(), cidr.into()],
            ..Default::default()
        };
        DestinationPolicy::new(&config).err()
    };
    assert_eq!(
        bad_cidr("10.0.0.0/33"),
        Some("destination.deny_cidrs[2]: invalid CIDR \"10.0.0.0/33\"".into())
    );
    for cidr in [
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.1/8",
        "010.0.0.0/8",
        "10.0.0/8",
        "10.0.0.0/08",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0.0 /8",
        "0x0a000000/8",
        "fd00::1/8",
        "fe80::1%eth0/128",
        "::/129",
        "[::1]/128",
        "localhost",
        "10.0.0.0/4294967304",
    ] {
        assert!(bad_cidr(cidr).is_some(), "{cidr:?} accepted");
    }
    for cidr in [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.1",
        "::1",
        "::ffff:1.2.3.4/128",
        "10.0.0.0/8",
    ] {
        assert_eq!(bad_cidr(cidr), None, "{cidr:?}");
    }

    let bad_host = |host: &str| {
        let config = DestinationConfig {
            deny_hosts: vec!["ok.example".into(), host.into()],
            ..Default::default()
        };
        DestinationPolicy::new(&config).err()
    };
    assert_eq!(
        bad_host("a/b"),
        Some(
            "destination.deny_hosts[1]: invalid host name \"a/b\": only a name, or *. and a name"
                .into()
        )
    );
    for host in [
        "",
        "*.",
        "*",
        "a/b",
        "127.0.0.1",
        "2130706433",
        "[::1]",
        "::1",
        "a..b",
        "*.*.x",
        "x:80",
        "a b",
        "user@x",
        ".",
        "..",
        "x%2e",
        "*x.example",
    ] {
        assert!(bad_host(host).is_some(), "{host:?} accepted");
    }

    let config = DestinationConfig {
        allow: vec![
            AllowRule {
                cidr: "127.0.0.1/32".into(),
                port: None,
            },
            AllowRule {
                cidr: "127.0.0.1/33".into(),
                port: None,
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        DestinationPolicy::new(&config).err(),
        Some("destination.allow[1].cidr: invalid CIDR \"127.0.0.1/33\"".into())
    );
    let config = DestinationConfig {
        allow: vec![AllowRule {
            cidr: "127.0.0.1/32".into(),
            port: Some(0),
        }],
        ..Default::default()
    };
    assert_eq!(
        DestinationPolicy::new(&config).err(),
        Some("destination.allow[0].port: must be 1..=65535, got 0".into())
    );
}

#[test]
fn config_json_shape() {
    let config: DestinationConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, DestinationConfig::default());
    let config: DestinationConfig = serde_json::from_str(
        r#"{"deny_cidrs": ["203.0.113.7/32"], "deny_hosts": ["*.corp.example"],
            "allow": [{"cidr": "127.0.0.1/32", "port": 18080}, {"cidr": "10.0.0.0/8"}]}"#,
    )
    .unwrap();
    assert_eq!(config.allow[0].port, Some(18080));
    assert_eq!(config.allow[1].port, None);
    assert!(serde_json::from_str::<DestinationConfig>(r#"{"deny": []}"#).is_err());
    assert!(
        serde_json::from_str::<DestinationConfig>(r#"{"allow": [{"cidr": "x", "ports": 1}]}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<DestinationConfig>(r#"{"allow": [{"port": 1}]}"#).is_err());
    assert!(serde_json::from_str::<DestinationConfig>(
        r#"{"allow": [{"cidr": "x", "port": 70000}]}"#
    )
    .is_err());
}

/// Nothing panics: every prefix of every corpus entry, and some odd strings.
#[test]
fn never_panics() {
    let policy = with(serde_json::json!({"allow": [{"cidr": "0.0.0.0/0", "port": 1}]}));
    let odd = [
        "http://[",
        "http://]",
        "http://[]]",
        "http://[%]",
        "http://[%25",
        "http://[::1%]",
        "http://[::1%25]/",
        "http://%",
        "http://%%",
        "http://%zz/",
        "http://xn--/",
        "http://xn--ls8h/",
        "http://xn--e4bcp.xn--d4b.xn--d4b.xn--e4b/",
        "http:",
        ":",
        "://",
        "http://:",
        "http://a:",
        "https://a:99999999999999999999/",
        "http://\u{10FFFF}/",
        "http://\u{FFFD}/",
        "http://🙂.example/",
        "http://1.2.3.4.5/",
        "http://0x/",
        "http://0x.0x.0x.0x/",
        "http://9999999999999999999999999/",
        "http://.1/",
        "http://1./",
    ];
    let long = format!("http://{}/", "1.".repeat(10_000));
    let all = PUBLIC_CORPUS
        .iter()
        .chain(DNS_CORPUS)
        .chain(RULE_CORPUS)
        .map(|(raw, _)| *raw)
        .chain(odd);
    for raw in all {
        for (i, _) in raw.char_indices().chain([(raw.len(), ' ')]) {
            let _ = policy.check(&raw[..i]);
        }
    }
    assert!(policy.check(&long).is_err());
}
