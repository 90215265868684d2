//! The default deny list, rule by rule: what each range refuses, what it lets through, and the
//! detail a refusal carries.

use super::super::policy::parse_host_pattern;
use super::super::*;
use super::*;
use crate::cidr::{parse_cidr, Net};

fn policy() -> DestinationPolicy {
    DestinationPolicy::new(&DestinationConfig::default()).unwrap()
}

fn url_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("http://{a}/"),
        IpAddr::V6(a) => format!("http://[{a}]/"),
    }
}

/// The detail of a refusal of `url`, or what came back instead.
fn refusal_of(policy: &DestinationPolicy, url: &str) -> Result<String, String> {
    match policy.check(url) {
        Err(Failure::BlockedDestination(why)) => Ok(why),
        other => Err(format!("{url}: {other:?}")),
    }
}

/// Asserts each (address, detail) is refused with exactly that detail, 403 / 11110114.
fn assert_details(cases: &[(&str, &str)]) {
    let policy = policy();
    for &(address, detail) in cases {
        let ip: IpAddr = address.parse().unwrap();
        let url = url_of(ip);
        let failure = policy.check(&url).unwrap_err();
        assert_eq!(failure.http_status(), 403, "{url}");
        assert_eq!(failure.code().number(), 11110114, "{url}");
        assert_eq!(refusal_of(&policy, &url), Ok(detail.to_string()), "{url}");
    }
}

fn assert_pass(addresses: &[&str]) {
    let policy = policy();
    let wrong: Vec<String> = addresses
        .iter()
        .map(|a| url_of(a.parse().unwrap()))
        .filter_map(|url| policy.check(&url).err().map(|e| format!("{url}: {e}")))
        .collect();
    assert!(wrong.is_empty(), "refused:\n{}", wrong.join("\n"));
}

/// First and last address of every default range is refused (an embedding range's first and
/// last embed 0.0.0.0 and 255.255.255.255, both refused); the addresses just outside a range
/// are not refused by that range.
#[test]
fn every_range_first_and_last() {
    let policy = policy();
    for range in DEFAULT_RANGES {
        let text = range.cidr;
        let (first, last, before, after): (IpAddr, IpAddr, Option<IpAddr>, Option<IpAddr>) =
            match parse_cidr(text).unwrap() {
                Net::V4 { addr, len } => {
                    let last = addr | u32::MAX.checked_shr(len).unwrap_or(0);
                    (
                        Ipv4Addr::from(addr).into(),
                        Ipv4Addr::from(last).into(),
                        addr.checked_sub(1).map(|a| Ipv4Addr::from(a).into()),
                        last.checked_add(1).map(|a| Ipv4Addr::from(a).into()),
                    )
                }
                Net::V6 { addr, len } => {
                    let last = addr | u128::MAX.checked_shr(len).unwrap_or(0);
                    (
                        Ipv6Addr::from(addr).into(),
                        Ipv6Addr::from(last).into(),
                        addr.checked_sub(1).map(|a| Ipv6Addr::from(a).into()),
                        last.checked_add(1).map(|a| Ipv6Addr::from(a).into()),
                    )
                }
            };
        for ip in [first, last] {
            let why = refusal_of(&policy, &url_of(ip)).unwrap();
            assert!(why.starts_with(&ip.to_string()), "{text}: {why}");
        }
        for ip in [before, after].into_iter().flatten() {
            if let Ok(why) = refusal_of(&policy, &url_of(ip)) {
                assert!(
                    !why.contains(&format!(" {text} ")),
                    "{text}: neighbour {ip} refused by the range itself: {why}"
                );
            }
        }
    }
}

