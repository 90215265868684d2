use super::*;
use crate::cidr::parse_cidr;
use std::net::Ipv4Addr;

mod cel;
mod ipv4;

/// A matcher for the few RE2 forms the guard writes (literals, `\.`, `\[`, `\]`, `\d`, `\d+`, `[a-b]`,
/// `(?:a|b)`, `^`, `$`), so that the patterns are checked against every address here; the end
/// to end tests show RE2 in Envoy agrees.
fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap();
    ends(p.as_bytes(), text.as_bytes()).contains(&text.len())
}

/// Every end position in `text` after matching the whole of `pattern` from position 0.
fn ends(pattern: &[u8], text: &[u8]) -> Vec<usize> {
    let mut positions = vec![0];
    let mut rest = pattern;
    while !rest.is_empty() {
        let (atom, after) = split_atom(rest);
        let mut next = Vec::new();
        for &at in &positions {
            for end in atom_ends(atom, &text[at..]) {
                next.push(at + end);
            }
        }
        next.sort_unstable();
        next.dedup();
        positions = next;
        rest = after;
    }
    positions
}

fn split_atom(p: &[u8]) -> (&[u8], &[u8]) {
    let len = match p[0] {
        b'\\' if p.get(2) == Some(&b'+') => 3,
        b'\\' => 2,
        b'[' => 5,
        b'(' => {
            let mut depth = 0;
            p.iter()
                .position(|&c| {
                    depth += i32::from(c == b'(') - i32::from(c == b')');
                    depth == 0
                })
                .unwrap()
                + 1
        }
        _ => 1,
    };
    p.split_at(len)
}

fn atom_ends(atom: &[u8], text: &[u8]) -> Vec<usize> {
    let digit = |i: usize| text.get(i).is_some_and(u8::is_ascii_digit);
    match atom {
        br"\d+" => (1..=text.len()).take_while(|&n| digit(n - 1)).collect(),
        br"\d" => {
            if digit(0) {
                vec![1]
            } else {
                vec![]
            }
        }
        br"\." => {
            if text.first() == Some(&b'.') {
                vec![1]
            } else {
                vec![]
            }
        }
        [b'[', lo, b'-', hi, b']'] => match text.first() {
            Some(c) if lo <= c && c <= hi => vec![1],
            _ => vec![],
        },
        [b'(', b'?', b':', inner @ .., b')'] => {
            let mut out = Vec::new();
            let mut depth = 0;
            let mut start = 0;
            for (i, &c) in inner.iter().enumerate() {
                depth += i32::from(c == b'(') - i32::from(c == b')');
                if c == b'|' && depth == 0 {
                    out.extend(ends(&inner[start..i], text));
                    start = i + 1;
                }
            }
            out.extend(ends(&inner[start..], text));
            out
        }
        [c] | [b'\\', c] => {
            if text.first() == Some(c) {
                vec![1]
            } else {
                vec![]
            }
        }
        other => panic!("unexpected atom {:?}", String::from_utf8_lossy(other)),
    }
}

fn net(text: &str) -> Net {
    parse_cidr(text).unwrap()
}

#[test]
fn every_octet_range_is_spelled_exactly() {
    for len in 0..=8_u32 {
        for base in (0..=255_u32).step_by(1 << (8 - len)) {
            let hi = base | ((1 << (8 - len)) - 1);
            let piece = alternation(
                &number_spellings(base as u8, hi as u8)
                    .iter()
                    .map(spelling_piece)
                    .collect::<Vec<_>>(),
            );
            let pattern = format!("^{}$", piece.text);
            for n in 0..=999_u32 {
                assert_eq!(
                    matches(&pattern, &n.to_string()),
                    (base..=hi).contains(&n),
                    "{pattern} on {n}"
                );
            }
            assert!(!matches(&pattern, "07"), "{pattern}: leading zero");
        }
    }
}

#[test]
fn a_network_pattern_matches_exactly_its_addresses_and_port() {
    let cases = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.4.0/22",
        "127.0.0.1/32",
        "0.0.0.0/0",
        "100.64.0.0/10",
        "203.0.113.128/25",
        "8.8.4.4/31",
        "1.2.3.0/27",
    ];
    for text in cases {
        let n = net(text);
        let Net::V4 { addr, len } = n else { panic!() };
        let pattern = port_pattern(&ipv4_piece(addr, len).text, Some(8443));
        let probe = |ip: u32| Ipv4Addr::from(ip);
        let span = 1_u64 << (32 - len);
        // The network's edges and some inside, and the addresses just outside.
        let mut inside = vec![addr, (u64::from(addr) + span - 1) as u32];
        inside.extend((0..64).map(|i| addr.wrapping_add((span / 64 * i) as u32)));
        for ip in inside {
            assert!(
                matches(&pattern, &format!("{}:8443", probe(ip))),
                "{text}: {pattern}"
            );
            assert!(
                !matches(&pattern, &format!("{}:8444", probe(ip))),
                "{text}: port"
            );
            assert!(
                !matches(&pattern, &format!("[::ffff:{}]:8443", probe(ip))),
                "{text}"
            );
        }
        for ip in [addr.wrapping_sub(1), (u64::from(addr) + span) as u32] {
            let outside = !n.contains(IpAddr::V4(probe(ip)));
            assert_eq!(
                matches(&pattern, &format!("{}:8443", probe(ip))),
                !outside,
                "{text}: {} {pattern}",
                probe(ip)
            );
        }
    }
    assert_eq!(
        port_pattern(&ipv4_piece(0xac10_0000, 12).text, Some(443)),
        r"^172\.(?:1[6-9]|2\d|3[0-1])\.\d+\.\d+:443$"
    );
}

fn guard(allow: &[(&str, Option<u16>)], deny: &[&str]) -> Result<Guard, String> {
    let allow: Vec<(Net, Option<u16>)> = allow.iter().map(|&(c, p)| (net(c), p)).collect();
    let deny: Vec<Net> = deny.iter().map(|c| net(c)).collect();
    Guard::new(&allow, &deny)
}

#[test]
fn a_webhook_carries_what_applies_to_it_and_nothing_by_default() {
    let none = guard(&[], &[]).unwrap();
    assert_eq!(none.headers(None, 443), vec![]);
    let g = guard(
        &[("127.0.0.2/32", Some(18090)), ("10.1.0.0/16", None)],
        &["100.0.0.0/24", "fd00::/8"],
    )
    .unwrap();
    let (allow0, deny0) = (GUARD_ALLOW_HEADERS[0], GUARD_DENY_HEADERS[0]);
    assert_eq!(
        g.headers(None, 18090),
        vec![
            (
                allow0,
                r"^(?:127\.0\.0\.2|10\.1\.\d+\.\d+):18090$".to_string()
            ),
            (deny0, r"^100\.0\.0\.\d+:\d+$".to_string()),
        ]
    );
    assert_eq!(
        g.headers(None, 443),
        vec![
            (allow0, r"^10\.1\.\d+\.\d+:443$".to_string()),
            (deny0, r"^100\.0\.0\.\d+:\d+$".to_string()),
        ]
    );
    // A literal carries itself when excepted, and no deny pattern (hookgate judged it).
    let literal = |ip: &str, port| g.headers(Some(ip.parse().unwrap()), port);
    assert_eq!(
        literal("10.1.2.3", 443),
        vec![(allow0, r"^10\.1\.2\.3:443$".to_string())]
    );
    assert_eq!(literal("127.0.0.2", 18091), vec![]);
    assert_eq!(literal("93.184.216.34", 443), vec![]);
}

/// CIDRs whose patterns cost the most: a /17 at the top of the range spells its third octet
/// 128-255 with four alternatives, and every fixed octet has three digits.
fn widest(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}.{}.128.0/17", 200 + i / 50, 100 + i % 50))
        .collect()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether some pattern of `headers` named by `names` matches `ip:port`.
fn any_matches(headers: &[(&str, String)], names: &[&str], text: &str) -> bool {
    headers
        .iter()
        .filter(|(h, _)| names.contains(h))
        .any(|(_, p)| matches(p, text))
}

#[test]
fn an_ipv6_exception_is_its_address_exactly_as_envoy_writes_it() {
    let g = guard(
        &[
            ("::1/128", Some(8443)),
            ("fd00::7:0:0:1/128", None),
            ("::ffff:127.0.0.1/128", None),
        ],
        &[],
    )
    .unwrap();
    let allow0 = GUARD_ALLOW_HEADERS[0];
    let by_name = g.headers(None, 8443);
    assert_eq!(
        by_name,
        vec![(
            allow0,
            r"^(?:\[::1\]|\[fd00::7:0:0:1\]|\[::ffff:127\.0\.0\.1\]):8443$".to_string()
        )]
    );
    let pattern = &by_name[0].1;
    for (text, expected) in [
        ("[::1]:8443", true),
        ("[fd00::7:0:0:1]:8443", true),
        ("[::ffff:127.0.0.1]:8443", true),
        ("[::1]:8444", false),
        ("[::1%2]:8443", false),
        ("[::2]:8443", false),
        ("[::11]:8443", false),
        ("[fd00::7:0:0:10]:8443", false),
        ("127.0.0.1:8443", false),
        ("[::ffff:127.0.0.10]:8443", false),
    ] {
        assert_eq!(matches(pattern, text), expected, "{text}");
    }
    // A literal carries itself, in Envoy's spelling, whatever spelling the URL used.
    assert_eq!(
        g.headers(Some("fd00:0:0:0:7::1".parse().unwrap()), 1),
        vec![(allow0, r"^\[fd00::7:0:0:1\]:1$".to_string())]
    );
    assert_eq!(g.headers(Some("::1".parse().unwrap()), 8444), vec![]);
    assert_eq!(
        guard(&[("fd00::/64", Some(1))], &[]).unwrap_err(),
        "destination.allow[0].cidr: an IPv6 exception must be one address (/128): Envoy's \
         guard before connecting matches IPv6 addresses by their exact text"
    );
}