#[test]
fn the_table_parses_and_names_its_sources() {
    for range in DEFAULT_RANGES {
        assert!(parse_cidr(range.cidr).is_some(), "{}", range.cidr);
        assert!(range.source.starts_with("https://"), "{}", range.cidr);
        assert!(!range.reason.is_empty() && range.reason.is_ascii());
    }
    let cidrs: Vec<&str> = default_deny_list().map(|(cidr, _, _)| cidr).collect();
    assert_eq!(cidrs.len(), DEFAULT_RANGES.len());
    // What a CIDR-only enforcer needs: the embedding ranges in full, and everything outside
    // IPv6 global unicast (::/3, 4000::/2 and 8000::/1 are 2000::/3's complement).
    for cidr in [
        "::ffff:0:0/96",
        "::ffff:0:0:0/96",
        "::/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/23",
        "::/3",
        "4000::/2",
        "8000::/1",
    ] {
        assert!(cidrs.contains(&cidr), "{cidr}");
    }
    for (name, _) in DEFAULT_HOSTS {
        assert!(parse_host_pattern(name).is_ok(), "{name}");
    }
}

/// IPv6 must be global unicast (2000::/3): everything outside it is refused, whatever the DNS
/// lookup family, except where an embedding range judges the address by its IPv4.
#[test]
fn ipv6_outside_global_unicast_is_refused() {
    assert_details(&[
        (
            "fec0::1",
            "fec0::1 is in fec0::/10 (site-local, deprecated)",
        ),
        (
            "feff::1",
            "feff::1 is in fec0::/10 (site-local, deprecated)",
        ),
        ("fe00::1", "fe00::1 is in 8000::/1 (outside global unicast)"),
        (
            "fbff:ffff::1",
            "fbff:ffff::1 is in 8000::/1 (outside global unicast)",
        ),
        ("8000::", "8000:: is in 8000::/1 (outside global unicast)"),
        ("4000::1", "4000::1 is in 4000::/2 (outside global unicast)"),
        ("7fff::1", "7fff::1 is in 4000::/2 (outside global unicast)"),
        ("1fff::1", "1fff::1 is in ::/3 (outside global unicast)"),
        ("200::1", "200::1 is in ::/3 (outside global unicast)"),
        (
            "100:0:0:1::1",
            "100:0:0:1::1 is in ::/3 (outside global unicast)",
        ),
        (
            "64:ff9b:2::",
            "64:ff9b:2:: is in ::/3 (outside global unicast)",
        ),
        ("::1:0:0:1", "::1:0:0:1 is in ::/3 (outside global unicast)"),
    ]);
    assert_pass(&[
        "2000::1",
        "3fff:1000::1",
        "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]);
}

/// `2001::/23` (IETF protocol assignments) is refused whole, like 192.0.0.0/24.
#[test]
fn ietf_protocol_assignments_are_refused_whole() {
    assert_details(&[
        (
            "2001:1::1",
            "2001:1::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:2::1",
            "2001:2::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:3::1",
            "2001:3::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:4:112::1",
            "2001:4:112::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:10::1",
            "2001:10::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:20::1",
            "2001:20::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:30::1",
            "2001:30::1 is in 2001::/23 (IETF protocol assignments)",
        ),
        (
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff is in 2001::/23 (IETF protocol assignments)",
        ),
    ]);
    assert_pass(&["2001:200::1", "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]);
}

/// Cloud platform endpoints. Azure's WireServer sits in public space and has its own entry;
/// every other documented endpoint is caught by a range (listed in the module docs).
#[test]
fn cloud_platform_endpoints_are_refused() {
    let azure = "Azure platform endpoint (WireServer, DNS, DHCP, health probes)";
    assert_details(&[
        ("168.63.129.16", &format!("168.63.129.16 is in 168.63.129.16/32 ({azure})")),
        (
            "::ffff:168.63.129.16",
            &format!("::ffff:168.63.129.16 is in ::ffff:0:0/96 (IPv4-mapped) and embeds 168.63.129.16, which is in 168.63.129.16/32 ({azure})"),
        ),
    ]);
    let policy = policy();
    for (address, range) in [
        ("169.254.169.254", "169.254.0.0/16"),
        ("169.254.169.253", "169.254.0.0/16"),
        ("169.254.169.123", "169.254.0.0/16"),
        ("169.254.170.2", "169.254.0.0/16"),
        ("169.254.0.23", "169.254.0.0/16"),
        ("169.254.42.42", "169.254.0.0/16"),
        ("192.0.0.192", "192.0.0.0/24"),
        ("100.100.100.200", "100.64.0.0/10"),
        ("100.96.0.96", "100.64.0.0/10"),
        ("100.80.80.80", "100.64.0.0/10"),
        ("fd00:ec2::254", "fc00::/7"),
        ("fd00:ec2::253", "fc00::/7"),
        ("fd00:ec2::123", "fc00::/7"),
        ("fd20:ce::254", "fc00::/7"),
        ("fe80::a9fe:a9fe", "fe80::/10"),
    ] {
        let why = refusal_of(&policy, &url_of(address.parse().unwrap())).unwrap();
        assert!(
            why.starts_with(&format!("{address} is in {range} (")),
            "{why}"
        );
    }
    for url in [
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata.tencentyun.com/latest/meta-data/",
        "http://METADATA.TencentYun.com./",
    ] {
        let why = refusal_of(&policy, url).unwrap();
        assert!(why.ends_with("(cloud metadata host name)"), "{why}");
    }
    assert_pass(&["168.63.129.15", "168.63.129.17"]);
}

// IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry), every entry, and how
// hookgate judges it ("IPv4 inside": refused exactly when the embedded IPv4 address is):
//   ::1/128            Loopback                                   refused
//   ::/128             Unspecified Address                        refused
//   ::ffff:0:0/96      IPv4-mapped Address                        IPv4 inside (last 32 bits)
//   64:ff9b::/96       IPv4-IPv6 Translat. (RFC 6052)             IPv4 inside (last 32 bits)
//   64:ff9b:1::/48     IPv4-IPv6 Translat. (RFC 8215)             refused whole: where the IPv4
//                      sits is the operator's choice (RFC 6052 prefix lengths /48 to /96)
//   100::/64           Discard-Only Address Block                 refused
//   100:0:0:1::/64     Dummy IPv6 Prefix                          refused (outside 2000::/3)
//   2001::/23          IETF Protocol Assignments                  refused whole
//   2001::/32          TEREDO (RFC 4380)                          refused whole; the detail names
//                      the client (last 32 bits, inverted) and the server (bits 32..64)
//   2001:1::1/128, 2001:1::2/128, 2001:1::3/128 (anycast), 2001:2::/48 (benchmarking),
//   2001:3::/32 (AMT), 2001:4:112::/48 (AS112-v6), 2001:10::/28 (ORCHID, deprecated),
//   2001:20::/28 (ORCHIDv2, RFC 7343), 2001:30::/28 (DETs)        refused (in 2001::/23)
//   2001:db8::/32      Documentation                              refused
//   2002::/16          6to4 (RFC 3056)                            IPv4 inside (bits 16..48)
//   2620:4f:8000::/48  Direct Delegation AS112 Service            allowed: globally reachable,
//                      like its IPv4 twins 192.31.196.0/24 and 192.175.48.0/24
//   3fff::/20          Documentation                              refused
//   5f00::/16          Segment Routing (SRv6) SIDs                refused
//   fc00::/7           Unique-Local                               refused
//   fe80::/10          Link-Local Unicast                         refused
// Not in the registry but embedding an IPv4 address, also judged by it:
//   ::/96              IPv4-compatible (RFC 4291, deprecated)     IPv4 inside (last 32 bits)
//   ::ffff:0:0:0/96    IPv4-translated (SIIT, RFC 2765; RFC 6145 and 7915 use RFC 6052
//                      prefixes instead)                          IPv4 inside (last 32 bits)
//   ISATAP interface ids (RFC 5214): ::0:5efe:a.b.c.d (or 100:5efe, 200:5efe, 300:5efe) in
//                      the last 64 bits of any prefix              IPv4 inside (last 32 bits)
// Network-specific NAT64 prefixes (RFC 6052) and 6rd prefixes (RFC 5969) are chosen by an
// operator and cannot be recognised; Envoy's RBAC refuses none of them specially either.

/// Each form that embeds an IPv4 address, with a refused address inside: refused, and the
/// detail names the embedded address and its range.
#[test]
fn ipv6_forms_are_judged_by_the_ipv4_inside() {
    let loopback = "which is in 127.0.0.0/8 (loopback)";
    let link_local = "which is in 169.254.0.0/16 (link-local)";
    assert_details(&[
        (
            "::ffff:127.0.0.1",
            &format!("::ffff:127.0.0.1 is in ::ffff:0:0/96 (IPv4-mapped) and embeds 127.0.0.1, {loopback}"),
        ),
        (
            "::ffff:0:7f00:1",
            &format!("::ffff:0:7f00:1 is in ::ffff:0:0:0/96 (IPv4-translated (SIIT)) and embeds 127.0.0.1, {loopback}"),
        ),
        (
            "::a9fe:a9fe",
            &format!("::a9fe:a9fe is in ::/96 (IPv4-compatible) and embeds 169.254.169.254, {link_local}"),
        ),
        (
            "64:ff9b::a9fe:a9fe",
            &format!("64:ff9b::a9fe:a9fe is in 64:ff9b::/96 (NAT64) and embeds 169.254.169.254, {link_local}"),
        ),
        (
            "64:ff9b:1::808:808",
            "64:ff9b:1::808:808 is in 64:ff9b:1::/48 (local-use NAT64, refused as a whole)",
        ),
        (
            "2002:7f00:1::1",
            &format!("2002:7f00:1::1 is in 2002::/16 (6to4) and embeds 127.0.0.1, {loopback}"),
        ),
        (
            // RFC 4380's example, with the client 127.0.0.1 (inverted: 80ff:fffe).
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:4136:e378:8000:63bf:80ff:fffe is in 2001::/32 (Teredo) and tunnels to client 127.0.0.1 via server 65.54.227.120",
        ),
        (
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7 is in 2001::/32 (Teredo) and tunnels to client 8.8.8.8 via server 65.54.227.120",
        ),
        (
            "2a00:1450:4001:82b:0:5efe:7f00:1",
            &format!("2a00:1450:4001:82b:0:5efe:7f00:1 has {ISATAP} and embeds 127.0.0.1, {loopback}"),
        ),
        (
            "2a00:1450:4001:82b:200:5efe:a9fe:a9fe",
            &format!("2a00:1450:4001:82b:200:5efe:a9fe:a9fe has {ISATAP} and embeds 169.254.169.254, {link_local}"),
        ),
        (
            "2002:808:808:1:300:5efe:a00:1",
            &format!("2002:808:808:1:300:5efe:a00:1 has {ISATAP} and embeds 10.0.0.1, which is in 10.0.0.0/8 (private)"),
        ),
    ]);
    // A configured IPv4 range is found inside every form too.
    let policy = DestinationPolicy::new(&DestinationConfig {
        deny_cidrs: vec!["8.8.4.0/24".into()],
        ..DestinationConfig::default()
    })
    .unwrap();
    for address in [
        "::ffff:8.8.4.4",
        "::ffff:0:8.8.4.4",
        "::8.8.4.4",
        "64:ff9b::8.8.4.4",
        "2002:808:404::1",
        "2a00:1450::5efe:8.8.4.4",
    ] {
        let why = refusal_of(&policy, &url_of(address.parse().unwrap())).unwrap();
        assert!(
            why.ends_with("embeds 8.8.4.4, which is in 8.8.4.0/24 (configured deny_cidrs)"),
            "{why}"
        );
    }
}

#[test]
fn embedded_positions() {
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(Embeds::Low32.ipv4(v6("::ffff:1.2.3.4")), v4("1.2.3.4"));
    assert_eq!(Embeds::Low32.ipv4(v6("64:ff9b::102:304")), v4("1.2.3.4"));
    assert_eq!(Embeds::Bits16.ipv4(v6("2002:102:304:5::6")), v4("1.2.3.4"));
    assert_eq!(
        teredo_endpoints(v6("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
        (v4("65.54.227.120"), v4("192.0.2.45"))
    );
    assert_eq!(isatap_ipv4(v6("fe80::5efe:1.2.3.4")), Some(v4("1.2.3.4")));
    assert_eq!(
        isatap_ipv4(v6("2a00::200:5efe:1.2.3.4")),
        Some(v4("1.2.3.4"))
    );
    assert_eq!(isatap_ipv4(v6("2a00::400:5efe:1.2.3.4")), None);
    assert_eq!(isatap_ipv4(v6("2a00::5eff:1.2.3.4")), None);
    assert_eq!(isatap_ipv4(v6("2a00::1:5efe:1.2.3.4")), None);
}

/// No over-blocking: ordinary public addresses, and IPv6 forms embedding a public IPv4 address.
#[test]
fn public_addresses_pass() {
    assert_pass(&[
        // IPv4: public resolvers, large sites and clouds' public space.
        "8.8.8.8",
        "8.8.4.4",
        "1.1.1.1",
        "1.0.0.1",
        "9.9.9.9",
        "208.67.222.222",
        "142.250.74.46",
        "151.101.1.69",
        "104.16.132.229",
        "13.107.42.14",
        "52.95.110.1",
        "20.112.52.29",
        "100.63.255.255",
        "100.128.0.0",
        "192.31.196.1",
        "192.175.48.1",
        "223.255.255.255",
        // IPv6: public resolvers and sites, the start of each RIR's space.
        "2606:4700:4700::1111",
        "2606:4700:4700::1001",
        "2001:4860:4860::8888",
        "2001:4860:4860::8844",
        "2a00:1450:4001:82b::200e",
        "2a03:2880:f12f:83:face:b00c:0:25de",
        "2620:fe::fe",
        "2600:1f18::1",
        "2c0f:fb50:4003::8a",
        "2400:cb00::1",
        "2800:3f0:4001:800::200e",
        "2001:200::1",
        "2001:db9::1",
        "2003::1",
        "2620:4f:8000::1",
        "3ffe::1",
        // Forms embedding a public IPv4 address (Envoy's RBAC still refuses the embedding
        // ranges whole: it cannot look inside).
        "::ffff:8.8.8.8",
        "::ffff:0:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
        "2a00:1450:4001:82b:0:5efe:808:808",
        "2a00:1450:4001:82b:200:5efe:808:808",
    ]);
}

/// What Envoy's RBAC refused, named from the address Envoy reports: the most specific range, as a
/// CIDR-only enforcer sees the list (embedding ranges whole).
#[test]
fn resolved_addresses_name_their_range() {
    let policy = policy();
    let named = |address: &str| policy.resolved_refusal(address).map(|f| f.to_string());
    let refused = |detail: &str| {
        Some(format!(
            "destination blocked: resolved address {detail}, refused by Envoy's destination policy"
        ))
    };
    assert_eq!(
        named("127.0.0.1:18080"),
        refused("127.0.0.1 is in 127.0.0.0/8 (loopback)")
    );
    assert_eq!(
        named("[fec0::1]:80"),
        refused("fec0::1 is in fec0::/10 (site-local, deprecated)")
    );
    assert_eq!(
        named("[64:ff9b::808:808]:443"),
        refused("64:ff9b::808:808 is in 64:ff9b::/96 (NAT64)")
    );
    assert_eq!(named("[::1]:80"), refused("::1 is in ::1/128 (loopback)"));
    assert_eq!(named("8.8.8.8:80"), None);
    assert_eq!(named("[2001:4860:4860::8888]:443"), None);
    assert_eq!(named("127.0.0.1"), None);
    assert_eq!(named(""), None);
}