#[test]
fn a_dozen_exceptions_on_one_port_are_packed_into_slots_each_within_envoys_budget() {
    // Twelve single receivers and twelve of the costliest CIDRs, all on port 443.
    let singles: Vec<String> = (1..=12)
        .map(|i| format!("203.0.{i}.{}/32", 200 + i))
        .collect();
    for cidrs in [singles, widest(12)] {
        let allow: Vec<(&str, Option<u16>)> =
            cidrs.iter().map(|c| (c.as_str(), Some(443))).collect();
        let g = guard(&allow, &[]).unwrap();
        let headers = g.headers(None, 443);
        assert!(
            headers.len() > 1 && headers.len() <= GUARD_SLOTS,
            "{headers:?}"
        );
        let names: Vec<&str> = headers.iter().map(|(h, _)| *h).collect();
        assert_eq!(names, GUARD_ALLOW_HEADERS[..headers.len()]);
        for cidr in &cidrs {
            let Net::V4 { addr, len } = net(cidr) else {
                panic!()
            };
            let last = addr | ((1_u64 << (32 - len)) - 1) as u32;
            for ip in [addr, last, addr.wrapping_sub(1), last.wrapping_add(1)] {
                let ip = Ipv4Addr::from(ip);
                let inside = cidrs.iter().any(|c| net(c).contains(IpAddr::V4(ip)));
                assert_eq!(
                    any_matches(&headers, &GUARD_ALLOW_HEADERS, &format!("{ip}:443")),
                    inside,
                    "{ip} {headers:?}"
                );
                assert!(!any_matches(
                    &headers,
                    &GUARD_ALLOW_HEADERS,
                    &format!("{ip}:444")
                ));
            }
        }
    }
}

#[test]
fn many_deny_cidrs_are_packed_and_each_is_refused() {
    let cidrs = widest(2 * GUARD_SLOTS);
    let g = guard(&[], &as_strs(&cidrs)).unwrap();
    let headers = g.headers(None, 443);
    assert!(headers.iter().all(|(h, _)| GUARD_DENY_HEADERS.contains(h)));
    for cidr in &cidrs {
        let Net::V4 { addr, .. } = net(cidr) else {
            panic!()
        };
        let ip = Ipv4Addr::from(addr + 7);
        assert!(
            any_matches(&headers, &GUARD_DENY_HEADERS, &format!("{ip}:8443")),
            "{ip}"
        );
    }
    assert!(!any_matches(
        &headers,
        &GUARD_DENY_HEADERS,
        "200.100.127.255:8443"
    ));
}

#[test]
fn what_envoys_guard_cannot_hold_is_refused_with_its_key() {
    assert_eq!(
        guard(&[("127.0.0.1/32", None), ("fd00::/8", Some(1))], &[]).unwrap_err(),
        "destination.allow[1].cidr: an IPv6 exception must be one address (/128): Envoy's \
         guard before connecting matches IPv6 addresses by their exact text"
    );
    // The cap: 2 of the costliest CIDRs a pattern, so 16 in the 8 slots; the 17th is refused.
    let cap = 2 * GUARD_SLOTS;
    let many = widest(cap + 1);
    let per_port = |n: usize| -> Vec<(&str, Option<u16>)> {
        many.iter()
            .take(n)
            .map(|c| (c.as_str(), Some(443)))
            .collect()
    };
    assert!(guard(&per_port(cap), &[]).is_ok());
    assert_eq!(
        guard(&per_port(cap + 1), &[]).unwrap_err(),
        "destination.allow: too many exceptions apply to port 443 for Envoy's guard before \
         connecting (17 CIDRs; at most 8 patterns of 100 RE2 instructions, 2 to 8 CIDRs each): \
         merge them into fewer, wider CIDRs, or spread them over ports"
    );
    // Every-port exceptions count towards each port.
    let mut mixed = per_port(cap);
    mixed.push((many[cap].as_str(), None));
    assert!(guard(&mixed, &[])
        .unwrap_err()
        .starts_with("destination.allow: too many exceptions apply to port 443"));
    assert!(guard(&[], &as_strs(&many[..cap])).is_ok());
    assert!(guard(&[], &as_strs(&many)).unwrap_err().starts_with(
        "destination.deny_cidrs: too many IPv4 CIDRs for Envoy's guard before connecting (17;"
    ));
    // Single addresses like 10.0.0.10: 7 a pattern, so 56.
    let singles: Vec<String> = (10..=66).map(|i| format!("10.0.0.{i}/32")).collect();
    let allow = |n: usize| -> Vec<(&str, Option<u16>)> {
        singles
            .iter()
            .take(n)
            .map(|c| (c.as_str(), Some(443)))
            .collect()
    };
    assert!(guard(&allow(56), &[]).is_ok());
    assert!(guard(&allow(57), &[]).is_err());
    // The same exceptions spread over ports each fit.
    let spread: Vec<(&str, Option<u16>)> = many
        .iter()
        .zip(1..)
        .map(|(c, p)| (c.as_str(), Some(p)))
        .collect();
    assert!(guard(&spread, &[]).is_ok());
}
